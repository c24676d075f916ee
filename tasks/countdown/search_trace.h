// Search traces in APR's exact text format (Pan et al. 2025, "Learning Adaptive Parallel Reasoning
// with Language Models"), written by the same search APR's data generator runs: a best-first beam
// search with APR's multiplicative heuristic, in two modes.
//
// Sequential (SoS+ style): one context holds the whole search.
//   Moving to Node #0
//   Current State: 24:[3, 7, 9], Operations: []
//   Exploring Operation: 9-3=6, Resulting Numbers: [7, 6]
//   Generated Node #0,0: 24:[7, 6] Operation: 9-3=6
//   ...
//   Current State: 24:[7, 6], Operations: ['9-3=6']
//   Exploring Operation: 7+6=13, Resulting Numbers: [13]
//   13,24 unequal: No Solution
//   ...
//   24,24 equal: Goal Reached
//   Moving to Node #0            <- the clean path from the root follows
//   ...
//
// Parallel (APR): after the root is expanded the parent writes
//   <Calling Sub Searches>
//   <Start Sub Search 0 at level 1> Moving to Node #0,0
//   ...
//   <End Calling Sub Searches>
// and stops. Each child starts from a fresh context "Moving to Node #0,0\nCurrent State: ...\n",
// searches, and on success ends with "... Goal Reached" and its clean path from its own node. The
// parent's spawn block is then replaced by the join
//   <Sub Searches>
//   <No Solution in Sub Search 0 at level 1 at Node #0,0>
//   <Goal Reached in Sub Search 1 at level 1 at Node #0,1>
//   Moving to Node #0,1 ... (the child's clean path)
//   <End Sub Searches>
// and the parent goes on: "v,T equal: Goal Reached" and the clean path from the root.
#pragma once

#include "tasks/countdown/arithmetic.h"
#include "tasks/countdown/problem.h"

#include <cstdint>
#include <string>
#include <vector>

namespace forkjoin::countdown {

struct SearchOptions {
    int beam_size = 3;       // nodes expanded per round and successors kept per node
    int sub_beam_size = 3;   // the same inside sub searches
    bool parallel = false;   // spawn sub searches after expanding the root (APR) or never (SoS+)
    uint64_t seed = 0;       // shuffles successor order, as APR's generator does
};

// One context's search: its successive contexts (main_calls[0] is the first; each join starts a
// new one holding the previous context up to the spawn block plus the join text) and, per spawn,
// the children's own traces.
struct SearchTrace {
    std::vector<std::string> main_calls;
    std::vector<std::vector<SearchTrace>> sub_calls;
    bool solved = false;
    std::vector<Operation> solution;  // from this trace's start node, when solved
};

SearchTrace write_search_trace(const Problem & p, const SearchOptions & options);

// The first lines of a root context: "Moving to Node #0\nCurrent State: T:[...], Operations: []\n".
std::string root_prompt(const Problem & p);
// A child's fresh context: "Moving to Node #id\nCurrent State: T:[...], Operations: [...]\n".
std::string child_prompt(const std::string & node_id, int target, const std::vector<int> & nums,
                         const std::vector<Operation> & ops);

// Distractors for the context-rot benchmark: sequential search traces of other problems (3 and 4
// numbers, drawn from `seed`), one after another, until the text holds at least `min_chars`
// characters. Realistic (the model's own format), plausible, and wrong for any other problem.
std::string distractor_traces(uint64_t seed, size_t min_chars);

// APR's heuristic (mult_heuristic): distance of each number to the nearest factor of the target.
double mult_heuristic(const std::vector<int> & nums, int target);

}  // namespace forkjoin::countdown
