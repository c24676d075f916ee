#include "tools/gguf/llama_gguf_reader.h"

#include "base/error.h"
#include "tools/gguf/llama_tensors.h"

#include <ggml.h>
#include <gguf.h>

#include <memory>

namespace forkjoin::gguf {

LlamaFile read_llama_gguf(const std::string & path) {
    auto fail = [&](const std::string & what) { return Error(ErrorCode::model_load, "GGUF '" + path + "': " + what); };
    ggml_context * data = nullptr;
    std::unique_ptr<gguf_context, decltype(&gguf_free)> g(gguf_init_from_file(path.c_str(), {.no_alloc = false, .ctx = &data}),
                                                          gguf_free);
    std::unique_ptr<ggml_context, decltype(&ggml_free)> ctx(data, ggml_free);
    if (!g || !ctx) throw fail("cannot be read as GGUF");
    auto key = [&](const char * name) {
        const int64_t id = gguf_find_key(g.get(), name);
        if (id < 0) throw fail(std::string("no ") + name);
        return id;
    };
    if (std::string(gguf_get_val_str(g.get(), key("general.architecture"))) != "llama") throw fail("not a llama-architecture model");
    LlamaFile out;
    LlamaHyperparams & hp = out.hparams;
    auto u32 = [&](const char * name) { return static_cast<int32_t>(gguf_get_val_u32(g.get(), key(name))); };
    hp.n_ctx_train = u32("llama.context_length");
    hp.n_embd = u32("llama.embedding_length");
    hp.n_layer = u32("llama.block_count");
    hp.n_ff = u32("llama.feed_forward_length");
    hp.n_head = u32("llama.attention.head_count");
    hp.n_head_kv = u32("llama.attention.head_count_kv");
    hp.rms_eps = gguf_get_val_f32(g.get(), key("llama.attention.layer_norm_rms_epsilon"));
    hp.rope_freq_base = gguf_get_val_f32(g.get(), key("llama.rope.freq_base"));
    const int64_t vocab = gguf_find_key(g.get(), "llama.vocab_size");
    hp.n_vocab = vocab >= 0 ? static_cast<int32_t>(gguf_get_val_u32(g.get(), vocab))
                            : static_cast<int32_t>(gguf_get_arr_n(g.get(), key("tokenizer.ggml.tokens")));
    if (hp.n_head <= 0 || hp.n_head_kv <= 0 || hp.n_embd % hp.n_head != 0 || hp.n_layer <= 0) throw fail("bad head or layer counts");
    out.weights.layers.resize(static_cast<size_t>(hp.n_layer));
    for_each_llama_tensor(hp, out.weights, [&](const std::string & name, std::vector<float> & values, int64_t rows, int64_t cols, bool optional) {
        const ggml_tensor * t = ggml_get_tensor(ctx.get(), name.c_str());
        if (!t) {
            if (optional) return;  // tied to token_embd
            throw fail("no tensor " + name);
        }
        const int64_t n = cols == 0 ? rows : rows * cols;
        if (ggml_nelements(t) != n) {
            throw fail("tensor " + name + " has " + std::to_string(ggml_nelements(t)) + " values, expected " + std::to_string(n));
        }
        values.resize(static_cast<size_t>(n));
        if (t->type == GGML_TYPE_F32) {
            const auto * src = static_cast<const float *>(t->data);
            values.assign(src, src + n);
        } else if (t->type == GGML_TYPE_F16) {
            ggml_fp16_to_fp32_row(static_cast<const ggml_fp16_t *>(t->data), values.data(), n);
        } else {
            throw fail("tensor " + name + " is " + ggml_type_name(t->type) + "; only F32 and F16 weights can be trained from");
        }
    });
    return out;
}

}  // namespace forkjoin::gguf
