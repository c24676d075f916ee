// forkjoin calibrate context-rot: the model's normal range for the context-rot probe, measured on its own
// clean Countdown threads with the monitor observing only, stored beside the model (runtime/calibration.h,
// app/calibration_file.h).
#include "app/calibration_file.h"
#include "app/commands.h"
#include "app/model_file.h"
#include "base/comma_list.h"
#include "base/error.h"
#include "runtime/calibration.h"
#include "strategies/countdown.h"
#include "tasks/countdown/problem.h"

#include <cstdio>
#include <filesystem>
#include <limits>

namespace forkjoin::app {

void add_calibrate_options(CLI::App & cmd, CalibrateArgs & a) {
    cmd.add_option("--model", a.model, "GGUF model (default: the shipped Countdown model)");
    cmd.add_option("--problems", a.problems, "JSON Lines of Countdown problems, run without distractors")->required();
    cmd.add_option("--limit", a.limit, "first N problems")->capture_default_str();
    cmd.add_option("--context", a.context, "per-thread context window in tokens")->capture_default_str();
    cmd.add_option("--strategies", a.strategies, "comma-separated: sequential, native")->capture_default_str();
    cmd.add_option("--concurrency", a.concurrency, "problems in flight at once")->capture_default_str();
    cmd.add_option("--threads", a.threads, "CPU threads per decode (0: adapt to the free cores)")->capture_default_str();
    cmd.add_option("--out", a.out, "where to write it (default: beside the model, MODEL.calibration.json)");
}

int run_calibrate(const CalibrateArgs & a) {
    if (a.context <= 0) throw Error(ErrorCode::invalid_argument, "--context: the per-thread window must be positive (e.g. 512)");
    if (a.concurrency <= 0) throw Error(ErrorCode::invalid_argument, "--concurrency must be positive");
    auto problems = countdown::load_problems(a.problems);
    if (a.limit > 0 && static_cast<size_t>(a.limit) < problems.size()) problems.resize(static_cast<size_t>(a.limit));
    if (problems.empty()) throw Error(ErrorCode::invalid_argument, a.problems + " holds no problems");
    const std::string path = model_path(a.model);
    auto model = load_model(a.model);
    std::vector<runtime::ThreadRecord> threads;
    nlohmann::json strategies = nlohmann::json::array();
    for (const std::string & name : split_comma_list(a.strategies)) {
        if (name.empty()) continue;
        strategies::CountdownOptions o;
        o.strategy = strategies::parse_countdown_strategy(name);
        if (o.strategy != strategies::CountdownStrategy::sequential && o.strategy != strategies::CountdownStrategy::native) {
            throw Error(ErrorCode::invalid_argument, "--strategies: calibrate runs sequential or native, not " + name);
        }
        o.limits.max_context = a.context;
        o.limits.thread_token_budget = a.context;
        o.concurrent_requests = a.concurrency;
        // The monitor probes as it would, and never acts: thresholds out of reach.
        o.controller = "context-rot";
        o.policies.context_rot.reference = o.policies.context_rot.drift = std::numeric_limits<double>::infinity();
        llama::BackendOptions b = strategies::countdown_backend_options(o);
        b.n_threads = a.threads;
        llama::LlamaBackend backend(model, b);
        const auto outcomes = strategies::run_countdown(backend, problems, o);
        int solved = 0;
        size_t before = threads.size();
        for (const auto & out : outcomes) {
            solved += out.solved;
            threads.insert(threads.end(), out.threads.begin(), out.threads.end());
        }
        std::printf("%s: %zu problems, %d solved, %zu threads\n", name.c_str(), outcomes.size(), solved, threads.size() - before);
        std::fflush(stdout);
        strategies.push_back(name);
    }
    const runtime::ContextRotCalibration c = runtime::calibrate_context_rot(threads, runtime::ContextRot::kEvery);
    const std::string out = a.out.empty() ? calibration_path_for(path) : a.out;
    write_calibration(out, path, c,
                      {{"task", "countdown"},
                       {"problems", std::filesystem::path(a.problems).filename().string()},
                       {"n", problems.size()},
                       {"strategies", strategies},
                       {"context", a.context},
                       {"probe_every", runtime::ContextRot::kEvery}});
    std::printf("probe NLL rise above the clean start (nats per token), by generated tokens since it "
                "(built in: +%.2f after a clean reference, +%.2f against the thread's first probe):\n"
                "| tokens | threads | median | p95 | max | threshold |\n|---|---|---|---|---|---|\n",
                runtime::ContextRotThresholds::kReference, runtime::ContextRotThresholds::kDrift);
    for (size_t b = 0; b < c.by_position.size(); ++b) {
        const auto & s = c.by_position[b];
        std::printf("| %zu-%zu | %d | %.3f | %.3f | %.3f | %.3f |\n", b * c.every, (b + 1) * c.every - 1, s.threads, s.p50, s.p95, s.max,
                    c.thresholds.at(true, static_cast<int64_t>(b) * c.every));
    }
    std::printf("wrote %s\n", out.c_str());
    return 0;
}

}  // namespace forkjoin::app
