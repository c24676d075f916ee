// forkjoin bench backend: what the llama backend costs, measured against llama.cpp itself.
//
// Every ratio is measured within one run on one machine, with the two sides interleaved
// (A B A B ...) and summarised by the median, so background load hits both sides alike.
//   decode:  aggregate tokens/s of N generating sequences, LlamaBackend::step() vs a bare
//            llama_decode + llama_sampler loop over the same batches on the same llama_context.
//            overhead = median over adjacent pairs of bare / forkjoin.
//   fork:    time until a fork of a P-token context has produced its first token, vs opening a
//            fresh sequence with the same P tokens (re-prefill) until its first token.
//   join:    splice of B branches x T tokens plus the parent's next token, vs the parent
//            re-reading the same B x T tokens as text (prefill on a zero-copy fork) until its next token.
//   memory:  cells held by N forks of a P-token prefix with G own tokens each, from the backend's
//            ledger and independently from llama.cpp (free cells found by decoding until full).
#include "app/commands.h"
#include "backends/llama/backend.h"
#include "tools/testmodel/test_model.h"

#include <llama.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

namespace forkjoin::app {
namespace {

using llama::LlamaBackend;
using llama::SeqId;
using llama::Token;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Deterministic prompt of n tokens drawn from the vocabulary's ordinary pieces.
std::vector<Token> prompt_tokens(const llama::Model & model, int n, uint64_t salt) {
    std::vector<Token> out;
    out.reserve(static_cast<size_t>(n));
    uint64_t x = salt * 0x9E3779B97F4A7C15ull + 7;
    const int32_t first = 3, span = model.n_vocab() - first;
    for (int i = 0; i < n; ++i) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        out.push_back(first + static_cast<Token>(x % static_cast<uint64_t>(span)));
    }
    return out;
}

void run_until_sampled(LlamaBackend & backend, SeqId seq) {
    for (;;) {
        const auto & r = backend.step();
        for (const auto & s : r.sampled) {
            if (s.seq == seq) return;
        }
        if (!r.blocked.empty()) throw Error(ErrorCode::kv_cache_full, r.blocked.front().message);
    }
}

void run_until_idle(LlamaBackend & backend) {
    while (backend.has_pending()) {
        const auto & r = backend.step();
        if (!r.blocked.empty()) throw Error(ErrorCode::kv_cache_full, r.blocked.front().message);
    }
}

// ---- decode throughput ------------------------------------------------------------------------

constexpr int kPromptTokens = 16;

double forkjoin_decode_tps(LlamaBackend & backend, int n_seq, int steps) {
    std::vector<SeqId> seqs;
    for (int i = 0; i < n_seq; ++i) {
        seqs.push_back(backend.open(prompt_tokens(backend.model(), kPromptTokens, static_cast<uint64_t>(i))));
    }
    // Prefill and the first sample happen before the clock starts, as in the bare loop.
    while (backend.usage().pending_tokens > static_cast<uint32_t>(n_seq)) backend.step();
    const auto t0 = Clock::now();
    int64_t tokens = 0;
    for (int s = 0; s < steps; ++s) tokens += backend.step().n_decoded;
    const double dt = seconds_since(t0);
    for (SeqId id : seqs) backend.close(id);
    return static_cast<double>(tokens) / dt;
}

double bare_decode_tps(llama_context * ctx, const llama::Model & model, int n_seq, int steps) {
    llama_memory_clear(llama_get_memory(ctx), true);
    std::vector<llama_sampler *> samplers;
    for (int i = 0; i < n_seq; ++i) samplers.push_back(llama_sampler_init_greedy());
    llama_batch batch = llama_batch_init(std::max(n_seq * kPromptTokens, n_seq), 0, 1);
    auto add = [&](Token t, llama_pos pos, SeqId seq, bool out) {
        const int i = batch.n_tokens++;
        batch.token[i] = t; batch.pos[i] = pos; batch.n_seq_id[i] = 1; batch.seq_id[i][0] = seq; batch.logits[i] = out;
    };
    std::vector<Token> next(static_cast<size_t>(n_seq));
    std::vector<int> out_index(static_cast<size_t>(n_seq));
    batch.n_tokens = 0;
    for (int i = 0; i < n_seq; ++i) {
        const auto p = prompt_tokens(model, kPromptTokens, static_cast<uint64_t>(i));
        for (int j = 0; j < kPromptTokens; ++j) add(p[static_cast<size_t>(j)], j, i, j == kPromptTokens - 1);
        out_index[static_cast<size_t>(i)] = batch.n_tokens - 1;
    }
    if (llama_decode(ctx, batch) != 0) throw Error(ErrorCode::decode_failed, "bare loop: prefill failed");
    for (int i = 0; i < n_seq; ++i) next[static_cast<size_t>(i)] = llama_sampler_sample(samplers[static_cast<size_t>(i)], ctx, out_index[static_cast<size_t>(i)]);
    const auto t0 = Clock::now();
    for (int s = 0; s < steps; ++s) {
        batch.n_tokens = 0;
        for (int i = 0; i < n_seq; ++i) add(next[static_cast<size_t>(i)], kPromptTokens + s, i, true);
        if (llama_decode(ctx, batch) != 0) throw Error(ErrorCode::decode_failed, "bare loop: decode failed");
        for (int i = 0; i < n_seq; ++i) next[static_cast<size_t>(i)] = llama_sampler_sample(samplers[static_cast<size_t>(i)], ctx, i);
    }
    const double dt = seconds_since(t0);
    llama_batch_free(batch);
    for (auto * s : samplers) llama_sampler_free(s);
    llama_memory_clear(llama_get_memory(ctx), true);
    return static_cast<double>(n_seq) * steps / dt;
}

nlohmann::json bench_decode(const std::shared_ptr<const llama::Model> & model, const BenchBackendArgs & args,
                            double & worst_ratio) {
    nlohmann::json rows = nlohmann::json::array();
    for (int n : args.threads) {
        llama::BackendOptions opt;
        opt.n_seq_max = static_cast<uint32_t>(n);
        opt.n_ctx = static_cast<uint32_t>(n * (kPromptTokens + args.decode_steps * std::max(1, 8 / n) + 8));
        opt.n_batch = static_cast<uint32_t>(std::max(512, n * kPromptTokens));
        opt.n_ubatch = opt.n_batch;
        LlamaBackend backend(model, opt);
        // The bare loop runs on the backend's own llama_context (same buffers, threads and
        // parameters) while the backend holds no sequence, so only the code around llama_decode differs.
        llama_context * bare = backend.context();
        forkjoin_decode_tps(backend, n, 4);  // warm-up both sides
        bare_decode_tps(bare, *model, n, 4);
        // Fewer sequences make shorter steps: time more of them so each sample lasts long enough.
        const int steps = args.decode_steps * std::max(1, 8 / n);
        std::vector<double> ours, theirs, ratios;
        for (int r = 0; r < args.repeats; ++r) {
            // Alternate which side goes first, so neither always runs on a warmer machine; each
            // adjacent pair shares the machine's state, so the pair's ratio is the robust figure.
            double a, b;
            if (r % 2 == 0) {
                a = forkjoin_decode_tps(backend, n, steps);
                b = bare_decode_tps(bare, *model, n, steps);
            } else {
                b = bare_decode_tps(bare, *model, n, steps);
                a = forkjoin_decode_tps(backend, n, steps);
            }
            ours.push_back(a);
            theirs.push_back(b);
            ratios.push_back(b / a);
        }
        const double m_ours = median(ours), m_bare = median(theirs);
        const double ratio = median(ratios);
        worst_ratio = std::max(worst_ratio, ratio);
        rows.push_back({{"threads", n}, {"forkjoin_tokens_per_s", m_ours}, {"bare_tokens_per_s", m_bare},
                        {"overhead_ratio", ratio}});
        if (!args.json) {
            std::printf("  decode N=%-3d forkjoin %9.1f tok/s   bare llama.cpp %9.1f tok/s   overhead %.3f\n", n,
                        m_ours, m_bare, ratio);
            std::fflush(stdout);
        }
    }
    return rows;
}

// ---- fork and join ------------------------------------------------------------------------------

nlohmann::json bench_fork(const std::shared_ptr<const llama::Model> & model, const BenchBackendArgs & args) {
    llama::BackendOptions opt;
    opt.n_ctx = static_cast<uint32_t>(args.fork_prefix * 2 + 64);
    opt.n_seq_max = 4;
    LlamaBackend backend(model, opt);
    const auto prefix = prompt_tokens(*model, args.fork_prefix, 99);
    const SeqId parent = backend.open(prefix, {}, /*generating=*/false);
    run_until_idle(backend);
    std::vector<double> fork_first, fork_only, prefill_first;
    for (int r = 0; r < std::max(3, args.repeats); ++r) {
        auto t0 = Clock::now();
        const SeqId child = backend.fork(parent);
        fork_only.push_back(seconds_since(t0));
        run_until_sampled(backend, child);
        fork_first.push_back(seconds_since(t0));
        backend.close(child);

        t0 = Clock::now();
        const SeqId fresh = backend.open(prefix);
        run_until_sampled(backend, fresh);
        prefill_first.push_back(seconds_since(t0));
        backend.close(fresh);
    }
    const double f = median(fork_first), p = median(prefill_first);
    return {{"prefix_tokens", args.fork_prefix}, {"fork_call_s", median(fork_only)}, {"fork_first_token_s", f},
            {"reprefill_first_token_s", p}, {"speedup", p / f}};
}

nlohmann::json bench_join(const std::shared_ptr<const llama::Model> & model, const BenchBackendArgs & args) {
    const int branches = args.join_branches, per = args.join_branch_tokens, prefix_n = 64;
    llama::BackendOptions opt;
    // Room for the prefix, the branches and the text-join reader's copy of them. The size matters:
    // llama.cpp's K-shift (which a splice of more than one branch triggers) rotates every cell.
    opt.n_ctx = static_cast<uint32_t>(prefix_n + 2 * branches * per + 256);
    opt.n_seq_max = static_cast<uint32_t>(branches + 4);
    opt.n_batch = 1024;
    opt.n_ubatch = 512;
    LlamaBackend backend(model, opt);
    const SeqId root = backend.open(prompt_tokens(*model, prefix_n, 5), {}, false);
    run_until_idle(backend);
    std::vector<double> join_t, text_t, splice_t;
    for (int r = 0; r < std::max(3, args.repeats); ++r) {
        // The parent waits at the fork point while its branches are written.
        const SeqId parent = backend.fork(root, {}, false);
        std::vector<SeqId> kids;
        std::vector<Token> all_branch_tokens;
        for (int b = 0; b < branches; ++b) {
            const SeqId kid = backend.fork(parent, {}, false);
            const auto t = prompt_tokens(*model, per, 100 + static_cast<uint64_t>(b));
            backend.append(kid, t);
            all_branch_tokens.insert(all_branch_tokens.end(), t.begin(), t.end());
            kids.push_back(kid);
        }
        run_until_idle(backend);
        // Text join: the parent re-reads the branches' tokens.
        auto t0 = Clock::now();
        const SeqId reader = backend.fork(parent, {}, false);
        backend.append(reader, all_branch_tokens);
        backend.set_generating(reader, true);
        run_until_sampled(backend, reader);
        text_t.push_back(seconds_since(t0));
        backend.close(reader);
        // KV join: splice, then the parent's next token (which pays for the RoPE shift).
        t0 = Clock::now();
        backend.splice(parent, kids);
        splice_t.push_back(seconds_since(t0));
        backend.set_generating(parent, true);
        run_until_sampled(backend, parent);
        join_t.push_back(seconds_since(t0));
        backend.close(parent);
    }
    const double j = median(join_t), t = median(text_t);
    return {{"branches", branches}, {"branch_tokens", per}, {"kv_join_s", j}, {"splice_call_s", median(splice_t)},
            {"text_join_reprefill_s", t},
            {"speedup", t / j}};
}

// Free cells as llama.cpp sees them: decode single tokens on an unused sequence id until it
// reports no slot, then remove them again.
uint32_t llama_free_cells(LlamaBackend & backend, SeqId probe) {
    llama_context * ctx = backend.context();
    llama_batch batch = llama_batch_init(1, 0, 1);
    uint32_t n = 0;
    for (;;) {
        batch.n_tokens = 1;
        batch.token[0] = 3;
        batch.pos[0] = static_cast<llama_pos>(n);
        batch.n_seq_id[0] = 1;
        batch.seq_id[0][0] = probe;
        batch.logits[0] = false;
        if (llama_decode(ctx, batch) != 0) break;
        ++n;
    }
    llama_batch_free(batch);
    llama_memory_seq_rm(llama_get_memory(ctx), probe, -1, -1);
    return n;
}

nlohmann::json bench_memory(const std::shared_ptr<const llama::Model> & model, const BenchBackendArgs & args) {
    const int n = args.memory_forks, P = args.memory_prefix, G = args.memory_own;
    llama::BackendOptions opt;
    opt.n_ctx = static_cast<uint32_t>(P + n * (G + 2) + 512);
    opt.n_seq_max = static_cast<uint32_t>(n + 2);  // the last id is left free for the probe
    LlamaBackend backend(model, opt);
    const SeqId parent = backend.open(prompt_tokens(*model, P, 3), {}, false);
    run_until_idle(backend);
    std::vector<SeqId> kids;
    for (int i = 0; i < n; ++i) {
        llama::Sampling s;
        s.temperature = 1.0f;
        s.seed = static_cast<uint64_t>(i);
        kids.push_back(backend.fork(parent, s));
    }
    for (int g = 0; g < G; ++g) backend.step();
    for (SeqId k : kids) backend.set_generating(k, false);
    run_until_idle(backend);
    // A fork of a fully decoded parent re-decodes the parent's last token to get logits of its own,
    // so each fork's own cells are its G generated tokens plus that one.
    uint32_t own = 0;
    for (SeqId k : kids) own += static_cast<uint32_t>(backend.n_decoded(k) - (P - 1));
    const auto u = backend.usage();
    const uint32_t llama_used = u.cells_total - llama_free_cells(backend, static_cast<SeqId>(opt.n_seq_max - 1));
    return {{"forks", n}, {"prefix_tokens", P}, {"own_tokens_total", own},
            {"expected_shared_cells", P + own}, {"unshared_cells", static_cast<uint64_t>(n) * P + own},
            {"ledger_cells_used", u.cells_used}, {"llama_cells_used", llama_used}};
}

}  // namespace

void add_bench_backend_options(CLI::App & cmd, BenchBackendArgs & a) {
    cmd.add_flag("--json", a.json, "print one JSON object");
    cmd.add_option("--sizes", a.sizes, "test model sizes (1M, 10M, 50M)")->delimiter(',')->capture_default_str();
    cmd.add_option("--threads", a.threads, "numbers of concurrent sequences")->delimiter(',')->capture_default_str();
    cmd.add_option("--steps", a.decode_steps, "decode steps timed per repeat")->capture_default_str();
    cmd.add_option("--repeats", a.repeats, "interleaved repeats (median)")->capture_default_str();
    cmd.add_option("--fork-prefix", a.fork_prefix, "context length forked")->capture_default_str();
    cmd.add_option("--join-branches", a.join_branches)->capture_default_str();
    cmd.add_option("--join-branch-tokens", a.join_branch_tokens)->capture_default_str();
    cmd.add_option("--model-dir", a.model_dir, "where test models are written")->capture_default_str();
}

int run_bench_backend(const BenchBackendArgs & args) {
    nlohmann::json report;
    report["models"] = nlohmann::json::array();
    double worst_overhead = 0.0, worst_fork = 1e300, worst_join = 1e300;
    for (const auto & size : args.sizes) {
        const auto spec = testmodel::test_model_spec(size);
        const std::string path = testmodel::ensure_test_model(args.model_dir, spec);
        std::shared_ptr<const llama::Model> model = llama::Model::load(path);
        if (!args.json) {
            std::printf("model %s: %llu parameters (%s)\n", size.c_str(),
                        static_cast<unsigned long long>(model->n_params()), path.c_str());
            std::fflush(stdout);
        }
        double overhead = 0.0;
        nlohmann::json m;
        m["size"] = size;
        m["parameters"] = model->n_params();
        m["decode"] = bench_decode(model, args, overhead);
        m["overhead_ratio_max"] = overhead;
        m["fork"] = bench_fork(model, args);
        m["join"] = bench_join(model, args);
        m["memory"] = bench_memory(model, args);
        worst_overhead = std::max(worst_overhead, overhead);
        worst_fork = std::min(worst_fork, m["fork"]["speedup"].get<double>());
        worst_join = std::min(worst_join, m["join"]["speedup"].get<double>());
        if (!args.json) {
            const auto & f = m["fork"];
            const auto & j = m["join"];
            const auto & mem = m["memory"];
            std::printf("  fork %d tokens: %.3f ms to first token (fork call %.1f us) vs re-prefill %.1f ms: %.0fx\n",
                        f["prefix_tokens"].get<int>(), 1e3 * f["fork_first_token_s"].get<double>(),
                        1e6 * f["fork_call_s"].get<double>(), 1e3 * f["reprefill_first_token_s"].get<double>(),
                        f["speedup"].get<double>());
            std::printf("  KV join %dx%d: %.2f ms to next token (splice call %.1f us) vs text re-prefill %.1f ms: %.0fx\n",
                        j["branches"].get<int>(), j["branch_tokens"].get<int>(), 1e3 * j["kv_join_s"].get<double>(),
                        1e6 * j["splice_call_s"].get<double>(),
                        1e3 * j["text_join_reprefill_s"].get<double>(), j["speedup"].get<double>());
            std::printf("  memory: %d forks of %d tokens + %u own: ledger %u cells, llama.cpp %u cells "
                        "(shared %u, unshared would be %llu)\n",
                        mem["forks"].get<int>(), mem["prefix_tokens"].get<int>(), mem["own_tokens_total"].get<uint32_t>(),
                        mem["ledger_cells_used"].get<uint32_t>(), mem["llama_cells_used"].get<uint32_t>(),
                        mem["expected_shared_cells"].get<uint32_t>(),
                        static_cast<unsigned long long>(mem["unshared_cells"].get<uint64_t>()));
            std::fflush(stdout);
        }
        report["models"].push_back(m);
    }
    report["overhead_ratio_max"] = worst_overhead;
    report["fork_speedup"] = worst_fork;
    report["join_speedup"] = worst_join;
    if (args.json) {
        std::printf("%s\n", report.dump().c_str());
    } else {
        std::printf("overhead_ratio_max %.3f (goal <= 1.05), fork_speedup %.0fx (goal >= 100), join_speedup %.0fx (goal >= 20)\n",
                    worst_overhead, worst_fork, worst_join);
    }
    return 0;
}

}  // namespace forkjoin::app
