// LlamaBackend invariants (shared/DESIGN.md): fork equivalence, batch equivalence, splice,
// capacity/backpressure, scoring, and clear errors on bad input. All on a real llama.cpp model
// (the deterministic 1M test model), nothing mocked.
#include "backends/llama/backend.h"
#include "tools/testmodel/test_model.h"

#include <llama.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

using namespace forkjoin;
using namespace forkjoin::llama;

namespace {

std::shared_ptr<const Model> tiny_model() {
    static std::shared_ptr<const Model> model =
        Model::load(testmodel::ensure_test_model(FORKJOIN_TEST_MODEL_DIR, testmodel::test_model_spec("1M")));
    return model;
}

std::vector<Token> tokens_of(const std::string & text) { return tiny_model()->tokenize(text); }

// n deterministic tokens from the ordinary part of the vocabulary.
std::vector<Token> some_tokens(int n, uint64_t salt) {
    std::vector<Token> out;
    uint64_t x = salt * 2654435761u + 12345;
    for (int i = 0; i < n; ++i) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        out.push_back(3 + static_cast<Token>((x >> 33) % static_cast<uint64_t>(tiny_model()->n_vocab() - 3)));
    }
    return out;
}

void run_until_idle(LlamaBackend & b) {
    while (b.has_pending()) {
        const auto & r = b.step();
        ASSERT_TRUE(r.blocked.empty()) << r.blocked.front().message;
    }
}

float max_abs_diff(const std::vector<float> & a, const std::vector<float> & b) {
    EXPECT_EQ(a.size(), b.size());
    float m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

// Greedy-generates n tokens for each prompt, all in one batch; returns each sequence's output.
std::vector<std::vector<Token>> generate(LlamaBackend & b, const std::vector<std::vector<Token>> & prompts, int n,
                                         const std::vector<Sampling> & sampling = {}) {
    std::vector<SeqId> ids;
    for (size_t i = 0; i < prompts.size(); ++i) ids.push_back(b.open(prompts[i], sampling.empty() ? Sampling{} : sampling[i]));
    std::vector<std::vector<Token>> out(prompts.size());
    bool more = true;
    while (more) {
        const auto & r = b.step();
        EXPECT_TRUE(r.blocked.empty());
        for (const auto & s : r.sampled) {
            const size_t i = static_cast<size_t>(std::find(ids.begin(), ids.end(), s.seq) - ids.begin());
            out[i].push_back(s.token);
            if (static_cast<int>(out[i].size()) == n) b.set_generating(s.seq, false);
        }
        more = false;
        for (const auto & o : out) more |= static_cast<int>(o.size()) < n;
    }
    for (SeqId id : ids) b.close(id);
    return out;
}

BackendOptions options(FlashAttention fa = FlashAttention::automatic, uint32_t n_ctx = 2048, uint32_t n_seq = 32) {
    BackendOptions o;
    o.n_ctx = n_ctx;
    o.n_seq_max = n_seq;
    o.n_batch = 256;
    o.n_ubatch = 256;
    o.flash_attention = fa;
    return o;
}

// Where exactness is the point (fork = prefill, splice = append, score = generation), K/V are kept
// in F32, so the only difference left between the two paths is F32 summation order.
BackendOptions exact_options(FlashAttention fa = FlashAttention::off) {
    BackendOptions o = options(fa);
    o.kv_f32 = true;
    return o;
}

float max_abs(const std::vector<float> & v) {
    float m = 0;
    for (float x : v) m = std::max(m, std::fabs(x));
    return m;
}

// Tolerances follow from the arithmetic, not from one machine: ggml picks other kernels on other
// CPUs (AVX2, AVX-512, AMX) and for other batch shapes (vector vs tiled paths), so the same tokens
// decoded in two batch shapes are summed in two orders.
// - F32 K/V: a sum of n F32 terms in another order differs by about sqrt(n) units of 2^-24 relative;
//   each layer adds its own, so logits move by ~n_layer * sqrt(n_embd) * 2^-24 of their scale. The
//   tolerance is 8x that (1M model, 5 layers x 128: 6.7e-6 relative, ~7e-5 at max |logit| 10).
// - F16 K/V (the default): K and V are rounded to 11-bit mantissas when stored, so two paths whose
//   F32 values differ in the last bit can store adjacent F16 values: up to 2^-10 relative in a K or
//   V entry, carried to the logits (normalisation keeps relative errors relative). The tolerance is
//   2^-9 of the logits' scale (one F16 step in K and one in V): ~2e-2 at max |logit| 10. Seen: 2e-6
//   (AMD, AVX-512), 1.3e-3 to 1.9e-3 (Intel with AVX-512 and AMX), 3.4e-3 with flash attention on.
float f32_tolerance(float scale) {
    const auto & m = *tiny_model();
    return 8.0f * static_cast<float>(m.n_layer()) * std::sqrt(static_cast<float>(m.n_embd())) * std::ldexp(1.0f, -24) *
           std::max(1.0f, scale);
}
float f16_tolerance(float scale) { return std::ldexp(1.0f, -9) * std::max(1.0f, scale); }

template <typename F>
void expect_error(F && f, ErrorCode code, const std::string & needle = "") {
    try {
        f();
        FAIL() << "expected " << error_code_name(code);
    } catch (const Error & e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

// Forks a parent of `prefix` tokens, appends `suffix` to the child, and compares the child's
// logits with a sequence that prefilled prefix + suffix from scratch.
struct Diff {
    float max_diff;
    float scale;  // max |logit| of the reference
};

Diff fork_vs_prefill(const BackendOptions & o) {
    LlamaBackend b(tiny_model(), o);
    const auto prefix = some_tokens(60, 1), suffix = some_tokens(12, 2);
    const SeqId parent = b.open(prefix, {}, false);
    run_until_idle(b);
    const SeqId child = b.fork(parent, {}, false);
    b.append(child, suffix);
    run_until_idle(b);
    std::vector<Token> all = prefix;
    all.insert(all.end(), suffix.begin(), suffix.end());
    const SeqId fresh = b.open(all, {}, false);  // nothing decoded: logits() prefills it from scratch
    const auto reference = b.logits(fresh);
    const Diff d{max_abs_diff(b.logits(child), reference), max_abs(reference)};
    std::printf("fork vs prefill, flash attention %s, %s K/V: max |logit diff| = %.3g (max |logit| %.3g)\n",
                o.flash_attention == FlashAttention::off ? "off" : "on", o.kv_f32 ? "F32" : "F16", d.max_diff, d.scale);
    return d;
}

}  // namespace

// Invariant: a forked sequence gives the same logits as the same tokens prefilled from scratch.
// Exact up to F32 summation order on an F32 cache; within F16 rounding on the default F16 cache.
TEST(Backend, ForkEqualsPrefillFlashAttentionOff) {
    const Diff exact = fork_vs_prefill(exact_options(FlashAttention::off));
    EXPECT_LT(exact.max_diff, f32_tolerance(exact.scale));
    const Diff f16 = fork_vs_prefill(options(FlashAttention::off));
    EXPECT_LT(f16.max_diff, f16_tolerance(f16.scale));
}

// Flash attention (llama.cpp's CPU default) converts Q to F16 and accumulates in another order and
// tiling for each batch shape, so even an F32 cache leaves F16-sized differences: F16 tolerance.
TEST(Backend, ForkEqualsPrefillFlashAttentionOn) {
    const Diff d = fork_vs_prefill(options(FlashAttention::on));
    EXPECT_LT(d.max_diff, f16_tolerance(d.scale));
}

TEST(Backend, ForkCopiesNoCells) {
    LlamaBackend b(tiny_model(), options());
    const SeqId parent = b.open(some_tokens(500, 3), {}, false);
    run_until_idle(b);
    const uint32_t before = b.usage().cells_used;
    EXPECT_EQ(before, 500u);
    std::vector<SeqId> kids;
    for (int i = 0; i < 8; ++i) kids.push_back(b.fork(parent, {}, false));
    EXPECT_EQ(b.usage().cells_used, before);
    EXPECT_EQ(b.length(kids[3]), 500);
}

// Invariant: a thread decoded alone and in a batch of many gives the same tokens (greedy).
TEST(Backend, GreedyAloneEqualsGreedyInABatchOf17) {
    const auto target = some_tokens(24, 42);
    LlamaBackend alone(tiny_model(), options());
    const auto solo = generate(alone, {target}, 48)[0];

    std::vector<std::vector<Token>> prompts;
    for (int i = 0; i < 16; ++i) prompts.push_back(some_tokens(5 + 7 * i, 100 + static_cast<uint64_t>(i)));
    prompts.insert(prompts.begin() + 7, target);  // in the middle of the batch
    LlamaBackend batched(tiny_model(), options());
    const auto together = generate(batched, prompts, 48);
    EXPECT_EQ(together[7], solo);
}

// Same for sampled decoding: each sequence has its own seeded RNG.
TEST(Backend, SampledAloneEqualsSampledInABatch) {
    Sampling s;
    s.temperature = 0.9f;
    s.top_k = 40;
    s.top_p = 0.95f;
    s.min_p = 0.01f;
    s.seed = 1234;
    const auto target = some_tokens(20, 9);
    LlamaBackend alone(tiny_model(), options());
    const auto solo = generate(alone, {target}, 40, {s})[0];

    std::vector<std::vector<Token>> prompts;
    std::vector<Sampling> samplings;
    for (int i = 0; i < 8; ++i) {
        prompts.push_back(some_tokens(3 + 11 * i, 200 + static_cast<uint64_t>(i)));
        Sampling o = s;
        o.seed = 77 + static_cast<uint64_t>(i);
        samplings.push_back(o);
    }
    prompts.push_back(target);
    samplings.push_back(s);
    LlamaBackend batched(tiny_model(), options());
    EXPECT_EQ(generate(batched, prompts, 40, samplings).back(), solo);
    // And the seed matters.
    Sampling other = s;
    other.seed = 4321;
    LlamaBackend third(tiny_model(), options());
    EXPECT_NE(generate(third, {target}, 40, {other})[0], solo);
}

TEST(Backend, PrefillIsChunkedAndMixedWithDecodeTokens) {
    BackendOptions o = options();
    o.n_batch = 64;
    o.n_ubatch = 64;
    LlamaBackend b(tiny_model(), o);
    const SeqId talker = b.open(some_tokens(10, 1));
    b.step();  // talker now generates one token per step
    const SeqId reader = b.open(some_tokens(300, 2), {}, false);
    int steps = 0;
    while (b.n_pending(reader) > 0) {
        const auto & r = b.step();
        ++steps;
        ASSERT_LE(r.n_decoded, 64);
        ASSERT_EQ(r.sampled.size(), 1u);  // the talker advanced in every step
        EXPECT_EQ(r.sampled[0].seq, talker);
    }
    EXPECT_EQ(steps, 5);  // 300 tokens in chunks of 63 beside the talker's 1
}

// Splicing a single branch equals the parent having decoded the branch's tokens itself.
TEST(Backend, SpliceOfOneBranchEqualsAppending) {
    LlamaBackend b(tiny_model(), exact_options());
    const auto prefix = some_tokens(40, 5), branch = some_tokens(25, 6);
    const SeqId parent = b.open(prefix, {}, false);
    run_until_idle(b);
    const SeqId child = b.fork(parent, {}, false);
    b.append(child, branch);
    const SeqId child_ref = b.fork(parent, {}, false);  // the reference: appends as text
    b.append(child_ref, branch);
    run_until_idle(b);
    const uint32_t before = b.usage().cells_used;
    b.splice(parent, std::vector<SeqId>{child});
    EXPECT_FALSE(b.live(child));
    EXPECT_EQ(b.n_decoded(parent), 65);
    EXPECT_EQ(b.usage().cells_used, before);  // no cell copied or recomputed
    EXPECT_EQ(b.tokens(parent), b.tokens(child_ref));
    const auto reference = b.logits(child_ref);
    const float diff = max_abs_diff(b.logits(parent), reference);
    std::printf("splice vs append, F32 K/V: max |logit diff| = %.3g (max |logit| %.3g)\n", diff, max_abs(reference));
    EXPECT_LT(diff, f32_tolerance(max_abs(reference)));
}

// Several branches land one after another at consecutive positions; the parent goes on decoding.
TEST(Backend, SpliceOfSeveralBranchesKeepsOrderAndContinues) {
    LlamaBackend b(tiny_model(), options());
    const auto prefix = some_tokens(30, 7);
    const SeqId parent = b.open(prefix, {}, false);
    run_until_idle(b);
    std::vector<SeqId> kids;
    std::vector<Token> expected = prefix;
    for (int i = 0; i < 4; ++i) {
        kids.push_back(b.fork(parent, {}, false));
        const auto t = some_tokens(10 + 5 * i, 50 + static_cast<uint64_t>(i));
        b.append(kids.back(), t);  // left pending: splice decodes it first
        expected.insert(expected.end(), t.begin(), t.end());
    }
    b.splice(parent, kids);
    EXPECT_EQ(b.tokens(parent), expected);
    EXPECT_EQ(b.n_decoded(parent), static_cast<int32_t>(expected.size()));
    EXPECT_EQ(b.usage().cells_used, expected.size());
    EXPECT_EQ(b.usage().live_sequences, 1u);
    b.set_generating(parent, true);
    for (int i = 0; i < 5; ++i) {
        const auto & r = b.step();
        ASSERT_TRUE(r.blocked.empty());
        ASSERT_EQ(r.sampled.size(), 1u);
    }
    EXPECT_EQ(b.length(parent), static_cast<int32_t>(expected.size()) + 5);
}

TEST(Backend, SpliceRejectsStrangersAndMovedParents) {
    LlamaBackend b(tiny_model(), options());
    const SeqId parent = b.open(some_tokens(10, 1), {}, false);
    const SeqId other = b.open(some_tokens(10, 2), {}, false);
    const SeqId kid = b.fork(parent, {}, false);
    expect_error([&] { b.splice(parent, std::vector<SeqId>{other}); }, ErrorCode::invalid_argument, "not forked from");
    b.append(parent, some_tokens(3, 3));
    expect_error([&] { b.splice(parent, std::vector<SeqId>{kid}); }, ErrorCode::invalid_argument, "changed length");
    EXPECT_TRUE(b.live(kid));  // a refused splice changes nothing
}

// Invariant: N forks of a P-token prefix hold P + N x own cells, as llama.cpp itself counts them.
TEST(Backend, ForkMemoryIsSharedAsLlamaCppSeesIt) {
    const uint32_t n_ctx = 1024;
    LlamaBackend b(tiny_model(), options(FlashAttention::automatic, n_ctx, 16));
    const SeqId parent = b.open(some_tokens(300, 4), {}, false);
    run_until_idle(b);
    std::vector<SeqId> kids;
    for (int i = 0; i < 8; ++i) {
        kids.push_back(b.fork(parent, {}, false));
        b.append(kids.back(), some_tokens(20, 60 + static_cast<uint64_t>(i)));
    }
    run_until_idle(b);
    EXPECT_EQ(b.usage().cells_used, 300u + 8u * 20u);
    // Count llama.cpp's free cells directly: decode on an unused sequence id until it refuses.
    llama_context * ctx = b.context();
    llama_batch batch = llama_batch_init(1, 0, 1);
    uint32_t free_cells = 0;
    for (;; ++free_cells) {
        batch.n_tokens = 1;
        batch.token[0] = 5;
        batch.pos[0] = static_cast<llama_pos>(free_cells);
        batch.n_seq_id[0] = 1;
        batch.seq_id[0][0] = 15;
        batch.logits[0] = false;
        if (llama_decode(ctx, batch) != 0) break;
    }
    llama_batch_free(batch);
    llama_memory_seq_rm(llama_get_memory(ctx), 15, -1, -1);
    EXPECT_EQ(n_ctx - free_cells, 300u + 8u * 20u);
}

// A full cache blocks the sequence that needs cells (its input kept), never crashes, and the
// other sequences continue once cells are freed.
TEST(Backend, FullCacheBlocksThenRecovers) {
    LlamaBackend b(tiny_model(), options(FlashAttention::automatic, 256, 8));
    const SeqId small = b.open(some_tokens(20, 1));
    const SeqId hog = b.open(some_tokens(200, 2));
    bool blocked = false;
    for (int i = 0; i < 100 && !blocked; ++i) {
        const auto & r = b.step();
        for (const auto & x : r.blocked) {
            EXPECT_EQ(x.reason, ErrorCode::kv_cache_full);
            EXPECT_NE(x.message.find("KV cache full"), std::string::npos) << x.message;
            blocked = true;
        }
    }
    ASSERT_TRUE(blocked);
    EXPECT_EQ(b.usage().cells_used, 256u);
    const int32_t small_len = b.length(small);
    EXPECT_GE(b.n_pending(small) + b.n_pending(hog), 1);  // nothing was dropped
    b.close(hog);
    for (int i = 0; i < 10; ++i) {
        const auto & r = b.step();
        EXPECT_TRUE(r.blocked.empty());
    }
    EXPECT_EQ(b.length(small), small_len + 10);
}

TEST(Backend, OversizeInputIsRefusedUpFront) {
    LlamaBackend b(tiny_model(), options(FlashAttention::automatic, 256, 4));
    expect_error([&] { b.open(some_tokens(300, 1)); }, ErrorCode::context_overflow, "cannot fit");
    const SeqId s = b.open(some_tokens(200, 1), {}, false);
    expect_error([&] { b.append(s, some_tokens(100, 2)); }, ErrorCode::context_overflow, "cannot fit");
    EXPECT_EQ(b.length(s), 200);
}

// score() agrees with the log-probabilities reported while generating, and leaves the sequence as it was.
TEST(Backend, ScoreMatchesGenerationLogprobs) {
    LlamaBackend b(tiny_model(), exact_options());
    Sampling s;
    s.logprobs = true;
    s.top_logprobs = 3;
    const auto prompt = some_tokens(15, 11);
    b.open(prompt, s);
    std::vector<Token> generated;
    std::vector<float> reported;
    for (int i = 0; i < 8; ++i) {
        const auto & r = b.step();
        ASSERT_EQ(r.sampled.size(), 1u);
        generated.push_back(r.sampled[0].token);
        reported.push_back(r.sampled[0].logprob);
        ASSERT_EQ(r.sampled[0].top.size(), 3u);
        EXPECT_EQ(r.sampled[0].top[0].token, r.sampled[0].token);  // greedy picks the most likely
        EXPECT_NEAR(r.sampled[0].top[0].logprob, r.sampled[0].logprob, 1e-6);
    }
    const SeqId probe = b.open(prompt, {}, false);
    const uint32_t cells = b.usage().cells_used;
    const auto scored = b.score(probe, generated);
    ASSERT_EQ(scored.size(), generated.size());
    // A log-probability is a logit less the log-sum-exp of all logits: at most twice a logit's error,
    // on the logits' scale.
    const float scale = max_abs(b.logits(probe));
    float worst = 0;
    for (size_t i = 0; i < scored.size(); ++i) {
        worst = std::max(worst, std::fabs(scored[i] - reported[i]));
        EXPECT_NEAR(scored[i], reported[i], 2.0f * f32_tolerance(scale)) << i;
    }
    std::printf("score vs generation, F32 K/V: max |logprob diff| = %.3g (max |logit| %.3g)\n", worst, scale);
    EXPECT_EQ(b.usage().cells_used, cells);  // the throwaway fork is gone
    EXPECT_EQ(b.length(probe), static_cast<int32_t>(prompt.size()));
}

TEST(Backend, TruncateRewindsGeneration) {
    LlamaBackend b(tiny_model(), options());
    const auto prompt = some_tokens(12, 13);
    const SeqId seq = b.open(prompt);
    std::vector<Token> first, second;
    ASSERT_EQ(b.length(seq), static_cast<int32_t>(prompt.size()));
    for (int i = 0; i < 10; ++i) first.push_back(b.step().sampled.at(0).token);
    b.truncate(seq, static_cast<int32_t>(prompt.size()));
    EXPECT_EQ(b.usage().cells_used, prompt.size() - 1);  // the last prompt token is re-queued
    for (int i = 0; i < 10; ++i) second.push_back(b.step().sampled.at(0).token);
    EXPECT_EQ(first, second);
}

TEST(Backend, BadInputGetsClearErrors) {
    BackendOptions o = options(FlashAttention::automatic, 512, 2);
    LlamaBackend b(tiny_model(), o);
    expect_error([&] { b.open({}); }, ErrorCode::invalid_argument, "non-empty");
    const std::vector<Token> bad = {1, 99999};
    expect_error([&] { b.open(bad); }, ErrorCode::invalid_argument, "outside the vocabulary");
    const SeqId a = b.open(tokens_of("abc"));
    b.open(tokens_of("def"));
    expect_error([&] { b.open(tokens_of("ghi")); }, ErrorCode::sequence_limit, "n_seq_max");
    expect_error([&] { b.fork(a); }, ErrorCode::sequence_limit);
    b.close(a);
    expect_error([&] { b.append(a, tokens_of("x")); }, ErrorCode::invalid_argument, "no live sequence");
    Sampling s;
    s.top_p = 0.0f;
    expect_error([&] { b.open(tokens_of("abc"), s); }, ErrorCode::invalid_argument, "top_p");
    BackendOptions too_many = o;
    too_many.n_seq_max = 1000;
    expect_error([&] { LlamaBackend(tiny_model(), too_many); }, ErrorCode::invalid_argument, "n_seq_max");
}

// ---- shared-start splice: the upstream position layout (Multiverse, NPR) ---------------------

namespace {
// The reference for a shared-start join, built without LlamaBackend: one batch decoded from scratch
// in a fresh llama.cpp context, token i at position pos[i] and in the sequences seqs[i]. llama.cpp
// masks a token by its first sequence (a cell is visible when it carries that sequence and is not
// at a later position), so a path token in {path, parent} sees the prefix and its own path only,
// while a parent token in {parent} sees every cell. Returns the last token's logits.
std::vector<float> logits_of_one_batch(const std::vector<Token> & tokens, const std::vector<int32_t> & pos,
                                       const std::vector<std::vector<llama_seq_id>> & seqs) {
    llama_context_params params = llama_context_default_params();
    params.n_ctx = 512;
    params.n_batch = params.n_ubatch = 512;
    params.n_seq_max = 8;
    params.kv_unified = true;
    params.n_threads = params.n_threads_batch = 1;
    params.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    params.type_k = params.type_v = GGML_TYPE_F32;
    params.no_perf = true;
    llama_context * ctx = llama_init_from_model(tiny_model()->get(), params);
    EXPECT_NE(ctx, nullptr);
    llama_batch batch = llama_batch_init(static_cast<int32_t>(tokens.size()), 0, 8);
    for (size_t i = 0; i < tokens.size(); ++i) {
        batch.token[i] = tokens[i];
        batch.pos[i] = pos[i];
        batch.n_seq_id[i] = static_cast<int32_t>(seqs[i].size());
        for (size_t k = 0; k < seqs[i].size(); ++k) batch.seq_id[i][k] = seqs[i][k];
        batch.logits[i] = i + 1 == tokens.size();
    }
    batch.n_tokens = static_cast<int32_t>(tokens.size());
    EXPECT_EQ(llama_decode(ctx, batch), 0);
    const float * l = llama_get_logits_ith(ctx, -1);
    std::vector<float> out(l, l + tiny_model()->n_vocab());
    llama_batch_free(batch);
    llama_free(ctx);
    return out;
}
}  // namespace

// Invariant (shared/DESIGN.md, the upstream layout): after a block of 3 forked paths of different
// lengths joined shared-start, the parent's next logits equal those of a from-scratch prefill with
// the same positions (every path from the fork point, the parent after the longest) and the same
// mask (paths blind to each other); no cell was moved, so llama.cpp has no K-shift to do.
TEST(Backend, SharedStartSpliceEqualsPrefillWithTheSameMask) {
    LlamaBackend b(tiny_model(), exact_options());
    const auto prefix = some_tokens(30, 21), after = some_tokens(3, 22);
    const std::vector<std::vector<Token>> paths = {some_tokens(7, 23), some_tokens(12, 24), some_tokens(4, 25)};
    const SeqId parent = b.open(prefix, {}, false);
    run_until_idle(b);
    std::vector<SeqId> kids;
    for (const auto & path : paths) {
        kids.push_back(b.fork(parent, {}, false));
        b.append(kids.back(), path);
    }
    run_until_idle(b);
    const uint32_t cells = b.usage().cells_used;
    b.splice(parent, kids, JoinLayout::shared_start);
    EXPECT_EQ(b.stats().position_shifts, 0);
    EXPECT_EQ(b.usage().cells_used, cells);  // nothing copied, nothing recomputed
    b.append(parent, after);

    // The same context as one batch: the prefix in every sequence, the paths interleaved by position.
    const int32_t f = static_cast<int32_t>(prefix.size());
    std::vector<Token> tokens;
    std::vector<int32_t> pos;
    std::vector<std::vector<llama_seq_id>> seqs;
    for (int32_t i = 0; i < f; ++i) {
        tokens.push_back(prefix[static_cast<size_t>(i)]);
        pos.push_back(i);
        seqs.push_back({1, 2, 3, 0});
    }
    for (size_t q = 0; q < 12; ++q) {
        for (size_t k = 0; k < paths.size(); ++k) {
            if (q >= paths[k].size()) continue;
            tokens.push_back(paths[k][q]);
            pos.push_back(f + static_cast<int32_t>(q));
            seqs.push_back({static_cast<llama_seq_id>(k + 1), 0});
        }
    }
    for (size_t i = 0; i < after.size(); ++i) {
        tokens.push_back(after[i]);
        pos.push_back(f + 12 + static_cast<int32_t>(i));
        seqs.push_back({0});
    }
    const auto reference = logits_of_one_batch(tokens, pos, seqs);
    const float diff = max_abs_diff(b.logits(parent), reference);
    std::printf("shared-start splice vs one masked prefill, F32 K/V: max |logit diff| = %.3g (max |logit| %.3g)\n", diff,
                max_abs(reference));
    EXPECT_LT(diff, f32_tolerance(max_abs(reference)));

    // The parent lists its tokens in text order, each at the position it was decoded at.
    std::vector<int32_t> expected_pos;
    for (int32_t i = 0; i < f; ++i) expected_pos.push_back(i);
    for (const auto & path : paths) {
        for (size_t q = 0; q < path.size(); ++q) expected_pos.push_back(f + static_cast<int32_t>(q));
    }
    for (size_t i = 0; i < after.size(); ++i) expected_pos.push_back(f + 12 + static_cast<int32_t>(i));
    EXPECT_EQ(b.positions(parent), expected_pos);

    // A wrong layout is a different context: the consecutive join of the same paths moves two of them.
    LlamaBackend c(tiny_model(), exact_options());
    const SeqId p2 = c.open(prefix, {}, false);
    run_until_idle(c);
    std::vector<SeqId> kids2;
    for (const auto & path : paths) {
        kids2.push_back(c.fork(p2, {}, false));
        c.append(kids2.back(), path);
    }
    c.splice(p2, kids2, JoinLayout::consecutive);
    EXPECT_EQ(c.stats().position_shifts, 2);
    c.append(p2, after);
    EXPECT_GT(max_abs_diff(c.logits(p2), reference), 100 * f32_tolerance(max_abs(reference)));
}

// After a shared-start join no single cell is the parent's last: it generates once given input, and
// a cut is allowed only where a position range names it (before the join or after it).
TEST(Backend, SharedStartJoinNeedsInputAndRefusesCutsInside) {
    LlamaBackend b(tiny_model(), options());
    const auto prefix = some_tokens(20, 31);
    const SeqId parent = b.open(prefix, {}, false);
    run_until_idle(b);
    const SeqId x = b.fork(parent, {}, false), y = b.fork(parent, {}, false);
    b.append(x, some_tokens(6, 32));
    b.append(y, some_tokens(3, 33));
    b.splice(parent, std::vector<SeqId>{x, y}, JoinLayout::shared_start);
    expect_error([&] { b.set_generating(parent, true); }, ErrorCode::invalid_argument, "append its next input");
    expect_error([&] { b.fork(parent); }, ErrorCode::invalid_argument, "append its next input");
    expect_error([&] { b.logits(parent); }, ErrorCode::invalid_argument, "shared-start");
    expect_error([&] { b.truncate(parent, 24); }, ErrorCode::invalid_argument, "inside a shared-start join");
    const uint32_t live = b.usage().live_sequences;
    EXPECT_EQ(live, 1u);  // the refused fork left no sequence behind
    b.append(parent, some_tokens(2, 34));
    b.set_generating(parent, true);
    for (int i = 0; i < 4; ++i) ASSERT_EQ(b.step().sampled.size(), 1u);
    EXPECT_EQ(b.positions(parent).back(), 20 + 6 + 2 + 4 - 1);  // after the longer path
    b.truncate(parent, 20 + 9 + 1);  // after the join: the first appended token stays
    EXPECT_EQ(b.positions(parent).back(), 26);
    b.truncate(parent, 20);  // before the join: back to the prefix alone
    EXPECT_EQ(b.usage().cells_used, 19u);  // its last token is queued again to generate
    for (int i = 0; i < 3; ++i) ASSERT_EQ(b.step().sampled.size(), 1u);
    EXPECT_EQ(b.positions(parent).back(), 22);
}

// ---- per_sequence layout: one KV stream per sequence slot ---------------------------------------

namespace {
BackendOptions per_sequence(uint32_t n_ctx = 2048, uint32_t n_seq = 8) {
    BackendOptions o = options(FlashAttention::off, n_ctx, n_seq);
    o.kv_layout = KvLayout::per_sequence;
    return o;
}
}  // namespace

// The fork invariant holds when the fork is a copy of the parent's stream.
TEST(BackendPerSequence, ForkEqualsPrefill) {
    BackendOptions o = per_sequence();
    o.kv_f32 = true;
    const Diff d = fork_vs_prefill(o);
    EXPECT_LT(d.max_diff, f32_tolerance(d.scale));
}

TEST(BackendPerSequence, ForkCopiesTheParentsCellsAndEachStreamHasItsShare) {
    LlamaBackend b(tiny_model(), per_sequence(2048, 8));
    EXPECT_FALSE(b.zero_copy_fork());
    EXPECT_FALSE(b.can_splice());
    EXPECT_EQ(b.sequence_capacity(), 256u);  // 2048 / 8
    const SeqId parent = b.open(some_tokens(200, 3), {}, false);
    run_until_idle(b);
    const SeqId kid = b.fork(parent, {}, false);
    EXPECT_EQ(b.usage().cells_used, 400u);  // a copy, not a share
    b.append(kid, some_tokens(10, 4));
    run_until_idle(b);
    EXPECT_EQ(b.usage().cells_used, 410u);
    b.close(parent);  // the copy outlives its source
    b.set_generating(kid, true);
    const auto & r = b.step();
    ASSERT_TRUE(r.blocked.empty());
    EXPECT_EQ(r.sampled.size(), 1u);
}

// Greedy decoding is the same alone and in a batch, whatever the slots in use (llama.cpp batches
// only consecutive sequence ids together in this layout; gaps split the step, never change tokens).
TEST(BackendPerSequence, GreedyAloneEqualsGreedyInABatchWithGaps) {
    const auto target = some_tokens(24, 42);
    LlamaBackend alone(tiny_model(), per_sequence());
    const auto solo = generate(alone, {target}, 40)[0];
    LlamaBackend batched(tiny_model(), per_sequence());
    const SeqId gap = batched.open(some_tokens(5, 1), {}, false);  // slot 0 taken, then freed
    std::vector<std::vector<Token>> prompts;
    for (int i = 0; i < 6; ++i) prompts.push_back(some_tokens(5 + 7 * i, 100 + static_cast<uint64_t>(i)));
    prompts.insert(prompts.begin() + 3, target);
    batched.close(gap);
    EXPECT_EQ(generate(batched, prompts, 40)[3], solo);
}

TEST(BackendPerSequence, SpliceIsRefusedClearly) {
    LlamaBackend b(tiny_model(), per_sequence());
    const SeqId parent = b.open(some_tokens(10, 1), {}, false);
    const SeqId kid = b.fork(parent, {}, false);
    expect_error([&] { b.splice(parent, std::vector<SeqId>{kid}); }, ErrorCode::invalid_argument, "join the children as text");
    EXPECT_TRUE(b.live(kid));
}

TEST(BackendPerSequence, ScoreWorksOnACopiedPrefix) {
    BackendOptions o = per_sequence();
    o.kv_f32 = true;
    LlamaBackend b(tiny_model(), o);
    const auto prompt = some_tokens(30, 8), more = some_tokens(6, 9);
    const SeqId s = b.open(prompt, {}, false);
    run_until_idle(b);
    std::vector<Token> all = prompt;
    all.insert(all.end(), more.begin(), more.end());
    LlamaBackend ref(tiny_model(), exact_options());
    const SeqId r = ref.open(prompt, {}, false);
    const auto expected = ref.score(r, more);
    const auto scored = b.score(s, more);
    ASSERT_EQ(scored.size(), expected.size());
    const float scale = max_abs(ref.logits(r));
    for (size_t i = 0; i < scored.size(); ++i) EXPECT_NEAR(scored[i], expected[i], 2.0f * f32_tolerance(scale)) << i;
    EXPECT_EQ(b.usage().cells_used, 30u);
}

// A sequence that fills its own stream is blocked with context_overflow (waiting cannot help),
// keeps its input, and the other sequences go on.
TEST(BackendPerSequence, AFullStreamBlocksOnlyItsSequence) {
    LlamaBackend b(tiny_model(), per_sequence(512, 2));  // 256 cells each
    expect_error([&] { b.open(some_tokens(300, 1)); }, ErrorCode::context_overflow, "KV stream of 256 cells");
    const SeqId talker = b.open(some_tokens(250, 2));
    const SeqId other = b.open(some_tokens(10, 3));
    bool blocked = false;
    int other_tokens = 0;
    for (int i = 0; i < 20; ++i) {
        const auto & r = b.step();
        for (const auto & x : r.blocked) {
            EXPECT_EQ(x.seq, talker);
            EXPECT_EQ(x.reason, ErrorCode::context_overflow);
            EXPECT_NE(x.message.find("filled its KV stream"), std::string::npos) << x.message;
            blocked = true;
        }
        for (const auto & t : r.sampled) other_tokens += t.seq == other;
    }
    EXPECT_TRUE(blocked);
    EXPECT_EQ(b.n_pending(talker), 1);  // its next token is kept
    EXPECT_GE(other_tokens, 18);  // every step once its prompt was in (the first step was mostly the talker's prompt)
}
