// The shipped Countdown model's vocabulary: compact, greedy longest-match (llama.cpp's "rwkv"
// tokenizer type), so each recurring phrase of APR's format is one token.
//
// Contents: <unk>, <s>, </s> (end of a thread's text), the two mode tags, every printable ASCII
// character and newline (so any ASCII text tokenizes), the whole numbers 10..999, and the
// phrases of APR's search and spawn/join markup. Tokenization happens in llama.cpp from the GGUF,
// so training and inference cannot disagree.
#pragma once

#include "tasks/countdown/prompts.h"
#include "tools/gguf/llama_gguf_writer.h"

namespace forkjoin::train {

// The mode tags (tasks/countdown/prompts.h) are single tokens of this vocabulary.
using countdown::kParallelTag;
using countdown::kSequentialTag;
inline constexpr int kEosId = 2;

gguf::Vocabulary countdown_vocabulary();

}  // namespace forkjoin::train
