// forkjoin bench countdown / forkjoin run --task countdown: Countdown through the runtime, with
// the strict verifier, as one strategy at one per-thread context window.
#include "app/commands.h"
#include "app/backend_choice.h"
#include "app/calibration_file.h"
#include "app/model_file.h"
#include "app/decode_probe.h"
#include "app/live_view.h"
#include "base/comma_list.h"
#include "base/error.h"
#include "runtime/policies.h"
#include "strategies/countdown.h"
#include "strategies/text.h"
#include "tasks/countdown/problem.h"
#include "tasks/countdown/trace_check.h"
#include "trace/chrome_trace.h"
#include "trace/thread_tree.h"
#include "trace/svg_plot.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <filesystem>
#include <optional>

namespace forkjoin::app {
namespace {

strategies::CountdownOptions options_from(const CountdownArgs & a) {
    strategies::CountdownOptions o;
    o.strategy = strategies::parse_countdown_strategy(a.strategy);
    if (a.prompt_style == "apr") o.style = countdown::PromptStyle::apr;
    else if (a.prompt_style != "forkjoin") throw Error(ErrorCode::invalid_argument, "--prompt-style is forkjoin or apr");
    // Distractors take no room from the search: the window grows by them.
    o.limits.max_context = a.context > 0 ? a.context + a.distractors : 0;
    o.limits.thread_token_budget = a.context > 0 ? a.context : 4096;
    o.limits.max_children = a.max_children;
    o.concurrent_requests = a.concurrency;
    o.samples = a.samples;
    o.native_samples = a.native_samples;
    // (A sweep's native and sequential series ignore it: their roots are what they are.)
    if (o.native_samples && !a.sweep && o.strategy != strategies::CountdownStrategy::self_consistency &&
        o.strategy != strategies::CountdownStrategy::best_of_n) {
        throw Error(ErrorCode::invalid_argument, "--native-samples is for --strategy self-consistency or best-of-n");
    }
    o.sampling.temperature = a.temperature;
    o.sampling.seed = a.seed;
    o.controller = a.controller;
    runtime::make_controller(o.controller);  // an unknown policy is an error before anything loads
    if (a.max_total_tokens > 0) o.limits.total_token_budget = a.max_total_tokens;
    return o;
}

llama::BackendOptions backend_for(const CountdownArgs & a) {
    llama::BackendOptions b = strategies::countdown_backend_options(options_from(a));
    b.n_threads = a.threads;
    if (a.kv_cells > 0) b.n_ctx = static_cast<uint32_t>(std::min<int64_t>(b.n_ctx, a.kv_cells));
    return b;
}

}  // namespace

void add_countdown_options(CLI::App & cmd, CountdownArgs & a) {
    cmd.add_option("--model", a.model, "GGUF model (default: the shipped Countdown model)");
    cmd.add_option("--strategy", a.strategy,
                   "countdown: sequential, native, self-consistency (majority vote) or best-of-n (the verifier picks: an oracle bound); text: sequential, native, self-consistency or plan-execute")
        ->capture_default_str();
    cmd.add_option("--context", a.context, "per-thread context window in tokens (0: none)")->capture_default_str();
    cmd.add_option("--prompt-style", a.prompt_style, "forkjoin (mode tags) or apr (APR checkpoints)")->capture_default_str();
    cmd.add_option("--max-children", a.max_children)->capture_default_str();
    cmd.add_option("--kv-cells", a.kv_cells,
                   "KV cells in all (0: room for every thread's window; each thread has its own KV stream, "
                   "--kv-cells / threads cells, and fails if it fills it)")
        ->capture_default_str();
    cmd.add_option("--samples", a.samples, "self-consistency, best-of-n: samples per problem")->capture_default_str();
    cmd.add_flag("--native-samples", a.native_samples,
                 "self-consistency, best-of-n: each sample a native run (it spawns) instead of a sequential thread");
    cmd.add_option("--temperature", a.temperature, "0: greedy")->capture_default_str();
    cmd.add_option("--seed", a.seed)->capture_default_str();
    cmd.add_option("--threads", a.threads,
                   "CPU threads per decode (0: FORKJOIN_THREADS, else the cores other processes leave free, re-measured as it runs)")
        ->capture_default_str();
    cmd.add_option("--trace", a.trace_path, "write the thread trees as Chrome trace JSON (Perfetto)");
    cmd.add_option("--controller", a.controller, "controller policies, comma-separated: " + runtime::policy_names_text() + " (see runtime/policies.h)")
        ->capture_default_str();
    cmd.add_option("--calibration", a.calibration, "the policies' per-model settings: a calibration file (forkjoin calibrate), or none for the built-in ones (default: MODEL.calibration.json beside the model, when it is for this model)");
    cmd.add_option("--max-total-tokens", a.max_total_tokens, "generated tokens per problem, all threads together (0: no limit)")
        ->capture_default_str();
    add_backend_options(cmd, a.backend, "--api-key");
}

void add_bench_countdown_options(CLI::App & cmd, CountdownArgs & a) {
    add_countdown_options(cmd, a);
    cmd.add_option("--concurrency", a.concurrency, "problems in flight at once")->capture_default_str();
    cmd.add_flag("--sweep", a.sweep, "every --sweep-strategies at every --sweep-contexts; writes REPORT.md and REPORT.svg");
    cmd.add_option("--sweep-strategies", a.sweep_strategies,
                   "series, each a strategy with optional +controller policies and @temperature, e.g. "
                   "sequential,native+early-stop,self-consistency@0.8")
        ->capture_default_str();
    cmd.add_option("--sweep-contexts", a.sweep_contexts, "per-thread context windows")->capture_default_str();
    cmd.add_option("--report", a.report, "sweep report path without extension")->capture_default_str();
    cmd.add_option("--distractors", a.distractors,
                   "context rot: tokens of other problems' search traces before each problem's root context (the window "
                   "grows by as many; children start fresh without them)")
        ->capture_default_str();
    cmd.add_option("--sweep-distractors", a.sweep_distractors,
                   "sweep distractor token counts (e.g. 0,512,1024,2048) at --context instead of --sweep-contexts");
}

namespace {

void write_trace(const CountdownArgs & a, const std::vector<strategies::CountdownOutcome> & outcomes) {
    if (a.trace_path.empty()) return;
    std::vector<const runtime::RequestResult *> runs;
    for (const auto & o : outcomes) runs.push_back(&o.run);
    std::ofstream out(a.trace_path);
    out << trace::chrome_trace_json(runs);
    if (!out) throw Error(ErrorCode::io, "cannot write trace '" + a.trace_path + "'");
}

struct Summary {
    std::string strategy;
    std::string controller;
    int context = 0;
    int distractors = 0;
    size_t n = 0;
    double accuracy = 0, total_tokens = 0, sequential_tokens = 0, max_context_tokens = 0, latency_s = 0, threads = 0;
    double probe_tokens = 0;  // evaluated by the context-rot monitor's probes (not in total_tokens)
    // Self-consistency under the confidence policy, per problem: samples stopped for low confidence,
    // and samples cancelled or never started once the vote settled.
    double samples_stopped = 0, samples_not_needed = 0;
    double compactions = 0;  // per problem: threads' contexts the context-rot monitor compacted
    double rewrites = 0;     // per problem: native + validate, the root's continuations after its join re-sampled
    double reexplorations = 0;  // per problem: native + validate, roots started again with unexplored first steps
    double run_wall_s = 0;  // the whole run's wall time divided by n: throughput, all requests in flight
    // The engine against its physical limit: tokens decoded per second over the whole run, and raw
    // batched decode on the same backend at the run's mean batch size and mean context per token.
    double run_tokens_per_s = 0, mean_batch = 0, mean_context = 0, raw_tokens_per_s = 0, raw_fraction = 0;
    std::optional<remote::RemoteStats> remote;  // --backend remote: what the servers did
    countdown::LineCheck lines;  // every thread's lines by kind, and the wrong ones (tasks/countdown/trace_check.h)
};

// "root expansion 12 of 800 wrong, ..." over the kinds seen.
std::string lines_report(const countdown::LineCheck & c) {
    std::string out;
    for (const auto & [kind, n] : c.by_kind) {
        char item[160];
        std::snprintf(item, sizeof item, "%s%s %d of %d (%.1f%%)", out.empty() ? "" : ", ", kind.c_str(), n.wrong, n.lines,
                      n.lines ? 100.0 * n.wrong / n.lines : 0.0);
        out += item;
    }
    return out;
}

// `policies`: the thresholds the policies run on (policy_settings_for), read once per command: a
// sweep's points share them.
Summary measure(const CountdownArgs & a, const std::shared_ptr<const llama::Model> & model,
                const std::vector<countdown::Problem> & problems, const runtime::PolicySettings & policies) {
    const std::unique_ptr<Backend> owned = make_backend(a.backend, model, backend_for(a));
    Backend & backend = *owned;
    const auto t0 = std::chrono::steady_clock::now();
    strategies::CountdownOptions options = options_from(a);
    options.policies = policies;
    options.distractors = strategies::countdown_distractors(backend.vocabulary(), a.distractors);
    const auto outcomes = strategies::run_countdown(backend, problems, options);
    write_trace(a, outcomes);
    Summary s;
    s.strategy = a.strategy + (a.native_samples && a.strategy != "native" && a.strategy != "sequential" ? " (native samples)" : "");
    s.controller = a.controller;
    s.context = a.context;
    s.distractors = a.distractors;
    s.n = outcomes.size();
    for (const auto & o : outcomes) {
        s.accuracy += o.solved;
        s.total_tokens += static_cast<double>(o.metrics.total_tokens);
        s.sequential_tokens += static_cast<double>(o.metrics.sequential_tokens);
        s.max_context_tokens += static_cast<double>(o.metrics.max_context_tokens);
        s.latency_s += o.metrics.wall_s;
        s.threads += o.metrics.threads;
        for (const auto & t : o.threads) {
            s.probe_tokens += static_cast<double>(t.probe_tokens);
            s.compactions += t.compactions;
            // Failure analysis: the model's own lines, where they are the search of this problem
            // from the thread's start (not behind distractors, not restarted by a compaction, not a
            // nested search in its sub-problem's terms).
            // A follow-up root (validate) is left out: a rewrite restates its root's context up to the
            // join (its lines are counted once, in the root), a re-exploration starts from an expansion
            // the controller wrote. Their children are the model's and count.
            const bool followup = o.rewrites + o.reexplorations > 0 && t.parent < 0 && t.id > 0;
            if (a.distractors == 0 && t.compactions == 0 && !t.nested && !followup) {
                countdown::add_counts(s.lines, countdown::check_trace_lines(t.text, o.problem));
            }
        }
        s.samples_stopped += o.stopped;
        s.samples_not_needed += o.not_needed;
        s.rewrites += o.rewrites;
        s.reexplorations += o.reexplorations;
    }
    const double n = static_cast<double>(s.n);
    for (double * v : {&s.accuracy, &s.total_tokens, &s.sequential_tokens, &s.max_context_tokens, &s.latency_s, &s.threads,
                       &s.probe_tokens, &s.samples_stopped, &s.samples_not_needed, &s.compactions, &s.rewrites, &s.reexplorations}) {
        *v /= n;
    }
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    s.run_wall_s = wall / n;
    const DecodeStats st = backend.stats();
    if (st.tokens > 0) s.run_tokens_per_s = static_cast<double>(st.tokens) / wall;
    if (auto * r = dynamic_cast<remote::RemoteBackend *>(&backend)) s.remote = r->remote_stats();
    auto * in_process = dynamic_cast<llama::LlamaBackend *>(&backend);
    if (in_process && st.steps > 0 && st.tokens > 0) {
        s.mean_batch = static_cast<double>(st.tokens) / static_cast<double>(st.steps);
        s.mean_context = static_cast<double>(st.position_sum) / static_cast<double>(st.tokens);
        const int batch = std::clamp(static_cast<int>(std::lround(s.mean_batch)), 1,
                                     static_cast<int>(in_process->options().n_seq_max));
        const int steps = 32;
        const int context = std::clamp(static_cast<int>(std::lround(s.mean_context)), 1,
                                       static_cast<int>(in_process->sequence_capacity()) - steps - 1);
        s.raw_tokens_per_s = decode_tokens_per_s(*in_process, batch, steps, context);
        s.raw_fraction = s.run_tokens_per_s / s.raw_tokens_per_s;
    }
    return s;
}

nlohmann::json remote_json(const remote::RemoteStats & r) {
    auto cache = [](const remote::PromptCacheStats & c) {
        return nlohmann::json{{"requests", c.requests}, {"reported", c.reported}, {"prompt_tokens", c.prompt_tokens}, {"cached_tokens", c.cached_tokens}};
    };
    nlohmann::json replicas = nlohmann::json::array();
    for (const auto & x : r.replicas) replicas.push_back({{"url", x.url}, {"requests", x.requests}, {"failures", x.failures}, {"up", x.up}});
    return {{"requests", r.requests}, {"retries", r.retries}, {"failed_sequences", r.failed_sequences},
            {"cancelled_streams", r.cancelled_streams}, {"retokenized_chunks", r.retokenized_chunks},
            {"first", cache(r.first)}, {"forked", cache(r.forked)}, {"resumed", cache(r.resumed)}, {"replicas", replicas}};
}

nlohmann::json to_json(const Summary & s) {
    nlohmann::json j = {{"n", s.n}, {"strategy", s.strategy}, {"controller", s.controller}, {"context", s.context}, {"distractors", s.distractors}, {"accuracy", s.accuracy},
            {"total_tokens", s.total_tokens}, {"sequential_tokens", s.sequential_tokens}, {"probe_tokens", s.probe_tokens},
            {"max_context_tokens", s.max_context_tokens}, {"samples_stopped", s.samples_stopped}, {"compactions", s.compactions},
            {"samples_not_needed", s.samples_not_needed}, {"answer_rewrites", s.rewrites}, {"root_reexplorations", s.reexplorations}, {"wall_seconds", s.latency_s},
            {"run_wall_seconds_per_problem", s.run_wall_s}, {"threads", s.threads},
            {"run_tokens_per_s", s.run_tokens_per_s}, {"mean_batch", s.mean_batch}, {"mean_context", s.mean_context},
            {"raw_tokens_per_s", s.raw_tokens_per_s},
            {"raw_fraction", s.raw_fraction}};
    if (s.remote) j["remote"] = remote_json(*s.remote);
    nlohmann::json lines = nlohmann::json::object();
    for (const auto & [kind, n] : s.lines.by_kind) lines[kind] = {{"lines", n.lines}, {"wrong", n.wrong}};
    j["lines"] = lines;
    return j;
}

// A number from a comma list, or a clear error naming the flag.
template <typename T>
T parse_item(const std::string & text, const char * flag) {
    try {
        size_t used = 0;
        const double v = std::stod(text, &used);
        if (used == text.size()) return static_cast<T>(v);
    } catch (const std::exception &) {
    }
    throw Error(ErrorCode::invalid_argument, std::string(flag) + ": '" + text + "' is not a number");
}

}  // namespace

int run_bench_countdown(const CountdownArgs & a, const std::string & problems_path, int limit, bool json) {
    auto problems = countdown::load_problems(problems_path);
    if (limit > 0 && static_cast<size_t>(limit) < problems.size()) problems.resize(static_cast<size_t>(limit));
    if (problems.empty()) throw Error(ErrorCode::invalid_argument, problems_path + " holds no problems");
    auto model = load_model_for(a.backend, a.model);
    const runtime::PolicySettings policies = policy_settings_for(model->path(), a.calibration);
    if (!a.sweep) {
        const Summary s = measure(a, model, problems, policies);
        nlohmann::json j = to_json(s);
        j["model"] = model->path();
        if (json) {
            std::printf("%s\n", j.dump().c_str());
        } else {
            std::printf("%s, context %d: accuracy %.1f%% of %zu; per problem: %.0f tokens, %.0f sequential, "
                        "max context %.0f, %.1f threads, latency %.2f s (%.2f s of the run)\n",
                        s.strategy.c_str(), s.context, 100.0 * s.accuracy, s.n, s.total_tokens, s.sequential_tokens,
                        s.max_context_tokens, s.threads, s.latency_s, s.run_wall_s);
            if (s.probe_tokens > 0) {
                std::printf("  context rot: per problem %.0f probe tokens (%.1f%% of the tokens), %.2f compactions\n", s.probe_tokens,
                            100.0 * s.probe_tokens / std::max(1.0, s.total_tokens), s.compactions);
            }
            if (!s.lines.by_kind.empty()) std::printf("  wrong lines by kind: %s\n", lines_report(s.lines).c_str());
            if (s.rewrites > 0) {
                std::printf("  validate: per problem %.2f root continuations re-sampled after a join that reached the target\n",
                            s.rewrites);
            }
            if (s.reexplorations > 0) {
                std::printf("  validate: per problem %.2f roots re-explored with the first steps no root had expanded\n", s.reexplorations);
            }
            if (s.samples_stopped > 0 || s.samples_not_needed > 0) {
                std::printf("  confidence: per problem %.2f samples stopped for low confidence, %.2f not needed once the vote settled\n",
                            s.samples_stopped, s.samples_not_needed);
            }
            if (s.remote) {
                std::printf("  throughput %.0f tokens/s (prompt tokens sent and tokens generated, per second of the run)\n%s\n",
                            s.run_tokens_per_s, remote_report(*s.remote).c_str());
            } else {
                std::printf("  throughput %.0f tokens/s (mean batch %.1f, mean context %.0f) vs raw decode at that batch "
                            "and context %.0f tokens/s: %.2f of it\n",
                            s.run_tokens_per_s, s.mean_batch, s.mean_context, s.raw_tokens_per_s, s.raw_fraction);
            }
        }
        return 0;
    }
    // Sweep: every strategy at every per-thread context window; a markdown table and an SVG plot.
    // A series is a strategy name, optionally with its own sampling temperature after '@'
    // ("self-consistency@0.8"), so greedy baselines and sampled ones share one report. Every point
    // is parsed before the first one runs: a typo fails at once, not an hour in.
    std::vector<std::pair<std::string, CountdownArgs>> plan;  // series label, its point
    const bool by_distractors = !a.sweep_distractors.empty();
    const std::string axis = by_distractors ? a.sweep_distractors : a.sweep_contexts;
    for (const auto & strategy : split_comma_list(a.sweep_strategies)) {
        for (const auto & ctx : split_comma_list(axis)) {
            // "native+early-stop+validate@0.8": a strategy, its controller policies, its temperature.
            CountdownArgs point = a;
            const size_t at = strategy.find('@');
            const std::string name = strategy.substr(0, at);
            const size_t plus = name.find('+');
            point.strategy = name.substr(0, plus);
            strategies::parse_countdown_strategy(point.strategy);
            if (plus != std::string::npos) {
                point.controller = name.substr(plus + 1);
                std::replace(point.controller.begin(), point.controller.end(), '+', ',');
                runtime::make_controller(point.controller);
            }
            if (at != std::string::npos) point.temperature = parse_item<float>(strategy.substr(at + 1), "--sweep-strategies");
            if (by_distractors) {
                point.distractors = parse_item<int>(ctx, "--sweep-distractors");
            } else {
                point.context = parse_item<int>(ctx, "--sweep-contexts");
            }
            plan.emplace_back(strategy, point);
        }
    }
    std::vector<Summary> points;
    for (const auto & [series, point] : plan) {
        points.push_back(measure(point, model, problems, policies));
        const bool native_samples = points.back().strategy.ends_with(" (native samples)");
        points.back().strategy = series + (native_samples ? " (native samples)" : "");
        if (!json) {
            std::printf("  %s context %d, distractors %d: accuracy %.1f%%\n", series.c_str(), point.context, point.distractors,
                        100.0 * points.back().accuracy);
            std::fflush(stdout);
        }
    }
    std::string md = "| strategy | context | distractors | accuracy | total tokens | sequential tokens | max context | threads | latency s | probe tokens | compactions |\n"
                     "|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (const auto & p : points) {
        char row[320];
        std::snprintf(row, sizeof row, "| %s | %d | %d | %.1f%% | %.0f | %.0f | %.0f | %.1f | %.2f | %.0f | %.2f |\n", p.strategy.c_str(),
                      p.context, p.distractors, 100.0 * p.accuracy, p.total_tokens, p.sequential_tokens, p.max_context_tokens,
                      p.threads, p.latency_s, p.probe_tokens, p.compactions);
        md += row;
    }
    std::vector<trace::Panel> panels = {{by_distractors ? "distractor tokens before each problem" : "per-thread context window", "tokens",
                                         !by_distractors, {}},
                                        {"total tokens per problem", "tokens", true, {}},
                                        {"latency per problem", "seconds", true, {}}};
    for (const auto & strategy : split_comma_list(a.sweep_strategies)) {
        trace::Series by_ctx{strategy, {}, {}}, by_total{strategy, {}, {}}, by_wall{strategy, {}, {}};
        for (const auto & p : points) {
            if (p.strategy != strategy) continue;
            by_ctx.x.push_back(by_distractors ? p.distractors : p.context);
            by_total.x.push_back(p.total_tokens);
            by_wall.x.push_back(p.latency_s);
            for (auto * ser : {&by_ctx, &by_total, &by_wall}) ser->y.push_back(p.accuracy);
        }
        panels[0].series.push_back(by_ctx);
        panels[1].series.push_back(by_total);
        panels[2].series.push_back(by_wall);
    }
    const std::string svg = trace::svg_line_panels(panels, "accuracy", 0.0, 1.0);
    std::ofstream(a.report + ".md") << md;
    std::ofstream(a.report + ".svg") << svg;
    if (json) {
        nlohmann::json j = nlohmann::json::array();
        for (const auto & p : points) j.push_back(to_json(p));
        std::printf("%s\n", nlohmann::json{{"points", j}, {"model", model->path()}}.dump().c_str());
    } else {
        std::printf("%s\nwrote %s.md and %s.svg\n", md.c_str(), a.report.c_str(), a.report.c_str());
    }
    return 0;
}

namespace {
// Totals after the answer: what the run cost and how parallel it was.
std::string totals(const runtime::JobResult & r) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "threads %zu, tokens %lld total (%lld generated, %lld sequential), max context %lld, %.2f s",
                  r.threads.size(), static_cast<long long>(r.metrics.total_tokens), static_cast<long long>(r.metrics.generated_tokens),
                  static_cast<long long>(r.metrics.sequential_tokens), static_cast<long long>(r.metrics.max_context_tokens),
                  r.metrics.wall_s);
    return buf;
}

nlohmann::json result_json(const runtime::JobResult & r) {
    return {{"ok", r.ok},
            {"strategy", r.strategy},
            {"answer", r.answer},
            {"error", r.error},
            {"finish_reason", r.finish_reason},
            {"text", r.text},
            {"total_tokens", r.metrics.total_tokens},
            {"generated_tokens", r.metrics.generated_tokens},
            {"sequential_tokens", r.metrics.sequential_tokens},
            {"max_context_tokens", r.metrics.max_context_tokens},
            {"threads", r.threads.size()},
            {"wall_s", r.metrics.wall_s},
            {"tree", trace::thread_tree_json(r.threads, true)}};
}

// Runs one program on an engine over `backend`, showing it live (or not, with --json).
runtime::JobResult run_live(Backend & backend, const runtime::Limits & limits, std::shared_ptr<runtime::Program> program, bool json) {
    runtime::EngineOptions eo;
    eo.limits = limits;
    runtime::Engine engine(backend, eo);
    LiveView view(LiveView::mode_for(stdout, json));
    runtime::JobOptions jo;
    jo.events = [&view](const runtime::JobEvent & e) { view.on_event(e); };
    return engine.run(std::move(program), jo);
}
}  // namespace

int run_countdown_once(const CountdownArgs & a, const std::string & json_line, bool json) {
    const auto problem = countdown::parse_problem(json_line);
    auto model = load_model_for(a.backend, a.model);
    CountdownArgs one = a;
    one.concurrency = 1;
    const std::unique_ptr<Backend> owned = make_backend(a.backend, model, backend_for(one));
    Backend & backend = *owned;
    strategies::CountdownOptions options = options_from(one);
    options.policies = policy_settings_for(model->path(), a.calibration);
    auto program = std::make_shared<strategies::CountdownProgram>(problem, options);
    const runtime::JobResult r = run_live(backend, options.limits, program, json);
    strategies::CountdownOutcome out = program->outcome();
    out.metrics = r.metrics;
    write_trace(one, {out});
    if (json) {
        nlohmann::json j = result_json(r);
        j["problem"] = nlohmann::json::parse(json_line);
        j["solved"] = out.solved;
        j["reason"] = out.reason;
        std::printf("%s\n", j.dump().c_str());
        return out.solved ? 0 : 2;
    }
    if (out.solved) {
        std::printf("%s = %d\n%s\n", out.expression.c_str(), problem.target, totals(r).c_str());
        return 0;
    }
    std::printf("failed: %s\n%s\n", out.reason.c_str(), totals(r).c_str());
    return 2;
}

}  // namespace forkjoin::app

namespace forkjoin::app {

int run_text_once(const CountdownArgs & a, const std::string & question, const std::string & templates_path, int max_items, bool json) {
    if (a.model.empty()) throw Error(ErrorCode::invalid_argument, "--task text needs --model (an instruct model's GGUF)");
    auto model = load_model_for(a.backend, a.model);
    strategies::TextOptions o;
    o.strategy = a.strategy;
    o.controller = a.controller;
    o.policies = policy_settings_for(model->path(), a.calibration);
    if (a.max_total_tokens > 0) o.limits.total_token_budget = a.max_total_tokens;
    o.samples = a.samples;
    o.max_items = max_items;
    o.sampling.temperature = a.temperature;
    o.sampling.seed = a.seed;
    o.limits.thread_token_budget = a.context > 0 ? a.context : 1024;
    if (!templates_path.empty()) o.templates = strategies::load_templates(templates_path);
    llama::BackendOptions b;
    b.n_threads = a.threads;
    b.n_seq_max = static_cast<uint32_t>(std::max(8, std::max(a.samples, max_items) + 2));
    b.n_ctx = static_cast<uint32_t>(int64_t{b.n_seq_max} * (o.limits.thread_token_budget + 512));
    if (a.kv_cells > 0) b.n_ctx = static_cast<uint32_t>(std::min<int64_t>(b.n_ctx, a.kv_cells));
    const std::unique_ptr<Backend> owned = make_backend(a.backend, model, b);
    Backend & backend = *owned;
    auto program = std::make_shared<strategies::TextProgram>(question, o);
    const runtime::JobResult job = run_live(backend, o.limits, program, json);
    const auto & r = program->result();
    if (json) {
        nlohmann::json j = result_json(job);
        j["items"] = r.items;
        j["outputs"] = r.outputs;
        std::printf("%s\n", j.dump().c_str());
    } else {
        std::printf("%s\n%s\n", r.ok ? r.answer.c_str() : ("failed: " + r.error).c_str(), totals(job).c_str());
    }
    return r.ok ? 0 : 2;
}

}  // namespace forkjoin::app
