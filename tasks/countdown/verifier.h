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

// A readable expression, e.g. "(3+5)*3": each step's result replaced by its sub-expression.
std::string to_expression(const Problem & p, const std::vector<Operation> & steps);

}  // namespace forkjoin::countdown
