#include "app/decode_probe.h"

#include <chrono>

namespace forkjoin::app {

std::vector<llama::Token> prompt_tokens(const llama::Model & model, int n, uint64_t salt) {
    std::vector<llama::Token> out;
    out.reserve(static_cast<size_t>(n));
    uint64_t x = salt * 0x9E3779B97F4A7C15ull + 7;
    const int32_t first = 3, span = model.n_vocab() - first;
    for (int i = 0; i < n; ++i) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        out.push_back(first + static_cast<llama::Token>(x % static_cast<uint64_t>(span)));
    }
    return out;
}

double decode_tokens_per_s(llama::LlamaBackend & backend, int n_seq, int steps, int context) {
    std::vector<llama::SeqId> seqs;
    for (int i = 0; i < n_seq; ++i) {
        seqs.push_back(backend.open(prompt_tokens(backend.model(), context, static_cast<uint64_t>(i))));
    }
    while (backend.usage().pending_tokens > static_cast<uint32_t>(n_seq)) backend.step();
    const auto t0 = std::chrono::steady_clock::now();
    int64_t tokens = 0;
    for (int s = 0; s < steps; ++s) tokens += backend.step().n_decoded;
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (llama::SeqId id : seqs) backend.close(id);
    return static_cast<double>(tokens) / dt;
}

}  // namespace forkjoin::app
