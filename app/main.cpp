// forkjoin: the command-line entry point.
//   forkjoin --version
//   forkjoin bench backend [--json] [--sizes 1M,10M,50M]
//   forkjoin bench countdown --problems FILE.jsonl --strategy sequential|native [--context N] [--json]
//   forkjoin run --task countdown '{"nums":[3,7,9,5],"target":24}'
//   forkjoin generate countdown -n 500 --seed S -o problems.jsonl
//   forkjoin generate traces --problems problems.jsonl -o traces.jsonl
//   forkjoin calibrate context-rot --problems FILE.jsonl [--model M.gguf] [--out FILE]
//   forkjoin serve [--model M.gguf] [--port 8080] [--api-key K]
#include "app/commands.h"
#include "base/error.h"
#include "base/version.h"
#include "tasks/countdown/solver.h"

#include <CLI/CLI.hpp>

#include <cstdio>

int main(int argc, char ** argv) {
    CLI::App app{"forkjoin: adaptive parallel reasoning on llama.cpp"};
    app.set_version_flag("--version", std::string("forkjoin ") + FORKJOIN_VERSION + " (llama.cpp " +
                                          FORKJOIN_LLAMA_COMMIT + ")");
    app.require_subcommand(1);

    auto * bench = app.add_subcommand("bench", "measure forkjoin");
    bench->require_subcommand(1);
    forkjoin::app::BenchBackendArgs backend_args;
    auto * bench_backend = bench->add_subcommand("backend", "batched decode, fork, KV join and memory of the llama backend");
    forkjoin::app::add_bench_backend_options(*bench_backend, backend_args);

    forkjoin::app::CountdownArgs cd_args;
    std::string problems_path;
    int limit = 0;
    bool cd_json = false;
    auto * bench_cd = bench->add_subcommand("countdown", "Countdown accuracy and cost of a strategy, strictly verified");
    bench_cd->add_option("--problems", problems_path, "JSON Lines: {\"nums\": [...], \"target\": N}")->required();
    bench_cd->add_option("--limit", limit, "first N problems only");
    bench_cd->add_flag("--json", cd_json, "print one JSON object");
    forkjoin::app::add_bench_countdown_options(*bench_cd, cd_args);

    std::string task, problem;
    auto * run = app.add_subcommand("run", "solve one problem and print the verified answer");
    run->add_option("--task", task, "countdown or text")->required();
    std::string templates_path;
    int max_items = 6;
    run->add_option("--templates", templates_path, "text, plan-execute: JSON with plan/work/result_item/summarize templates");
    run->add_option("--max-items", max_items, "text, plan-execute: most sub-tasks")->capture_default_str();
    run->add_option("problem", problem, "the problem as a JSON line")->required();
    bool run_json = false;
    run->add_flag("--json", run_json, "print the whole result, thread tree included, as one JSON object");
    forkjoin::app::add_countdown_options(*run, cd_args);

    forkjoin::app::ServeArgs serve_args;
    auto * serve = app.add_subcommand("serve", "an OpenAI-compatible server (/v1/completions, /v1/chat/completions) on one model");
    forkjoin::app::add_serve_options(*serve, serve_args);

    forkjoin::app::CalibrateArgs calibrate_args;
    auto * calibrate = app.add_subcommand("calibrate", "measure a model's normal range for a policy and store it beside the model");
    calibrate->require_subcommand(1);
    auto * calibrate_rot = calibrate->add_subcommand(
        "context-rot", "the context-rot probe's rise on clean Countdown threads (the monitor observing only) -> its thresholds");
    forkjoin::app::add_calibrate_options(*calibrate_rot, calibrate_args);

    int gen_n = 500;
    uint64_t gen_seed = 1;
    forkjoin::countdown::GeneratorOptions gen_options;
    std::string gen_out;
    auto * gen = app.add_subcommand("generate", "write seeded, solvable problems, or the model's verified traces, as JSON Lines");
    auto * gen_cd = gen->add_subcommand("countdown", "Countdown problems");
    gen->require_subcommand(1);
    gen_cd->add_option("-n", gen_n, "problems")->capture_default_str();
    gen_cd->add_option("--seed", gen_seed)->capture_default_str();
    gen_cd->add_option("--count", gen_options.count, "numbers per problem")->capture_default_str();
    gen_cd->add_option("--min", gen_options.min_number)->capture_default_str();
    gen_cd->add_option("--max", gen_options.max_number)->capture_default_str();
    gen_cd->add_option("--min-target", gen_options.min_target)->capture_default_str();
    gen_cd->add_option("--max-target", gen_options.max_target)->capture_default_str();
    gen_cd->add_option("-o,--output", gen_out, "JSONL file")->required();

    forkjoin::app::GenerateTracesArgs traces_args;
    auto * gen_traces = gen->add_subcommand(
        "traces", "the model's own verified Countdown searches as training examples (expert iteration; forkjoin-train --traces)");
    forkjoin::app::add_generate_traces_options(*gen_traces, traces_args);

    CLI11_PARSE(app, argc, argv);
    try {
        if (serve->parsed()) return forkjoin::app::run_serve(serve_args);
        if (calibrate_rot->parsed()) return forkjoin::app::run_calibrate(calibrate_args);
        if (bench_backend->parsed()) return forkjoin::app::run_bench_backend(backend_args);
        if (bench_cd->parsed()) return forkjoin::app::run_bench_countdown(cd_args, problems_path, limit, cd_json);
        if (gen_traces->parsed()) return forkjoin::app::run_generate_traces(traces_args);
        if (gen_cd->parsed()) {
            forkjoin::countdown::ProblemGenerator g(gen_seed, gen_options);
            std::vector<forkjoin::countdown::Problem> problems;
            for (int i = 0; i < gen_n; ++i) problems.push_back(g.next());
            forkjoin::countdown::save_problems(gen_out, problems);
            return 0;
        }
        if (run->parsed()) {
            if (task == "text") return forkjoin::app::run_text_once(cd_args, problem, templates_path, max_items, run_json);
            if (task != "countdown") throw forkjoin::Error(forkjoin::ErrorCode::invalid_argument, "unknown task '" + task + "' (countdown, text)");
            return forkjoin::app::run_countdown_once(cd_args, problem, run_json);
        }
    } catch (const forkjoin::Error & e) {
        std::fprintf(stderr, "forkjoin: error (%s): %s\n", forkjoin::error_code_name(e.code()), e.what());
        return 1;
    }
    return 0;
}
