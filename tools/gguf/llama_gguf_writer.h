// Writes a Llama-architecture model with an SPM ("llama") vocabulary as a GGUF file that
// llama.cpp's `llama` arch loads.
//
// Layout contract (what the trainer and the test-model tool both rely on):
// - Every matrix is given row-major as torch stores a Linear weight, shape (out, in); it is written
//   unchanged, which ggml reads as ne = {in, out}. token_embd is (n_vocab, n_embd).
// - RoPE: llama.cpp's llama arch rotates adjacent pairs (2i, 2i+1) (ggml "normal" rope mode), so
//   q/k weights are written without the permutation HF checkpoints need. A trainer must rotate
//   adjacent pairs too.
// - No `output.weight` means the output projection is tied to token_embd.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace forkjoin::gguf {

struct LlamaHyperparams {
    int32_t n_vocab = 0;
    int32_t n_embd = 0;
    int32_t n_layer = 0;
    int32_t n_head = 0;
    int32_t n_head_kv = 0;
    int32_t n_ff = 0;
    int32_t n_ctx_train = 2048;
    float rms_eps = 1e-5f;
    float rope_freq_base = 10000.0f;
    int32_t head_dim() const { return n_embd / n_head; }
};

// A vocabulary as llama.cpp reads it, for one of two tokenizers:
// - "llama" (SentencePiece): pieces with "▁" (U+2581) for a space, merged pairwise by score
//   (higher first), so a long piece needs a chain of shorter pieces in the vocabulary;
// - "rwkv" (greedy longest match over a trie): any piece can be a single token, which suits a
//   compact vocabulary of whole phrases. Pieces are given as raw bytes; the writer escapes them.
//   Every single character that can occur must itself be a token.
enum class TokenType : int32_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

struct Vocabulary {
    std::string tokenizer = "llama";  // "llama" (SPM) or "rwkv" (greedy longest match)
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<TokenType> types;
    int32_t unk_id = 0;
    int32_t bos_id = 1;
    int32_t eos_id = 2;
    bool add_bos = true;
    bool add_space_prefix = false;
};

struct LlamaLayerWeights {
    std::vector<float> attn_norm;  // (n_embd)
    std::vector<float> wq;         // (n_embd, n_embd)
    std::vector<float> wk;         // (n_head_kv * head_dim, n_embd)
    std::vector<float> wv;         // (n_head_kv * head_dim, n_embd)
    std::vector<float> wo;         // (n_embd, n_embd)
    std::vector<float> ffn_norm;   // (n_embd)
    std::vector<float> w_gate;     // (n_ff, n_embd)
    std::vector<float> w_up;       // (n_ff, n_embd)
    std::vector<float> w_down;     // (n_embd, n_ff)
};

struct LlamaWeights {
    std::vector<float> token_embd;   // (n_vocab, n_embd)
    std::vector<LlamaLayerWeights> layers;
    std::vector<float> output_norm;  // (n_embd)
    std::vector<float> output;       // (n_vocab, n_embd); empty: tied to token_embd
};

enum class WeightType { f32, f16 };

struct GgufMetadata {
    std::string name = "forkjoin";
    std::vector<std::pair<std::string, std::string>> strings;  // extra string keys, e.g. forkjoin.*
};

// Checks every shape against the hyperparameters, then writes the file.
// Throws forkjoin::Error(invalid_argument) on a shape mismatch, Error(io) if the file cannot be written.
void write_llama_gguf(const std::string & path, const LlamaHyperparams & hp, const Vocabulary & vocab,
                      const LlamaWeights & weights, WeightType matrix_type = WeightType::f32,
                      const GgufMetadata & meta = {});

}  // namespace forkjoin::gguf
