// The strict Countdown verifier, and reading a solution out of a trace.
#pragma once

#include "tasks/countdown/arithmetic.h"
#include "tasks/countdown/problem.h"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace forkjoin::countdown {

struct Verdict {
    bool ok = false;
    std::string reason;  // empty when ok; otherwise the first thing wrong
};

// Each number used exactly once (as a multiset), each step's arithmetic right under the rules,
// and the last remaining number equal to the target.
Verdict verify(const Problem & p, const std::vector<Operation> & steps);

// The steps of the final clean path in an APR-format trace: the "Exploring Operation: ..." lines
// after the last "Moving to Node #0" line, up to its "... equal: Goal Reached". nullopt (with why)
// when the trace reaches no goal or the path cannot be read.
struct ExtractedPath {
    std::vector<Operation> steps;
    std::string error;  // empty on success
};
ExtractedPath extract_solution(std::string_view trace);

// The path a sub search (a child thread's trace, starting at its own node) claims to have found: the
// Operations of the last "Current State: ..., Operations: [...]" line before its first
// "... equal: Goal Reached", then the "Exploring Operation" steps between the two. Steps count from
// the original problem's numbers, so verify() against the root's problem checks the whole path.
ExtractedPath extract_subsearch_solution(std::string_view trace);

// The numbers of a node's state line "Current State: T:[a, b, ...], ..." (the first in `text`);
// empty when there is none.
std::vector<int> state_numbers(std::string_view text);
// The numbers of the first "[a, b, ...]" in `text`; empty when there is none.
std::vector<int> bracket_numbers(std::string_view text);

// A readable expression, e.g. "(3+5)*3": each step's result replaced by its sub-expression.
std::string to_expression(const Problem & p, const std::vector<Operation> & steps);

}  // namespace forkjoin::countdown
