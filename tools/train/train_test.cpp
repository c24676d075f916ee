// The trainer's contract with llama.cpp: the vocabulary tokenizes APR's format compactly through
// llama.cpp itself, and LibTorch's forward equals llama.cpp's forward on the exported GGUF.
#include "backends/llama/backend.h"
#include "tasks/countdown/search_trace.h"
#include "tasks/countdown/solver.h"
#include "tools/train/countdown_vocabulary.h"
#include "tools/train/llama_torch.h"

#include <gtest/gtest.h>

#include <filesystem>

using namespace forkjoin;

namespace {

std::string temp_path(const std::string & name) {
    const auto dir = std::filesystem::temp_directory_path() / "forkjoin-train-test";
    std::filesystem::create_directories(dir);
    return (dir / name).string();
}

train::LlamaConfig small_config() {
    train::LlamaConfig c;
    c.n_vocab = static_cast<int64_t>(train::countdown_vocabulary().tokens.size());
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_ff = 160;
    c.n_ctx = 256;
    return c;
}

std::string export_model(train::LlamaTorch & model, const std::string & name) {
    const std::string path = temp_path(name);
    gguf::write_llama_gguf(path, model->config().hparams(), train::countdown_vocabulary(), model->export_weights());
    return path;
}

}  // namespace

TEST(Train, VocabularyTokenizesAprFormatCompactlyThroughLlamaCpp) {
    torch::manual_seed(1);
    train::LlamaTorch model(small_config());
    model->init_weights();
    const auto m = llama::Model::load(export_model(model, "vocab.gguf"));
    countdown::SearchOptions o;
    o.parallel = true;
    const auto t = countdown::write_search_trace(countdown::Problem{{4, 6, 2}, 12}, o);
    for (const std::string & text : {t.main_calls[0], t.main_calls[1], t.sub_calls[0][1].main_calls[0]}) {
        const auto tokens = m->tokenize(text);
        EXPECT_EQ(m->detokenize(tokens), text);
        EXPECT_LT(tokens.size() * 4, text.size()) << "fewer than 4 bytes a token";
    }
    for (const char * phrase : {"Exploring Operation: ", "<End Calling Sub Searches>\n", " equal: Goal Reached\n",
                                train::kParallelTag, "742"}) {
        EXPECT_EQ(m->tokenize(phrase).size(), 1u) << phrase;
    }
    EXPECT_EQ(m->tokenize("</s>", false, true).at(0), train::kEosId);
    EXPECT_THROW(m->tokenize("caf\xC3\xA9"), Error);  // outside the vocabulary: a clear error
}

// LibTorch and llama.cpp agree on the logits of the exported model (guards RoPE pairing and the
// weight layout). Tolerance: 1e-4 of the largest logit (seen: 2e-6), flash attention off, F32 KV cache.
TEST(Train, TorchForwardEqualsLlamaCppOnTheExport) {
    torch::manual_seed(7);
    train::LlamaTorch model(small_config());
    model->init_weights();
    {
        // Larger weights than the init, so a wrong RoPE or layout cannot hide in tiny logits.
        torch::NoGradGuard g;
        for (auto & p : model->parameters()) {
            if (p.dim() == 2) p.mul_(20.0);
        }
    }
    const auto m = llama::Model::load(export_model(model, "parity.gguf"));
    const auto tokens = m->tokenize(std::string(train::kSequentialTag) + "Moving to Node #0\nCurrent State: 24:[3, 7, 9], Operations: []\n");
    ASSERT_GT(tokens.size(), 10u);
    auto input = torch::tensor(std::vector<int64_t>(tokens.begin(), tokens.end())).unsqueeze(0);
    torch::Tensor torch_logits;
    {
        torch::NoGradGuard g;
        torch_logits = model->forward(input)[0];
    }
    llama::BackendOptions o;
    o.n_ctx = 512;
    o.n_seq_max = 4;
    o.flash_attention = llama::FlashAttention::off;
    o.kv_f32 = true;  // an F16 cache alone differs by ~2e-3 relative here
    llama::LlamaBackend backend(m, o);
    float worst = 0, scale = 0;
    for (size_t n : {size_t{1}, tokens.size() / 2, tokens.size()}) {
        const auto seq = backend.open(std::vector<llama::Token>(tokens.begin(), tokens.begin() + static_cast<long>(n)), {}, false);
        const auto ours = backend.logits(seq);
        backend.close(seq);
        auto ref = torch_logits[static_cast<int64_t>(n) - 1];
        for (int64_t v = 0; v < ref.size(0); ++v) {
            worst = std::max(worst, std::fabs(ours[static_cast<size_t>(v)] - ref[v].item<float>()));
            scale = std::max(scale, std::fabs(ref[v].item<float>()));
        }
    }
    std::printf("torch vs llama.cpp: max |diff| %.3g on logits up to %.3g\n", worst, scale);
    EXPECT_GT(scale, 1.0f);
    EXPECT_LT(worst, 1e-4f * std::max(1.0f, scale));
}
