#include "tools/gguf/llama_gguf_writer.h"

#include "tools/gguf/llama_tensors.h"

#include "base/error.h"

#include <ggml.h>
#include <gguf.h>

#include <cstring>
#include <memory>

namespace forkjoin::gguf {
namespace {

struct TensorSpec {
    std::string name;
    const std::vector<float> * data;
    int64_t rows;  // torch "out"
    int64_t cols;  // torch "in"; 0 for a vector
    bool matrix;
};

// llama.cpp's RWKV vocabulary stores pieces with backslash escapes (\\n, \\t, \\r, \\xHH, \\\\).
std::string escape_rwkv(const std::string & raw) {
    std::string out;
    for (unsigned char c : raw) {
        if (c == '\\') out += "\\\\";
        else if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else if (c == '\r') out += "\\r";
        else if (c < 0x20 || c == 0x7F) {
            const char * hex = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else out += static_cast<char>(c);
    }
    return out;
}

void check_size(const TensorSpec & t) {
    const int64_t expected = t.cols == 0 ? t.rows : t.rows * t.cols;
    if (static_cast<int64_t>(t.data->size()) != expected) {
        throw Error(ErrorCode::invalid_argument, "tensor " + t.name + " has " + std::to_string(t.data->size()) +
                                                     " values, expected " + std::to_string(expected));
    }
}

}  // namespace

void write_llama_gguf(const std::string & path, const LlamaHyperparams & hp, const Vocabulary & vocab,
                      const LlamaWeights & w, WeightType matrix_type, const GgufMetadata & meta) {
    if (hp.n_head <= 0 || hp.n_head_kv <= 0 || hp.n_embd % hp.n_head != 0 || hp.n_head % hp.n_head_kv != 0) {
        throw Error(ErrorCode::invalid_argument, "bad head configuration: n_embd " + std::to_string(hp.n_embd) +
                                                     ", n_head " + std::to_string(hp.n_head) + ", n_head_kv " +
                                                     std::to_string(hp.n_head_kv));
    }
    if (static_cast<int32_t>(vocab.tokens.size()) != hp.n_vocab || vocab.scores.size() != vocab.tokens.size() ||
        vocab.types.size() != vocab.tokens.size()) {
        throw Error(ErrorCode::invalid_argument, "vocabulary size does not match n_vocab " + std::to_string(hp.n_vocab));
    }
    if (static_cast<int32_t>(w.layers.size()) != hp.n_layer) {
        throw Error(ErrorCode::invalid_argument, "expected " + std::to_string(hp.n_layer) + " layers, got " +
                                                     std::to_string(w.layers.size()));
    }
    std::vector<TensorSpec> specs;
    for_each_llama_tensor(hp, w, [&](const std::string & name, const std::vector<float> & values, int64_t rows, int64_t cols, bool optional) {
        if (optional && values.empty()) return;  // output tied to token_embd
        specs.push_back({name, &values, rows, cols, cols != 0});
    });
    size_t data_bytes = 0;
    for (const auto & t : specs) {
        check_size(t);
        data_bytes += t.data->size() * sizeof(float) + 64;
    }

    // A ggml context holds the tensors gguf writes from (norms stay F32, as llama.cpp expects).
    ggml_init_params params{data_bytes + specs.size() * ggml_tensor_overhead() + 1024, nullptr, false};
    std::unique_ptr<ggml_context, decltype(&ggml_free)> ctx(ggml_init(params), ggml_free);
    std::unique_ptr<gguf_context, decltype(&gguf_free)> g(gguf_init_empty(), gguf_free);
    if (!ctx || !g) throw Error(ErrorCode::io, "out of memory preparing " + path);

    gguf_context * gc = g.get();
    gguf_set_val_str(gc, "general.architecture", "llama");
    gguf_set_val_str(gc, "general.name", meta.name.c_str());
    gguf_set_val_u32(gc, "general.file_type", matrix_type == WeightType::f16 ? 1 : 0);
    gguf_set_val_u32(gc, "llama.context_length", static_cast<uint32_t>(hp.n_ctx_train));
    gguf_set_val_u32(gc, "llama.embedding_length", static_cast<uint32_t>(hp.n_embd));
    gguf_set_val_u32(gc, "llama.block_count", static_cast<uint32_t>(hp.n_layer));
    gguf_set_val_u32(gc, "llama.feed_forward_length", static_cast<uint32_t>(hp.n_ff));
    gguf_set_val_u32(gc, "llama.attention.head_count", static_cast<uint32_t>(hp.n_head));
    gguf_set_val_u32(gc, "llama.attention.head_count_kv", static_cast<uint32_t>(hp.n_head_kv));
    gguf_set_val_u32(gc, "llama.rope.dimension_count", static_cast<uint32_t>(hp.head_dim()));
    gguf_set_val_f32(gc, "llama.attention.layer_norm_rms_epsilon", hp.rms_eps);
    gguf_set_val_f32(gc, "llama.rope.freq_base", hp.rope_freq_base);
    gguf_set_val_u32(gc, "llama.vocab_size", static_cast<uint32_t>(hp.n_vocab));

    if (vocab.tokenizer != "llama" && vocab.tokenizer != "rwkv") {
        throw Error(ErrorCode::invalid_argument, "unsupported tokenizer '" + vocab.tokenizer + "' (llama or rwkv)");
    }
    gguf_set_val_str(gc, "tokenizer.ggml.model", vocab.tokenizer.c_str());
    std::vector<std::string> texts;
    for (size_t i = 0; i < vocab.tokens.size(); ++i) {
        const bool control = vocab.types[i] == TokenType::control || vocab.types[i] == TokenType::unknown;
        texts.push_back(vocab.tokenizer == "rwkv" && !control ? escape_rwkv(vocab.tokens[i]) : vocab.tokens[i]);
    }
    std::vector<const char *> token_ptrs;
    for (const auto & t : texts) token_ptrs.push_back(t.c_str());
    gguf_set_arr_str(gc, "tokenizer.ggml.tokens", token_ptrs.data(), token_ptrs.size());
    gguf_set_arr_data(gc, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, vocab.scores.data(), vocab.scores.size());
    std::vector<int32_t> types;
    for (auto t : vocab.types) types.push_back(static_cast<int32_t>(t));
    gguf_set_arr_data(gc, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types.data(), types.size());
    gguf_set_val_u32(gc, "tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(vocab.unk_id));
    gguf_set_val_u32(gc, "tokenizer.ggml.bos_token_id", static_cast<uint32_t>(vocab.bos_id));
    gguf_set_val_u32(gc, "tokenizer.ggml.eos_token_id", static_cast<uint32_t>(vocab.eos_id));
    gguf_set_val_bool(gc, "tokenizer.ggml.add_bos_token", vocab.add_bos);
    gguf_set_val_bool(gc, "tokenizer.ggml.add_eos_token", false);
    gguf_set_val_bool(gc, "tokenizer.ggml.add_space_prefix", vocab.add_space_prefix);
    for (const auto & [key, value] : meta.strings) gguf_set_val_str(gc, key.c_str(), value.c_str());

    for (const auto & t : specs) {
        const bool half = t.matrix && matrix_type == WeightType::f16;
        const ggml_type type = half ? GGML_TYPE_F16 : GGML_TYPE_F32;
        ggml_tensor * tensor = t.cols == 0 ? ggml_new_tensor_1d(ctx.get(), type, t.rows)
                                           : ggml_new_tensor_2d(ctx.get(), type, t.cols, t.rows);
        ggml_set_name(tensor, t.name.c_str());
        if (half) {
            ggml_fp32_to_fp16_row(t.data->data(), static_cast<ggml_fp16_t *>(tensor->data),
                                  static_cast<int64_t>(t.data->size()));
        } else {
            std::memcpy(tensor->data, t.data->data(), t.data->size() * sizeof(float));
        }
        gguf_add_tensor(gc, tensor);
    }
    if (!gguf_write_to_file(gc, path.c_str(), false)) {
        throw Error(ErrorCode::io, "cannot write GGUF file '" + path + "'");
    }
}

}  // namespace forkjoin::gguf
