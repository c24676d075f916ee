#include "tasks/countdown/prompts.h"

#include "tasks/countdown/search_trace.h"

namespace forkjoin::countdown {

std::string root_context(const Problem & p, bool parallel, PromptStyle style) {
    const std::string tag = style == PromptStyle::apr ? "" : (parallel ? kParallelTag : kSequentialTag);
    return tag + root_prompt(p);
}

std::string child_context_prefix(PromptStyle style) {
    return style == PromptStyle::apr ? "" : kSequentialTag;
}

}  // namespace forkjoin::countdown
