#include "tools/testmodel/test_model.h"

#include "base/error.h"
#include "base/random.h"

#include <cmath>
#include <filesystem>
#include <functional>
#include <unistd.h>

namespace forkjoin::testmodel {
namespace {

std::vector<float> gaussian(SplitMix64 & rng, size_t n, float stddev) {
    std::vector<float> v(n);
    for (auto & x : v) x = rng.normal() * stddev;
    return v;
}

gguf::LlamaHyperparams shape(int32_t n_embd, int32_t n_layer, int32_t n_head) {
    gguf::LlamaHyperparams hp;
    hp.n_vocab = static_cast<int32_t>(test_vocabulary().tokens.size());
    hp.n_embd = n_embd;
    hp.n_layer = n_layer;
    hp.n_head = n_head;
    hp.n_head_kv = n_head;
    hp.n_ff = ((n_embd * 8 / 3) + 31) / 32 * 32;  // SwiGLU width, rounded like Llama's
    hp.n_ctx_train = 8192;
    return hp;
}

}  // namespace

TestModelSpec test_model_spec(const std::string & size, uint64_t seed) {
    TestModelSpec spec;
    spec.name = size;
    spec.seed = seed;
    if (size == "1M") spec.hparams = shape(128, 5, 2);
    else if (size == "10M") spec.hparams = shape(320, 8, 5);
    else if (size == "50M") spec.hparams = shape(640, 10, 10);
    else throw Error(ErrorCode::invalid_argument, "unknown test model size '" + size + "' (use 1M, 10M or 50M)");
    return spec;
}

gguf::Vocabulary test_vocabulary(const std::vector<std::string> & added_tokens) {
    gguf::Vocabulary v;
    auto add = [&](const std::string & text, float score, gguf::TokenType type) {
        v.tokens.push_back(text);
        v.scores.push_back(score);
        v.types.push_back(type);
    };
    add("<unk>", 0.0f, gguf::TokenType::unknown);
    add("<s>", 0.0f, gguf::TokenType::control);
    add("</s>", 0.0f, gguf::TokenType::control);
    add("\xE2\x96\x81", -1.0f, gguf::TokenType::normal);  // "▁": a space
    add("\n", -1.0f, gguf::TokenType::normal);
    for (char c = 33; c < 127; ++c) add(std::string(1, c), -1.0f, gguf::TokenType::normal);
    // A few merges so the SPM merge path is exercised; each is reachable from smaller pieces.
    const char * merges[] = {"th", "he", "in", "er", "an", "\xE2\x96\x81t", "\xE2\x96\x81th", "\xE2\x96\x81the"};
    float score = 0.0f;
    for (const char * m : merges) add(m, score -= 0.1f, gguf::TokenType::normal);
    for (const auto & t : added_tokens) add(t, 0.0f, gguf::TokenType::control);
    v.unk_id = 0;
    v.bos_id = 1;
    v.eos_id = 2;
    v.add_bos = true;
    v.add_space_prefix = false;
    return v;
}

uint64_t parameter_count(const gguf::LlamaHyperparams & hp) {
    const uint64_t d = static_cast<uint64_t>(hp.n_embd), ff = static_cast<uint64_t>(hp.n_ff);
    const uint64_t kv = static_cast<uint64_t>(hp.n_head_kv) * static_cast<uint64_t>(hp.head_dim());
    const uint64_t layer = 2 * d + d * d * 2 + 2 * d * kv + 3 * d * ff;
    return 2 * static_cast<uint64_t>(hp.n_vocab) * d + d + layer * static_cast<uint64_t>(hp.n_layer);
}

void write_test_model(const std::string & path, const TestModelSpec & spec) {
    gguf::LlamaHyperparams hp = spec.hparams;
    hp.n_vocab = static_cast<int32_t>(test_vocabulary(spec.added_tokens).tokens.size());  // the added tokens' rows too
    SplitMix64 rng(spec.seed * 0x2545F4914F6CDD1Dull + 1);
    const size_t d = static_cast<size_t>(hp.n_embd), ff = static_cast<size_t>(hp.n_ff);
    const size_t kv = static_cast<size_t>(hp.n_head_kv * hp.head_dim());
    const size_t nv = static_cast<size_t>(hp.n_vocab);
    const float in_d = 1.0f / std::sqrt(static_cast<float>(d));
    const float in_ff = 1.0f / std::sqrt(static_cast<float>(ff));

    gguf::LlamaWeights w;
    w.token_embd = gaussian(rng, nv * d, 1.0f);
    for (int32_t il = 0; il < hp.n_layer; ++il) {
        gguf::LlamaLayerWeights L;
        L.attn_norm.assign(d, 1.0f);
        L.wq = gaussian(rng, d * d, in_d);
        L.wk = gaussian(rng, kv * d, in_d);
        L.wv = gaussian(rng, kv * d, in_d);
        L.wo = gaussian(rng, d * d, in_d * 0.5f);
        L.ffn_norm.assign(d, 1.0f);
        L.w_gate = gaussian(rng, ff * d, in_d);
        L.w_up = gaussian(rng, ff * d, in_d);
        L.w_down = gaussian(rng, d * ff, in_ff * 0.5f);
        w.layers.push_back(std::move(L));
    }
    w.output_norm.assign(d, 1.0f);
    w.output = gaussian(rng, nv * d, spec.logit_scale * in_d);
    gguf::GgufMetadata meta;
    meta.name = "forkjoin-test-" + spec.name + "-seed" + std::to_string(spec.seed);
    meta.strings.push_back({"forkjoin.purpose", "random weights for tests and benchmarks; not a trained model"});
    if (!spec.chat_template.empty()) meta.strings.push_back({"tokenizer.chat_template", spec.chat_template});
    gguf::write_llama_gguf(path, hp, test_vocabulary(spec.added_tokens), w, spec.matrix_type, meta);
}

// FNV-1a over the tags: a stable name part (std::hash may differ between library builds).
static uint64_t tags_hash(const std::vector<std::string> & tags) {
    uint64_t h = 1469598103934665603ull;
    for (const auto & t : tags) {
        for (unsigned char c : t + '\0') h = (h ^ c) * 1099511628211ull;
    }
    return h;
}

std::string ensure_test_model(const std::string & dir, const TestModelSpec & spec) {
    namespace fs = std::filesystem;
    fs::create_directories(dir);
    const auto & hp = spec.hparams;
    // The name encodes everything that changes the bytes, so a stale file is never reused.
    const std::string file = "test-" + spec.name + "-d" + std::to_string(hp.n_embd) + "-l" +
                             std::to_string(hp.n_layer) + "-h" + std::to_string(hp.n_head) + "-v" +
                             std::to_string(hp.n_vocab) + "-s" + std::to_string(spec.seed) +
                             (spec.matrix_type == gguf::WeightType::f16 ? "-f16" : "-f32") + "-x" +
                             std::to_string(static_cast<int>(spec.logit_scale * 100)) +
                             (spec.chat_template.empty() ? "" : "-chat" + std::to_string(std::hash<std::string>{}(spec.chat_template) % 100000)) +
                             (spec.added_tokens.empty() ? "" : "-tags" + std::to_string(spec.added_tokens.size()) + "-" + std::to_string(tags_hash(spec.added_tokens) % 100000)) +
                             ".gguf";
    const fs::path path = fs::path(dir) / file;
    if (!fs::exists(path)) {
        // Write under a unique temporary name, then rename: concurrent test processes never see a
        // half-written model.
        const fs::path tmp = path.string() + ".tmp" + std::to_string(::getpid());
        write_test_model(tmp.string(), spec);
        fs::rename(tmp, path);
    }
    return path.string();
}

}  // namespace forkjoin::testmodel
