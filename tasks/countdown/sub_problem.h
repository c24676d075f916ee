// A node of a Countdown search as a problem of its own, and a search of that problem read back as a
// search from the node (the split controller policy: a sub search of 3 or more numbers run as a
// parallel-mode search of its sub-problem).
//
// A child's context names its node and state, e.g.
//   Moving to Node #0,2
//   Current State: 24:[4, 6, 9], Operations: ['3*2=6']
// Its sub-problem is {nums: [4, 6, 9], target: 24}; a search of it writes its own ids from "#0" and
// its operations from "[]". read_back() rewrites ids and operations ("Node #0..." -> "Node #0,2...",
// every "Operations: [...]" starting with '3*2=6') and reduces the search to its result, as a search
// from the node that went straight to it would have written it: the clean path twice (the search, then
// its path: APR's join reads the second, the strict verifier the first), or the node's lines and
// "No solution found." The search's own joined sub search results are left out: their "Goal Reached"
// lines are its children's, and a search cancelled before its own goal has none.
#pragma once

#include "tasks/countdown/problem.h"

#include <optional>
#include <string>
#include <string_view>

namespace forkjoin::countdown {

struct NodeProblem {
    std::string node_id;   // "0,2"
    std::string ops;       // "['3*2=6']": the operations that led to the node
    Problem problem;       // the node's numbers and the target
};

// The node a child's context starts at; nullopt when the context names no node and state.
std::optional<NodeProblem> node_problem(std::string_view child_context);

// `sub_search` (a search of node.problem, ids from "#0", operations from []) in the terms of a search
// started at the node.
std::string read_back(std::string_view sub_search, const NodeProblem & node);

}  // namespace forkjoin::countdown
