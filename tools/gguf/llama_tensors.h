// The tensors of a Llama-architecture GGUF, named as llama.cpp's `llama` arch loads them, each with
// where its values live in LlamaWeights and its torch shape: one list for the writer and the reader.
#pragma once

#include "tools/gguf/llama_gguf_writer.h"

#include <string>
#include <type_traits>

namespace forkjoin::gguf {

// Calls f(name, values, rows, cols, optional) for every tensor in file order: rows is torch's "out",
// cols its "in" (0 for a vector); optional marks output.weight, absent when tied to token_embd.
// `Weights` is LlamaWeights or const LlamaWeights, whose layers must already number hp.n_layer.
template <typename Weights, typename F>
void for_each_llama_tensor(const LlamaHyperparams & hp, Weights & w, F && f) {
    static_assert(std::is_same_v<std::remove_const_t<Weights>, LlamaWeights>);
    const int64_t kv_dim = static_cast<int64_t>(hp.n_head_kv) * hp.head_dim();
    f(std::string("token_embd.weight"), w.token_embd, int64_t{hp.n_vocab}, int64_t{hp.n_embd}, false);
    for (int32_t il = 0; il < hp.n_layer; ++il) {
        auto & L = w.layers[static_cast<size_t>(il)];
        const std::string p = "blk." + std::to_string(il) + ".";
        f(p + "attn_norm.weight", L.attn_norm, int64_t{hp.n_embd}, int64_t{0}, false);
        f(p + "attn_q.weight", L.wq, int64_t{hp.n_embd}, int64_t{hp.n_embd}, false);
        f(p + "attn_k.weight", L.wk, kv_dim, int64_t{hp.n_embd}, false);
        f(p + "attn_v.weight", L.wv, kv_dim, int64_t{hp.n_embd}, false);
        f(p + "attn_output.weight", L.wo, int64_t{hp.n_embd}, int64_t{hp.n_embd}, false);
        f(p + "ffn_norm.weight", L.ffn_norm, int64_t{hp.n_embd}, int64_t{0}, false);
        f(p + "ffn_gate.weight", L.w_gate, int64_t{hp.n_ff}, int64_t{hp.n_embd}, false);
        f(p + "ffn_up.weight", L.w_up, int64_t{hp.n_ff}, int64_t{hp.n_embd}, false);
        f(p + "ffn_down.weight", L.w_down, int64_t{hp.n_embd}, int64_t{hp.n_ff}, false);
    }
    f(std::string("output_norm.weight"), w.output_norm, int64_t{hp.n_embd}, int64_t{0}, false);
    f(std::string("output.weight"), w.output, int64_t{hp.n_vocab}, int64_t{hp.n_embd}, true);
}

}  // namespace forkjoin::gguf
