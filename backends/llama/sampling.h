// Per-sequence sampling: llama.cpp's sampler chain, configured from a Sampling, plus log-probability
// read-outs for confidence signals.
//
// Each sequence owns one Sampler with its own seeded RNG, so a sequence's samples do not depend on
// which other sequences share its batch. temperature == 0 is greedy decoding (argmax).
#pragma once

#include "backends/llama/model.h"

#include <cstdint>
#include <vector>

struct llama_context;
struct llama_sampler;

namespace forkjoin::llama {

struct Sampling {
    float temperature = 0.0f;  // 0: greedy; > 0: sample from the tempered distribution
    int32_t top_k = 0;         // keep the k most likely tokens; 0: off
    float top_p = 1.0f;        // nucleus; 1: off
    float min_p = 0.0f;        // drop tokens below min_p x p(max); 0: off
    uint64_t seed = 0;         // the sequence's RNG seed
    bool logprobs = false;     // report the sampled token's log-probability
    int32_t top_logprobs = 0;  // also report the k most likely tokens (implies logprobs)
};

struct TokenLogprob {
    Token token;
    float logprob;
};

class Sampler {
public:
    explicit Sampler(const Sampling & sampling);
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
