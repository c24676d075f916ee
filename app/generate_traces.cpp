// forkjoin generate traces: expert iteration's data. The model searches fresh problems through the
// runtime (sampled, several attempts each, sequential and native), the strict verifier keeps what is
// right (strategies/countdown_traces.h), and the examples go to a JSONL file forkjoin-train reads
// beside its symbolic data (--traces).
#include "app/commands.h"
#include "app/model_file.h"
#include "base/comma_list.h"
#include "base/error.h"
#include "strategies/countdown.h"
#include "strategies/countdown_traces.h"
#include "tasks/countdown/held_out.h"
#include "tasks/countdown/problem.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <unordered_set>

namespace forkjoin::app {
void add_generate_traces_options(CLI::App & cmd, GenerateTracesArgs & a) {
    cmd.add_option("--model", a.model, "GGUF model (default: the shipped Countdown model)");
    cmd.add_option("--problems", a.problems, "JSON Lines of fresh training problems (forkjoin generate countdown)")->required();
    cmd.add_option("--limit", a.limit, "first N problems (0: all)")->capture_default_str();
    cmd.add_option("--exclude", a.exclude,
                   "comma-separated JSONL problem files never to train on, besides the shipped eval sets beside the shipped "
                   "model; their problems are skipped (a list starting with none drops the shipped sets)");
    cmd.add_option("--strategies", a.strategies, "comma-separated: sequential, native")->capture_default_str();
    cmd.add_option("--attempts", a.attempts, "sampled runs per problem and strategy, each with its own seed")->capture_default_str();
    cmd.add_option("--temperature", a.temperature, "sampling temperature (0: greedy, with --attempts 1)")->capture_default_str();
    cmd.add_option("--seed", a.seed, "attempt i samples with seed + i")->capture_default_str();
    cmd.add_option("--context", a.context, "per-thread context window in tokens")->capture_default_str();
    cmd.add_option("--concurrency", a.concurrency, "problems in flight at once")->capture_default_str();
    cmd.add_option("--threads", a.threads, "CPU threads per decode (0: adapt to the free cores)")->capture_default_str();
    cmd.add_flag("!--no-join-corrections", a.join_corrections,
                 "keep only what the model wrote right: no expert continuation of an unsolved root's join "
                 "(strategies/countdown_traces.h)");
    cmd.add_option("-o,--output", a.out, "JSONL file of training examples")->required();
}

int run_generate_traces(const GenerateTracesArgs & a) {
    if (a.context <= 0) throw Error(ErrorCode::invalid_argument, "--context: the per-thread window must be positive (e.g. 4096)");
    if (a.concurrency <= 0) throw Error(ErrorCode::invalid_argument, "--concurrency must be positive");
    if (a.attempts <= 0) throw Error(ErrorCode::invalid_argument, "--attempts must be positive");
    if (a.temperature < 0 || (a.temperature == 0 && a.attempts > 1)) {
        throw Error(ErrorCode::invalid_argument,
                    "--temperature must be above 0 for more than one attempt (greedy attempts of one problem are one attempt); "
                    "0 with --attempts 1 runs each problem greedily once");
    }
    std::vector<strategies::CountdownStrategy> modes;
    for (const std::string & name : split_comma_list(a.strategies)) {
        if (name.empty()) continue;
        const auto s = strategies::parse_countdown_strategy(name);
        if (s != strategies::CountdownStrategy::sequential && s != strategies::CountdownStrategy::native) {
            throw Error(ErrorCode::invalid_argument, "--strategies: traces come from sequential or native runs, not " + name);
        }
        modes.push_back(s);
    }
    if (modes.empty()) throw Error(ErrorCode::invalid_argument, "--strategies names no strategy");

    auto all = countdown::load_problems(a.problems);
    if (a.limit > 0 && static_cast<size_t>(a.limit) < all.size()) all.resize(static_cast<size_t>(a.limit));
    const std::vector<std::string> exclude_files =
        countdown::held_out_files(a.exclude, std::filesystem::path(model_path("")).parent_path().string());
    const std::set<countdown::ProblemKey> excluded = countdown::load_held_out(exclude_files);
    std::vector<countdown::Problem> problems;
    for (const auto & p : all) {
        if (!excluded.contains(countdown::key_of(p))) problems.push_back(p);
    }
    std::string from;
    for (const auto & f : exclude_files) from += (from.empty() ? "" : ", ") + std::filesystem::path(f).filename().string();
    std::printf("%zu problems; %zu skipped as in %s\n", problems.size(), all.size() - problems.size(),
                from.empty() ? "no excluded file" : from.c_str());
    std::fflush(stdout);
    if (problems.empty()) throw Error(ErrorCode::invalid_argument, a.problems + " holds no problem to train on");

    std::ofstream out(a.out);
    if (!out) throw Error(ErrorCode::invalid_argument, "cannot write " + a.out);
    auto model = load_model(a.model);
    std::unordered_set<std::string> seen;  // identical examples (two attempts that wrote the same) once
    int written = 0, duplicates = 0;
    for (const auto mode : modes) {
        strategies::CountdownOptions o;
        o.strategy = mode;
        o.limits.max_context = a.context;
        o.limits.thread_token_budget = a.context;
        o.concurrent_requests = a.concurrency;
        o.sampling.temperature = a.temperature;
        llama::BackendOptions b = strategies::countdown_backend_options(o);
        b.n_threads = a.threads;
        llama::LlamaBackend backend(model, b);
        strategies::TraceYield yield;
        int solved = 0;
        int64_t tokens = 0;
        const auto t0 = std::chrono::steady_clock::now();
        for (int attempt = 0; attempt < a.attempts; ++attempt) {
            o.sampling.seed = a.seed + static_cast<uint64_t>(attempt);
            for (const auto & outcome : strategies::run_countdown(backend, problems, o)) {
                solved += outcome.solved;
                tokens += outcome.metrics.generated_tokens;
                for (const auto & t : strategies::training_traces(outcome, mode, yield, a.join_corrections)) {
                    if (!seen.insert(t.text()).second) {
                        ++duplicates;
                        continue;
                    }
                    out << strategies::to_json_line(t) << '\n';
                    ++written;
                }
            }
            out.flush();
            if (!out) throw Error(ErrorCode::invalid_argument, "writing " + a.out + " failed");
        }
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const int runs = a.attempts * static_cast<int>(problems.size());
        std::printf("%s: %d runs, %d solved (%.1f%%), %lld tokens generated in %.0f s; roots kept %d (unsolved %d, "
                    "with wrong lines %d, unreadable %d)",
                    strategies::countdown_strategy_name(mode), runs, solved, 100.0 * solved / runs, static_cast<long long>(tokens), s,
                    yield.roots_kept, yield.roots_unsolved, yield.roots_wrong_lines, yield.roots_unreadable);
        if (mode == strategies::CountdownStrategy::native) {
            std::printf("; children kept %d (wrong verdict %d, with wrong lines %d, unfinished %d); joins corrected %d",
                        yield.children_kept, yield.children_wrong, yield.children_wrong_lines, yield.children_unfinished,
                        yield.joins_corrected);
        }
        std::printf("\n");
        std::fflush(stdout);
    }
    std::printf("wrote %d examples to %s (%d duplicates left out)\n", written, a.out.c_str(), duplicates);
    return 0;
}

}  // namespace forkjoin::app
