// Per-sequence sampling: llama.cpp's sampler chain, configured from a Sampling, plus log-probability
// read-outs for confidence signals.
//
// Each sequence owns one Sampler with its own seeded RNG, so a sequence's samples do not depend on
// which other sequences share its batch. temperature == 0 is greedy decoding (argmax).
#pragma once

#include "backends/backend.h"
#include "backends/llama/model.h"

#include <cstdint>
#include <span>
#include <vector>

struct llama_context;
struct llama_sampler;

namespace forkjoin::llama {

// Sampling and TokenLogprob are the backend seam's (backends/backend.h).
using forkjoin::Sampling;
using forkjoin::TokenLogprob;

class Sampler {
public:
    // `end_of_generation`: the tokens Sampling::ignore_eos bans (unused otherwise), of a vocabulary
    // of n_vocab tokens.
    explicit Sampler(const Sampling & sampling, int32_t n_vocab = 0, std::span<const Token> end_of_generation = {});
    ~Sampler();
    Sampler(const Sampler &) = delete;
    Sampler & operator=(const Sampler &) = delete;

    // Samples from the idx-th output of the last llama_decode and advances the chain's state.
    Token sample(llama_context * ctx, int32_t idx);
    const Sampling & params() const { return sampling_; }

private:
    Sampling sampling_;
    llama_sampler * chain_ = nullptr;
};

// Log-softmax of the raw model distribution (before temperature and truncation) at `logits`:
// the log-probability of `token`, and optionally the top-k tokens in descending order.
float token_logprob(const float * logits, int32_t n_vocab, Token token);
void top_logprobs(const float * logits, int32_t n_vocab, int32_t k, std::vector<TokenLogprob> & out);

}  // namespace forkjoin::llama
