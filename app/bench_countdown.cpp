// forkjoin bench countdown / forkjoin run --task countdown: Countdown through the runtime, with
// the strict verifier, as one strategy at one per-thread context window.
#include "app/commands.h"
#include "base/error.h"
#include "strategies/countdown.h"
#include "tasks/countdown/problem.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>

namespace forkjoin::app {
namespace {

std::shared_ptr<const llama::Model> load_model(const std::string & path) {
    const std::string p = path.empty() ? std::string(FORKJOIN_DEFAULT_MODEL) : path;
    if (path.empty() && !std::filesystem::exists(p)) {
        throw Error(ErrorCode::model_load, "no model named (--model) and the shipped model " + p + " is not there");
    }
    return llama::Model::load(p);
}

strategies::CountdownOptions options_from(const CountdownArgs & a) {
    strategies::CountdownOptions o;
    o.strategy = strategies::parse_countdown_strategy(a.strategy);
    if (a.prompt_style == "apr") o.style = countdown::PromptStyle::apr;
    else if (a.prompt_style != "forkjoin") throw Error(ErrorCode::invalid_argument, "--prompt-style is forkjoin or apr");
    o.limits.max_context = a.context;
    o.limits.thread_token_budget = a.context > 0 ? a.context : 4096;
    o.limits.max_children = a.max_children;
    o.concurrent_requests = a.concurrency;
    o.samples = a.samples;
    o.sampling.temperature = a.temperature;
    o.sampling.seed = a.seed;
    return o;
}

llama::BackendOptions backend_for(const CountdownArgs & a) {
    llama::BackendOptions b;
    const int per_thread = a.context > 0 ? a.context : 4096;
    b.n_seq_max = static_cast<uint32_t>(std::min(256, a.concurrency * (1 + a.max_children)));
    b.n_ctx = static_cast<uint32_t>(std::min<int64_t>(int64_t{b.n_seq_max} * per_thread, a.kv_cells));
    return b;
}

}  // namespace

void add_countdown_options(CLI::App & cmd, CountdownArgs & a) {
    cmd.add_option("--model", a.model, "GGUF model (default: the shipped Countdown model)");
    cmd.add_option("--strategy", a.strategy, "sequential or native")->capture_default_str();
    cmd.add_option("--context", a.context, "per-thread context window in tokens (0: none)")->capture_default_str();
    cmd.add_option("--prompt-style", a.prompt_style, "forkjoin (mode tags) or apr (APR checkpoints)")->capture_default_str();
    cmd.add_option("--max-children", a.max_children)->capture_default_str();
    cmd.add_option("--concurrency", a.concurrency, "problems in flight at once")->capture_default_str();
    cmd.add_option("--kv-cells", a.kv_cells, "KV cache cells shared by all threads")->capture_default_str();
    cmd.add_option("--samples", a.samples, "self-consistency: samples per problem")->capture_default_str();
    cmd.add_option("--temperature", a.temperature, "0: greedy")->capture_default_str();
    cmd.add_option("--seed", a.seed)->capture_default_str();
}

int run_bench_countdown(const CountdownArgs & a, const std::string & problems_path, int limit, bool json) {
    auto problems = countdown::load_problems(problems_path);
    if (limit > 0 && static_cast<size_t>(limit) < problems.size()) problems.resize(static_cast<size_t>(limit));
    if (problems.empty()) throw Error(ErrorCode::invalid_argument, problems_path + " holds no problems");
    auto model = load_model(a.model);
    llama::LlamaBackend backend(model, backend_for(a));
    const auto outcomes = strategies::run_countdown(backend, problems, options_from(a));
    double solved = 0, total = 0, seq = 0, ctx = 0, wall = 0, threads = 0;
    for (const auto & o : outcomes) {
        solved += o.solved;
        total += static_cast<double>(o.metrics.total_tokens);
        seq += static_cast<double>(o.metrics.sequential_tokens);
        ctx += static_cast<double>(o.metrics.max_context_tokens);
        wall += o.metrics.wall_s;
        threads += o.metrics.threads;
    }
    const double n = static_cast<double>(outcomes.size());
    nlohmann::json j = {{"n", outcomes.size()},          {"strategy", a.strategy},
                        {"context", a.context},           {"accuracy", solved / n},
                        {"total_tokens", total / n},      {"sequential_tokens", seq / n},
                        {"max_context_tokens", ctx / n},  {"wall_seconds", wall / n},
                        {"threads", threads / n},         {"model", model->path()}};
    if (json) {
        std::printf("%s\n", j.dump().c_str());
    } else {
        std::printf("%s, context %d: accuracy %.1f%% (%d/%zu); per problem: %.0f tokens, %.0f sequential, "
                    "max context %.0f, %.1f threads, %.2f s\n",
                    a.strategy.c_str(), a.context, 100.0 * solved / n, static_cast<int>(solved), outcomes.size(), total / n,
                    seq / n, ctx / n, threads / n, wall / n);
    }
    return 0;
}

int run_countdown_once(const CountdownArgs & a, const std::string & json_line) {
    const auto problem = countdown::parse_problem(json_line);
    auto model = load_model(a.model);
    CountdownArgs one = a;
    one.concurrency = 1;
    llama::LlamaBackend backend(model, backend_for(one));
    const auto out = strategies::run_countdown(backend, {problem}, options_from(one)).at(0);
    if (out.solved) {
        std::printf("%s = %d\n", out.expression.c_str(), problem.target);
        return 0;
    }
    std::printf("failed: %s\n", out.reason.c_str());
    return 2;
}

}  // namespace forkjoin::app
