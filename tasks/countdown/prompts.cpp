#include "tasks/countdown/prompts.h"

#include "tasks/countdown/search_trace.h"

namespace forkjoin::countdown {

std::string root_context(const Problem & p, bool parallel, PromptStyle style) {
    if (style == PromptStyle::apr) {
        // APR's engine (src/eval/eval_apr.py) ends the root prompt before the state line's "\n".
        std::string prompt = root_prompt(p);
        prompt.pop_back();
        return prompt;
    }
    return (parallel ? kParallelTag : kSequentialTag) + root_prompt(p);
}

std::string child_context_prefix(PromptStyle style) {
    return style == PromptStyle::apr ? "" : kSequentialTag;
}

}  // namespace forkjoin::countdown
