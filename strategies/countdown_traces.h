// Training examples from the model's own Countdown runs (expert iteration, rejection sampling): the
// threads of a run that the strict verifier accepts, cut into the examples the trainer learns from,
// in the same shape as its symbolic data (tools/train/training_data.h).
//
// One example is one context the model wrote into: parts of text in order, each either context the
// model was given (not in the loss: the mode tag and its prompt, text the runtime inserted) or text
// the model wrote (in the loss); the trainer appends the end-of-text token, in the loss. Per run:
//   sequential: the root, when the problem is solved: [tag + prompt | whole search]
//   native:     the root, when the problem is solved, one example per context it wrote into:
//                 [tag + prompt | search up to and with its spawn block]
//                 [tag + prompt + search before the spawn + the join text | what follows]
//               (more spawns, more of the same); and every child whose verdict is right, whether
//               the root solved the problem or not (a child's context is its own, APR's fresh start):
//                 [tag + its two first lines | its search]
//               A child's verdict is right when its "Goal Reached" path verifies from the root's
//               numbers, or when it reached no goal and its node has no solution at all.
// With correct_joins, a native root that was not kept (unsolved, or a wrong line) whose first join
// holds a goal path that verifies also gives the example the symbolic writer would have made of that
// join (thread "join", an expert correction of the model's own context, as DAgger does):
//                 [tag + prompt + its search before the spawn + the join text | the continuation]
//               where the continuation is "T,T equal: Goal Reached" and the clean path from node #0
//               through the first such sub search (the writer's rule: the first goal in the join's
//               order), its last lines the child's path as the join gives it. The model's own lines
//               before the spawn may be wrong (they are not in the loss); the continuation must verify
//               and add no wrong line. This is the failure the line check finds most (on the first 48
//               4-number problems, a child of 17 roots reached a verified goal, and 5 roots wrote it
//               back: the rest copied a wrong step into the clean path).
// A thread with any wrong line (tasks/countdown/trace_check.h: a wrong sum, an operation explored
// twice, a move to a node never generated...) gives nothing either, right answer or not: the model
// would learn the mistake.
// The spawn block is not in a root's final text (the join replaced it); it is written back from the
// children the runtime ran, in APR's form ("<Calling Sub Searches>", one "<Start Sub Search i at
// level L> Moving to Node #id" line per child, "<End Calling Sub Searches>"), which is the form the
// runtime parsed them from.
//
// JSON Lines, one example a line:
//   {"problem": {"nums": [..], "target": T}, "mode": "sequential"|"parallel", "thread": "root"|"child"|"join",
//    "label": "0,1", "parts": [{"text": "...", "loss": false}, {"text": "...", "loss": true}, ...]}
// read_training_traces() refuses a line that is not of this form, naming the file and line.
//
// Pure functions of their inputs; thread-safe.
#pragma once

#include "strategies/countdown.h"

#include <string>
#include <string_view>
#include <vector>

namespace forkjoin::strategies {

// A join's text in a parent's context (dialects/apr.h): from kJoinBegin to kJoinEnd, both included.
inline constexpr std::string_view kJoinBegin = "<Sub Searches>\n";
inline constexpr std::string_view kJoinEnd = "<End Sub Searches>\n";

// What the symbolic writer (tasks/countdown/search_trace.cpp) writes after a join, for this join
// (its text from "<Sub Searches>" to before "<End Sub Searches>"): the first sub search in the join's
// order whose goal path verifies from the root's numbers, as "T,T equal: Goal Reached" and the clean
// path from node #0 (the root's state, the step to that child's node, then the child's path as the
// join gives it). Empty when no goal path of a child of node #0 verifies.
std::string expert_continuation(std::string_view join, const countdown::Problem & problem);

struct TracePart {
    std::string text;
    bool loss = false;  // written by the model: a prediction target
    bool operator==(const TracePart &) const = default;
};

struct TrainingTrace {
    countdown::Problem problem;
    std::string mode;    // "sequential" or "parallel": how the run was asked to search
    std::string thread;  // "root", "child" or "join" (an expert-corrected root continuation)
    std::string label;   // a child's node id ("0,1"); empty for a root
    std::vector<TracePart> parts;
    // The whole context, parts joined: what the model saw and wrote, as one text.
    std::string text() const;
};

// Why a run's threads gave no example, counted over runs (the generator reports them).
struct TraceYield {
    int roots_kept = 0, roots_unsolved = 0, roots_unreadable = 0, roots_wrong_lines = 0;
    int children_kept = 0, children_wrong = 0, children_unfinished = 0, children_wrong_lines = 0;
    int joins_corrected = 0;
};

// The examples of one run of `outcome.problem` in `strategy` (sequential or native; others throw
// invalid_argument). Threads the tree cannot be read back from (a join that is not in APR's form)
// count as unreadable and give nothing.
std::vector<TrainingTrace> training_traces(const CountdownOutcome & outcome, CountdownStrategy strategy,
                                           TraceYield & yield, bool correct_joins = true);

std::string to_json_line(const TrainingTrace & trace);
// Throws forkjoin::Error(invalid_argument) with `where` ("FILE:LINE") and what is wrong.
TrainingTrace parse_training_trace(std::string_view json_line, const std::string & where);
// Every non-blank line of a JSONL file.
std::vector<TrainingTrace> read_training_traces(const std::string & path);

}  // namespace forkjoin::strategies
