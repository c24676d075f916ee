// Strategies for free-text questions on any model, including instruct models never trained for
// parallelism:
//   sequential:       one thread that never spawns
//   native:           one root thread in the model's dialect: the model decides when to spawn
//   self-consistency: N sampled threads; the answer is the majority over extracted answers (with the
//                     confidence policy: DeepConf's online form, strategies/confident_sampling.h)
//   plan-execute:     a planner thread writes a numbered outline of independent sub-tasks; one worker
//                     thread per item (question and outline in its context), all in flight together;
//                     a summarizer thread writes the final answer from their results
// Prompts are templates with {question}, {max_items}, {outline}, {index}, {item}, {result}, {results},
// {needed} (the results of the items a worker needs). Plan-execute runs the plan as a graph
// (strategies/plan_graph.h): independent items at once, a dependent one after its inputs; a worker
// that answers "NEEDS: k" is re-queued after item k, or merged into it when k has not started; a
// cycle or an unknown item runs the items in order. Each such decision is in TextResult::notes.
// With the validate controller policy (or `all`), a validator thread reads the workers' results before
// the summary and names the items to redo ("REDO: 2, 3") or says OK; the named items run again, sampled
// at 0.7 with new seeds, and the validator reads again: at most 2 rounds, each a note.
#pragma once

#include "backends/backend.h"
#include "runtime/engine.h"
#include "runtime/policies.h"
#include "strategies/confident_sampling.h"
#include "strategies/plan_graph.h"
#include "runtime/program.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace forkjoin::strategies {

struct PlanExecuteTemplates {
    std::string plan =
        "Question: {question}\nBreak the question into at most {max_items} sub-tasks that can be solved "
        "separately. Write them as a numbered list, one per line. If a sub-task needs the results of earlier ones, "
        "start it with (needs 1, 2).\n1.";
    std::string work = "Question: {question}\nPlan:\n{outline}{needed}\nSolve only sub-task {index}: {item}\n"
                       "If it cannot be solved without another sub-task's result, write only NEEDS: <its number>.\nResult:";
    std::string result_item = "Sub-task {index}: {item}\nResult: {result}\n";
    std::string summarize = "Question: {question}\n{results}Using these results, give the final answer.\nFinal answer:";
    std::string validate = "Question: {question}\nPlan:\n{outline}{results}Check these results against each other and against "
                           "the question. If any is wrong or contradicts another, write REDO: and their numbers (e.g. REDO: 2, 3); "
                           "if they all hold, write OK.\nVerdict:";
};

// Reads a JSON object with any of the keys plan, work, result_item, summarize, validate; other keys are an error.
PlanExecuteTemplates load_templates(const std::string & path);

struct TextOptions {
    std::string strategy = "sequential";  // sequential, native, self-consistency, plan-execute
    std::string dialect = "plain";        // native: the markup the model spawns threads with
    std::string controller = "default";   // controller policies (runtime/policies.h)
    runtime::PolicySettings policies;     // their per-model settings (runtime/calibration.h)
    runtime::Limits limits;
    Sampling sampling;
    int samples = 5;
    int max_items = 6;
    PlanExecuteTemplates templates;
    // Tests: a scripted stream per phase ("plan", "work", "validate", "summarize", "sample") and index.
    std::function<std::optional<std::string>(const std::string & phase, int index, const runtime::ThreadRecord &)> script;
};

struct TextResult {
    bool ok = false;
    std::string answer;                 // extracted (or the summarizer's text for plan-execute)
    std::string text;                   // the final thread's generation
    std::vector<std::string> items;     // plan-execute: the outline
    std::vector<std::string> outputs;   // per worker / sample: its generation (plan-execute: per item, its last)
    std::vector<std::string> notes;     // plan-execute: the graph's decisions (order, reorder, merge, fallback)
                                        // and the validator's verdicts
    runtime::Metrics metrics;           // all threads together; sequential = the dependency chain
    std::string error;
};

// One question as a job: a state machine over the engine's calls (plan, then workers, then summary).
// After the job ends, result() holds the answer; run_text is the blocking caller.
class TextProgram final : public runtime::Program {
public:
    TextProgram(std::string question, TextOptions options);  // throws invalid_argument for a bad strategy
    void start(runtime::ProgramContext & ctx) override;
    void on_finished(runtime::ProgramContext & ctx, runtime::RequestId call, const runtime::RequestResult & result) override;
    const TextResult & result() const { return out_; }

private:
    enum class Phase { sample, plan, work, summarize, validate };
    static constexpr int kMaxValidateRounds = 2;
    // temperature < 0: the request's sampling
    runtime::RequestId call(runtime::ProgramContext & ctx, const std::string & prompt, Phase phase, int index, int parent, bool answering,
                            float temperature = -1);
    void finish(runtime::ProgramContext & ctx);
    void on_worker(runtime::ProgramContext & ctx, int item, const runtime::RequestResult & r);
    void on_sample(runtime::ProgramContext & ctx, int index, const runtime::RequestResult & r);
    void start_ready(runtime::ProgramContext & ctx);
    void summarize(runtime::ProgramContext & ctx);
    void validate(runtime::ProgramContext & ctx);
    void on_verdict(runtime::ProgramContext & ctx, const runtime::RequestResult & r);
    std::string results_text();
    enum class ItemState { waiting, running, done, merged };
    PlanGraph graph_;
    std::vector<ItemState> item_state_;
    std::vector<int> merged_into_;
    std::vector<bool> requeued_;
    std::vector<std::string> item_prompt_;
    std::vector<int64_t> item_tokens_, item_chain_;
    std::vector<int> redone_;                          // per item: the validator round that last re-ran it (0: none)
    bool validating_ = false;                          // the validate policy is on
    int validate_rounds_ = 0;
    std::string question_;
    TextOptions o_;
    ConfidentSampling confident_;                      // self-consistency: who samples when, votes' weights
    int started_ = 0, ended_ = 0;                      // self-consistency: samples started, ended
    std::shared_ptr<const dialects::Dialect> dialect_;
    std::shared_ptr<runtime::Controller> controller_;
    Phase phase_ = Phase::sample;
    std::map<runtime::RequestId, int> index_of_;       // call -> index within its phase
    std::vector<std::string> prompts_;                 // this phase's prompts, by index
    std::vector<runtime::RequestResult> results_;      // this phase's results, by index
    int pending_ = 0;
    int planner_ = -1;                                 // job-wide id of the planner's root
    std::string outline_;                              // plan-execute: the numbered items
    const char * finish_reason_ = "stop";              // of the call whose text is the answer
    int64_t sequential_ = 0;                           // the chain so far (finished phases)
    TextResult out_;
};

TextResult run_text(Backend & backend, const std::string & question, const TextOptions & options);
TextResult run_text(runtime::Engine & engine, const std::string & question, const TextOptions & options);


}  // namespace forkjoin::strategies
