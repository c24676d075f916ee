// Re-exploring a Countdown root: the nodes its expansion left unexplored, written as a fresh root's
// expansion (the validate policy's re-exploration, strategies/countdown.h).
//
// An APR root expands its state into a beam of nodes, one per first step it keeps, and spawns a sub
// search on each. When none of them reaches the target, the nodes it never generated are where the
// answer still may be: the other first steps, which APR's generator trimmed from the beam by its
// heuristic. A root's expansion is the lines it wrote before its spawn block,
//   Exploring Operation: 3+7=10, Resulting Numbers: [9, 5, 10]
//   Generated Node #0,0: 24:[9, 5, 10] Operation: 3+7=10
// and a node counts as explored by its state (its numbers, as a multiset, whatever step the root
// named): a root that wrote a wrong state searched that state, not the step's.
//
// This layer knows the game's rules, not its solutions: every legal first step (APR's combine over
// each pair of numbers), ranked by APR's own heuristic (mult_heuristic; ties in generation order, as
// APR's generator ranks), none tried.
#pragma once

#include "tasks/countdown/problem.h"

#include <string>
#include <string_view>
#include <vector>

namespace forkjoin::countdown {

// The states of the nodes a root generated at node #0 ("Generated Node #0,i: T:[...]" lines before
// its first spawn block), each sorted; in the order written. Empty when it generated none.
std::vector<std::vector<int>> expanded_states(std::string_view root_text);

// The root's expansion for the best `width` first steps whose resulting states are not in `explored`
// (each sorted, as expanded_states gives them), in APR's exact format with ids #0,0 on, to follow the
// root's context (root_context) and precede the spawn block the model writes. Steps that leave one
// number are not nodes and are skipped. Empty when fewer than 2 such steps are left: APR's root spawns
// only for 2 or more nodes.
std::string reexpansion(const Problem & p, const std::vector<std::vector<int>> & explored, int width);

}  // namespace forkjoin::countdown
