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
//   fork_overhead: a fork's time to its first token over the child's next decode step (one token at
//            the same context): what a fork costs beyond the decode it cannot avoid. Per KV layout.
//   join_overhead: a KV join of B x T plus the parent's next token, over the parent's following
//            token (one decode step at the joined length); the shared-start layout (no position
//            shift), with the consecutive layout's (a K-shift over the cache) beside it.
//   layouts: aggregate decode tokens/s of N sequences that each hold C tokens of context, with one
//            shared (unified) KV cache and with one KV stream per sequence, interleaved.
//   memory:  cells held by N forks of a P-token prefix with G own tokens each, from the backend's
//            ledger and independently from llama.cpp (free cells found by decoding until full).
#include "app/commands.h"
#include "app/decode_probe.h"
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

// Every backend of the run decodes with the same fixed number of CPU threads: a ratio of two
// timings means nothing if the thread count adapted to the machine's load between them.
llama::BackendOptions fixed_threads(const BenchBackendArgs & args) {
    llama::BackendOptions opt;
    opt.n_threads = args.cpu_threads > 0 ? args.cpu_threads : cores_available();
    return opt;
}

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
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
    for (int n : args.sequences) {
        llama::BackendOptions opt = fixed_threads(args);
        opt.n_seq_max = static_cast<uint32_t>(n);
        opt.n_ctx = static_cast<uint32_t>(n * (kPromptTokens + args.decode_steps * std::max(1, 8 / n) + 8));
        opt.n_batch = static_cast<uint32_t>(std::max(512, n * kPromptTokens));
        opt.n_ubatch = opt.n_batch;
        LlamaBackend backend(model, opt);
        // The bare loop runs on the backend's own llama_context (same buffers, threads and
        // parameters) while the backend holds no sequence, so only the code around llama_decode differs.
        llama_context * bare = backend.context();
        decode_tokens_per_s(backend, n, 4, kPromptTokens);  // warm-up both sides
        bare_decode_tps(bare, *model, n, 4);
        // Fewer sequences make shorter steps: time more of them so each sample lasts long enough.
        const int steps = args.decode_steps * std::max(1, 8 / n);
        std::vector<double> ours, theirs, ratios;
        for (int r = 0; r < args.repeats; ++r) {
            // Alternate which side goes first, so neither always runs on a warmer machine; each
            // adjacent pair shares the machine's state, so the pair's ratio is the robust figure.
            double a, b;
            if (r % 2 == 0) {
                a = decode_tokens_per_s(backend, n, steps, kPromptTokens);
                b = bare_decode_tps(bare, *model, n, steps);
            } else {
                b = bare_decode_tps(bare, *model, n, steps);
                a = decode_tokens_per_s(backend, n, steps, kPromptTokens);
            }
            ours.push_back(a);
            theirs.push_back(b);
            ratios.push_back(b / a);
        }
        const double m_ours = median(ours), m_bare = median(theirs);
        const double ratio = median(ratios);
        worst_ratio = std::max(worst_ratio, ratio);
        rows.push_back({{"sequences", n}, {"forkjoin_tokens_per_s", m_ours}, {"bare_tokens_per_s", m_bare},
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

nlohmann::json bench_fork(const std::shared_ptr<const llama::Model> & model, const BenchBackendArgs & args,
                          llama::KvLayout layout = llama::KvLayout::shared) {
    llama::BackendOptions opt = fixed_threads(args);
    opt.n_ctx = static_cast<uint32_t>(args.fork_prefix * 2 + 64);
    opt.n_seq_max = 4;
    opt.kv_layout = layout;
    if (layout == llama::KvLayout::per_sequence) opt.n_ctx = static_cast<uint32_t>(4 * (args.fork_prefix + 64));
    LlamaBackend backend(model, opt);
    const auto prefix = prompt_tokens(*model, args.fork_prefix, 99);
    const SeqId parent = backend.open(prefix, {}, /*generating=*/false);
    run_until_idle(backend);
    std::vector<double> fork_first, fork_only, prefill_first, next_step, overhead;
    for (int r = 0; r < std::max(3, args.repeats); ++r) {
        auto t0 = Clock::now();
        const SeqId child = backend.fork(parent);
        fork_only.push_back(seconds_since(t0));
        run_until_sampled(backend, child);
        fork_first.push_back(seconds_since(t0));
        // The floor: the child's next token, one decode step at the same context.
        t0 = Clock::now();
        run_until_sampled(backend, child);
        next_step.push_back(seconds_since(t0));
        overhead.push_back(fork_first.back() / next_step.back());
        backend.close(child);

        t0 = Clock::now();
        const SeqId fresh = backend.open(prefix);
        run_until_sampled(backend, fresh);
        prefill_first.push_back(seconds_since(t0));
        backend.close(fresh);
    }
    const double f = median(fork_first), p = median(prefill_first);
    return {{"prefix_tokens", args.fork_prefix}, {"fork_call_s", median(fork_only)}, {"fork_first_token_s", f},
            {"next_step_s", median(next_step)}, {"overhead", median(overhead)},
            {"reprefill_first_token_s", p}, {"speedup", p / f}};
}

nlohmann::json bench_join(const std::shared_ptr<const llama::Model> & model, const BenchBackendArgs & args) {
    const int branches = args.join_branches, per = args.join_branch_tokens, prefix_n = 64;
    llama::BackendOptions opt = fixed_threads(args);
    // Room for the prefix, the branches and the text-join reader's copy of them. The size matters:
    // llama.cpp's K-shift (which a splice of more than one branch triggers) rotates every cell.
    opt.n_ctx = static_cast<uint32_t>(prefix_n + 2 * branches * per + 256);
    opt.n_seq_max = static_cast<uint32_t>(branches + 4);
    opt.n_batch = 1024;
    opt.n_ubatch = 512;
    LlamaBackend backend(model, opt);
    const SeqId root = backend.open(prompt_tokens(*model, prefix_n, 5), {}, false);
    run_until_idle(backend);
    const Token after_join = prompt_tokens(*model, 1, 99).front();  // what the engine inserts ("<Conclusion>")
    // One layout's join, measured in the same run as the other's (ratios, not absolute times).
    auto measure = [&](JoinLayout layout) {
        std::vector<double> join_t, text_t, splice_t, next_t, overhead;
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
            // KV join: splice, then the parent's next token. Consecutive: its last token is decoded
            // again and the next decode pays the K-shift; shared start: one inserted token.
            t0 = Clock::now();
            backend.splice(parent, kids, layout);
            splice_t.push_back(seconds_since(t0));
            if (layout == JoinLayout::shared_start) backend.append(parent, std::vector<Token>{after_join});
            backend.set_generating(parent, true);
            run_until_sampled(backend, parent);
            join_t.push_back(seconds_since(t0));
            // The floor: the parent's following token, one decode step at the joined length.
            t0 = Clock::now();
            run_until_sampled(backend, parent);
            next_t.push_back(seconds_since(t0));
            overhead.push_back(join_t.back() / next_t.back());
            backend.close(parent);
        }
        const double j = median(join_t), t = median(text_t);
        return nlohmann::json{{"kv_join_s", j}, {"splice_call_s", median(splice_t)}, {"next_step_s", median(next_t)},
                              {"overhead", median(overhead)}, {"text_join_reprefill_s", t}, {"speedup", t / j}};
    };
    const int64_t shifts_before = backend.stats().position_shifts;
    nlohmann::json consecutive = measure(JoinLayout::consecutive);
    consecutive["position_shifts"] = backend.stats().position_shifts - shifts_before;
    const int64_t shifts_mid = backend.stats().position_shifts;
    nlohmann::json shared = measure(JoinLayout::shared_start);
    shared["position_shifts"] = backend.stats().position_shifts - shifts_mid;
    // The headline is the shared-start layout (the one the forked dialects' engines use).
    nlohmann::json out = shared;
    out["branches"] = branches;
    out["branch_tokens"] = per;
    out["consecutive"] = consecutive;
    return out;
}

// ---- KV layouts --------------------------------------------------------------------------------

nlohmann::json bench_layouts(const std::shared_ptr<const llama::Model> & model, const BenchBackendArgs & args) {
    nlohmann::json rows = nlohmann::json::array();
    for (int n : args.layout_sequences) {
        const int c = args.layout_context;
        auto make = [&](llama::KvLayout layout) {
            llama::BackendOptions opt = fixed_threads(args);
            opt.kv_layout = layout;
            opt.n_seq_max = static_cast<uint32_t>(n);
            // Each sequence's context, its decode steps and llama.cpp's 256-cell padding per stream.
            opt.n_ctx = static_cast<uint32_t>(n * (c + args.decode_steps + 256));
            opt.n_batch = 2048;
            opt.n_ubatch = 512;
            return std::make_unique<LlamaBackend>(model, opt);
        };
        auto shared = make(llama::KvLayout::shared);
        auto streams = make(llama::KvLayout::per_sequence);
        decode_tokens_per_s(*shared, n, 2, c);  // warm-up both sides
        decode_tokens_per_s(*streams, n, 2, c);
        std::vector<double> a, b, ratios;
        for (int r = 0; r < std::max(2, args.repeats / 2); ++r) {
            // Alternate which side goes first (see bench_decode).
            double x, y;
            if (r % 2 == 0) {
                x = decode_tokens_per_s(*shared, n, args.decode_steps, c);
                y = decode_tokens_per_s(*streams, n, args.decode_steps, c);
            } else {
                y = decode_tokens_per_s(*streams, n, args.decode_steps, c);
                x = decode_tokens_per_s(*shared, n, args.decode_steps, c);
            }
            a.push_back(x);
            b.push_back(y);
            ratios.push_back(y / x);
        }
        rows.push_back({{"sequences", n}, {"context", c}, {"shared_tokens_per_s", median(a)},
                        {"per_sequence_tokens_per_s", median(b)}, {"per_sequence_over_shared", median(ratios)}});
        if (!args.json) {
            std::printf("  layouts N=%-3d x %d tokens: shared %8.1f tok/s   per-sequence %8.1f tok/s   ratio %.2f\n", n, c,
                        median(a), median(b), median(ratios));
            std::fflush(stdout);
        }
    }
    return rows;
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
    llama::BackendOptions opt = fixed_threads(args);
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
    cmd.add_option("--sequences", a.sequences, "numbers of concurrent sequences")->delimiter(',')->capture_default_str();
    cmd.add_option("--threads", a.cpu_threads, "CPU threads, fixed for the whole run so both sides of a ratio get the same (0: every available core)")
        ->capture_default_str();
    cmd.add_option("--steps", a.decode_steps, "decode steps timed per repeat")->capture_default_str();
    cmd.add_option("--repeats", a.repeats, "interleaved repeats (median)")->capture_default_str();
    cmd.add_option("--fork-prefix", a.fork_prefix, "context length forked")->capture_default_str();
    cmd.add_option("--join-branches", a.join_branches)->capture_default_str();
    cmd.add_option("--join-branch-tokens", a.join_branch_tokens)->capture_default_str();
    cmd.add_option("--layout-sequences", a.layout_sequences, "KV layouts: numbers of concurrent sequences")
        ->delimiter(',')->capture_default_str();
    cmd.add_option("--layout-context", a.layout_context, "KV layouts: tokens of context each sequence holds")->capture_default_str();
    cmd.add_option("--model-dir", a.model_dir, "where test models are written")->capture_default_str();
}

int run_bench_backend(const BenchBackendArgs & args) {
    nlohmann::json report;
    report["models"] = nlohmann::json::array();
    double worst_overhead = 0.0, worst_fork = 1e300, worst_join = 1e300, worst_fork_overhead = 0, worst_join_overhead = 0;
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
        m["fork_per_sequence"] = bench_fork(model, args, llama::KvLayout::per_sequence);
        m["join"] = bench_join(model, args);
        m["memory"] = bench_memory(model, args);
        m["layouts"] = bench_layouts(model, args);
        worst_overhead = std::max(worst_overhead, overhead);
        worst_fork = std::min(worst_fork, m["fork"]["speedup"].get<double>());
        worst_join = std::min(worst_join, m["join"]["speedup"].get<double>());
        worst_fork_overhead = std::max(worst_fork_overhead, m["fork"]["overhead"].get<double>());
        worst_join_overhead = std::max(worst_join_overhead, m["join"]["overhead"].get<double>());
        if (!args.json) {
            const auto & j = m["join"];
            const auto & mem = m["memory"];
            for (const char * key : {"fork", "fork_per_sequence"}) {
                const auto & f = m[key];
                std::printf("  %s %d tokens: %.3f ms to first token (fork call %.1f us) vs re-prefill %.1f ms: %.0fx; "
                            "next step %.3f ms: overhead %.2f\n",
                            key, f["prefix_tokens"].get<int>(), 1e3 * f["fork_first_token_s"].get<double>(),
                            1e6 * f["fork_call_s"].get<double>(), 1e3 * f["reprefill_first_token_s"].get<double>(),
                            f["speedup"].get<double>(), 1e3 * f["next_step_s"].get<double>(), f["overhead"].get<double>());
            }
            for (const auto * row : {&j, &j["consecutive"]}) {
                const auto & r = *row;
                std::printf("  KV join %dx%d %s: %.2f ms to next token (splice call %.1f us, %lld position shifts) vs "
                            "text re-prefill %.1f ms: %.0fx; next step %.3f ms: overhead %.2f\n",
                            j["branches"].get<int>(), j["branch_tokens"].get<int>(),
                            row == &j ? "shared start" : "consecutive", 1e3 * r["kv_join_s"].get<double>(),
                            1e6 * r["splice_call_s"].get<double>(), static_cast<long long>(r["position_shifts"].get<int64_t>()),
                            1e3 * r["text_join_reprefill_s"].get<double>(), r["speedup"].get<double>(),
                            1e3 * r["next_step_s"].get<double>(), r["overhead"].get<double>());
            }
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
    report["fork_overhead"] = worst_fork_overhead;
    report["join_overhead"] = worst_join_overhead;
    if (args.json) {
        std::printf("%s\n", report.dump().c_str());
    } else {
        std::printf("overhead_ratio_max %.3f (goal <= 1.05), fork_speedup %.0fx (goal >= 100), join_speedup %.0fx (goal >= 20), "
                    "fork_overhead %.2f (goal <= 1.1), join_overhead %.2f (goal <= 1.5)\n",
                    worst_overhead, worst_fork, worst_join, worst_fork_overhead, worst_join_overhead);
    }
    return 0;
}

}  // namespace forkjoin::app
