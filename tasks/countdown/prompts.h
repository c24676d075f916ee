// How a Countdown thread's context starts, per model family.
//
// forkjoin's own model reads a mode tag first: "<|sequential|>" threads never spawn,
// "<|parallel|>" threads spawn sub searches after expanding the root (APR). Children are
// sequential searches and carry the sequential tag. APR's published checkpoints read no tag, and
// their contexts end before the state line's "\n" (APR's src/eval), which the model writes.
#pragma once

#include "tasks/countdown/problem.h"

#include <string>

namespace forkjoin::countdown {

inline constexpr const char * kSequentialTag = "<|sequential|>\n";
inline constexpr const char * kParallelTag = "<|parallel|>\n";

enum class PromptStyle { forkjoin, apr };

std::string root_context(const Problem & p, bool parallel, PromptStyle style);
// What the apr dialect puts before each child's context.
std::string child_context_prefix(PromptStyle style);

}  // namespace forkjoin::countdown
