// A node of a Countdown search as a problem of its own, and a search of that problem read back as a
// search from the node (the split controller policy: a sub search of 3 or more numbers run as a
// parallel-mode search of its sub-problem).
//
// A child's context names its node and state, e.g.
//   Moving to Node #0,2
//   Current State: 24:[4, 6, 9], Operations: ['3*2=6']
// Its sub-problem is {nums: [4, 6, 9], target: 24}; a search of it writes its own ids from "#0" and
// its operations from "[]". read_back() rewrites that text so every "Node #0..." is "Node #0,2..." and
// every "Operations: [...]" starts with '3*2=6': the text a search started at the node would have
// written, so APR's join and the strict verifier read it as the child the parent asked for.
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
