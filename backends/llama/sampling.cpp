#include "backends/llama/sampling.h"

#include "base/error.h"

#include <llama.h>

#include <algorithm>
#include <cmath>

namespace forkjoin::llama {

Sampler::Sampler(const Sampling & sampling, int32_t n_vocab, std::span<const Token> end_of_generation) : sampling_(sampling) {
    if (sampling.temperature < 0.0f || sampling.top_k < 0 || sampling.top_p <= 0.0f || sampling.top_p > 1.0f ||
        sampling.min_p < 0.0f || sampling.min_p >= 1.0f || sampling.top_logprobs < 0) {
        throw Error(ErrorCode::invalid_argument,
                    "sampling parameters out of range (need temperature >= 0, top_k >= 0, 0 < top_p <= 1, "
                    "0 <= min_p < 1, top_logprobs >= 0)");
    }
    llama_sampler_chain_params params = llama_sampler_chain_default_params();
    params.no_perf = true;
    chain_ = llama_sampler_chain_init(params);
    if (sampling.ignore_eos && !end_of_generation.empty()) {
        // First in the chain, so greedy and every filter see the banned tokens at -inf.
        std::vector<llama_logit_bias> bans;
        for (Token t : end_of_generation) bans.push_back({t, -INFINITY});
        llama_sampler_chain_add(chain_, llama_sampler_init_logit_bias(n_vocab, static_cast<int32_t>(bans.size()), bans.data()));
    }
    if (sampling.temperature == 0.0f) {
        llama_sampler_chain_add(chain_, llama_sampler_init_greedy());
        return;
    }
    if (sampling.top_k > 0) llama_sampler_chain_add(chain_, llama_sampler_init_top_k(sampling.top_k));
    if (sampling.top_p < 1.0f) llama_sampler_chain_add(chain_, llama_sampler_init_top_p(sampling.top_p, 1));
    if (sampling.min_p > 0.0f) llama_sampler_chain_add(chain_, llama_sampler_init_min_p(sampling.min_p, 1));
    llama_sampler_chain_add(chain_, llama_sampler_init_temp(sampling.temperature));
    // llama.cpp seeds with 32 bits; fold the 64-bit seed so both halves matter.
    const auto seed32 = static_cast<uint32_t>(sampling.seed ^ (sampling.seed >> 32));
    llama_sampler_chain_add(chain_, llama_sampler_init_dist(seed32));
}

Sampler::~Sampler() {
    llama_sampler_free(chain_);
}

Token Sampler::sample(llama_context * ctx, int32_t idx) {
    return llama_sampler_sample(chain_, ctx, idx);
}

namespace {
float log_sum_exp(const float * logits, int32_t n_vocab) {
    const float max = *std::max_element(logits, logits + n_vocab);
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max));
    return max + static_cast<float>(std::log(sum));
}
}  // namespace

float token_logprob(const float * logits, int32_t n_vocab, Token token) {
    return logits[token] - log_sum_exp(logits, n_vocab);
}

void top_logprobs(const float * logits, int32_t n_vocab, int32_t k, std::vector<TokenLogprob> & out) {
    const float lse = log_sum_exp(logits, n_vocab);
    k = std::min(k, n_vocab);
    out.resize(static_cast<size_t>(n_vocab));
    for (int32_t i = 0; i < n_vocab; ++i) out[static_cast<size_t>(i)] = {i, logits[i] - lse};
    auto by_logprob = [](const TokenLogprob & a, const TokenLogprob & b) {
        return a.logprob > b.logprob || (a.logprob == b.logprob && a.token < b.token);
    };
    std::partial_sort(out.begin(), out.begin() + k, out.end(), by_logprob);
    out.resize(static_cast<size_t>(k));
}

}  // namespace forkjoin::llama
