// Training examples for the Countdown model: token sequences with a per-token loss weight.
//
// Only what the model itself writes is in the loss. A thread's prompt (mode tag + first node)
// is not, and neither is the join text the runtime inserts (APR's <Sub Searches> ...
// <End Sub Searches> block) nor the context before it that the model already wrote.
//   sequential mode: [tag, root prompt | whole search, </s>]
//   parallel mode:   [tag, root prompt | search up to <End Calling Sub Searches>, </s>]
//                    [tag, context before the spawn, join text | what follows, </s>]
//                    per child: [sequential tag, child prompt | child's search, </s>]
#pragma once

#include "backends/llama/model.h"
#include "strategies/countdown_traces.h"
#include "tasks/countdown/search_trace.h"

#include <cstdint>
#include <vector>

namespace forkjoin::train {

struct Example {
    std::vector<int64_t> tokens;
    std::vector<uint8_t> in_loss;  // in_loss[i]: token i is a prediction target
};

std::vector<Example> make_examples(const countdown::Problem & p, bool parallel,
                                   const countdown::SearchOptions & search, const llama::Model & tokenizer);

// One of the model's own verified examples (forkjoin generate traces): each part tokenized as the
// symbolic examples are (a part at a time), in the loss where the part is, then </s> in the loss.
Example example_from_trace(const strategies::TrainingTrace & trace, const llama::Model & tokenizer);

// The prompt a thread starts from, as tokens.
std::vector<int64_t> prompt_tokens(const std::string & tag, const std::string & prompt, const llama::Model & tokenizer);

}  // namespace forkjoin::train
