// Strategies for free-text questions on any model, including instruct models never trained for
// parallelism:
//   sequential:       one thread (plain dialect)
//   self-consistency: N sampled threads; the answer is the majority over extracted answers
//   plan-execute:     a planner thread writes a numbered outline of independent sub-tasks; one worker
//                     thread per item (question and outline in its context), all in flight together;
//                     a summarizer thread writes the final answer from their results
// Prompts are templates with {question}, {max_items}, {outline}, {index}, {item}, {result}, {results}.
#pragma once

#include "backends/backend.h"
#include "runtime/scheduler.h"

#include <functional>
#include <string>
#include <vector>

namespace forkjoin::strategies {

struct PlanExecuteTemplates {
    std::string plan =
        "Question: {question}\nBreak the question into at most {max_items} independent sub-tasks that can be solved "
        "separately. Write them as a numbered list, one per line.\n1.";
    std::string work = "Question: {question}\nPlan:\n{outline}\nSolve only sub-task {index}: {item}\nResult:";
    std::string result_item = "Sub-task {index}: {item}\nResult: {result}\n";
    std::string summarize = "Question: {question}\n{results}Using these results, give the final answer.\nFinal answer:";
};

// Reads a JSON object with any of the keys plan, work, result_item, summarize; other keys are an error.
PlanExecuteTemplates load_templates(const std::string & path);

struct TextOptions {
    std::string strategy = "sequential";  // sequential, self-consistency, plan-execute
    runtime::Limits limits;
    Sampling sampling;
    int samples = 5;
    int max_items = 6;
    PlanExecuteTemplates templates;
    // Tests: a scripted stream per phase ("plan", "work", "summarize", "sample") and index.
    std::function<std::optional<std::string>(const std::string & phase, int index, const runtime::ThreadRecord &)> script;
};

struct TextResult {
    bool ok = false;
    std::string answer;                 // extracted (or the summarizer's text for plan-execute)
    std::string text;                   // the final thread's generation
    std::vector<std::string> items;     // plan-execute: the outline
    std::vector<std::string> outputs;   // per worker / sample: its generation
    runtime::Metrics metrics;           // all threads together; sequential = the dependency chain
    std::string error;
};

TextResult run_text(Backend & backend, const std::string & question, const TextOptions & options);

// The numbered items of an outline ("1. a", "2) b", "3: c"), at most max_items.
std::vector<std::string> parse_outline(const std::string & text, int max_items);

}  // namespace forkjoin::strategies
