// The Llama architecture in LibTorch, computing what llama.cpp's `llama` arch computes:
// token embedding -> n_layer x [RMSNorm -> attention with RoPE -> residual, RMSNorm -> SwiGLU ->
// residual] -> RMSNorm -> output projection (untied).
//
// RoPE rotates adjacent pairs (2i, 2i+1) with theta_i = pos * base^(-2i/head_dim), as ggml's
// "normal" rope mode does for the llama arch (not HF's rotate_half), so the weights export to
// GGUF without any permutation. Linear weights are torch (out, in) = ggml ne {in, out}.
#pragma once

#include "tools/gguf/llama_gguf_writer.h"

#include <torch/torch.h>

namespace forkjoin::train {

struct LlamaConfig {
    int64_t n_vocab = 0;
    int64_t n_embd = 256;
    int64_t n_layer = 6;
    int64_t n_head = 8;
    int64_t n_ff = 704;
    int64_t n_ctx = 2048;  // longest sequence trained (RoPE table size)
    double rms_eps = 1e-5;
    double rope_base = 10000.0;
    gguf::LlamaHyperparams hparams() const;
};

class RmsNormImpl : public torch::nn::Module {
public:
    RmsNormImpl(int64_t dim, double eps);
    torch::Tensor forward(const torch::Tensor & x);
    torch::Tensor weight;
    double eps;
};
TORCH_MODULE(RmsNorm);

class BlockImpl : public torch::nn::Module {
public:
    explicit BlockImpl(const LlamaConfig & c);
    torch::Tensor forward(const torch::Tensor & x, const torch::Tensor & cos, const torch::Tensor & sin,
                          const torch::Tensor & mask);
    RmsNorm attn_norm{nullptr}, ffn_norm{nullptr};
    torch::nn::Linear wq{nullptr}, wk{nullptr}, wv{nullptr}, wo{nullptr};
    torch::nn::Linear w_gate{nullptr}, w_up{nullptr}, w_down{nullptr};
    int64_t n_head, head_dim;
};
TORCH_MODULE(Block);

class LlamaTorchImpl : public torch::nn::Module {
public:
    explicit LlamaTorchImpl(const LlamaConfig & c);
    // tokens: [B, T] int64 -> logits [B, T, n_vocab]
    torch::Tensor forward(const torch::Tensor & tokens);
    // GPT-2 style init from the current torch RNG (seed it first).
    void init_weights();
    gguf::LlamaWeights export_weights() const;
    // Sets every weight from `weights` (a file's, tools/gguf/llama_gguf_reader.h); a tied output
    // (empty) starts as a copy of token_embd. Throws Error(invalid_argument) on a shape mismatch,
    // before or while copying (a failed import leaves the model partly set: discard it).
    void import_weights(const gguf::LlamaWeights & weights);
    const LlamaConfig & config() const { return config_; }

private:
    // Each parameter with its values' place in `w` (whose layers it sizes), in one order for export
    // and import.
    std::vector<std::pair<torch::Tensor, std::vector<float> *>> weight_slots(gguf::LlamaWeights & w) const;
    LlamaConfig config_;
    torch::nn::Embedding tok_embd{nullptr};
    torch::nn::ModuleList layers;
    RmsNorm output_norm{nullptr};
    torch::nn::Linear output{nullptr};
    torch::Tensor rope_cos, rope_sin;  // [n_ctx, head_dim/2], derived from config_, not saved
};
TORCH_MODULE(LlamaTorch);

}  // namespace forkjoin::train
