// The CLI's subcommands. Each add_*_options binds flags to an args struct; run_* executes it and
// returns the process exit code. Errors are thrown as forkjoin::Error and reported by main().
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace forkjoin::app {

// Where a command's threads run: in process on llama.cpp (the default), or on OpenAI-compatible
// servers (llama-server, vLLM, SGLang) through the remote backend (backends/remote).
struct BackendArgs {
    std::string backend = "llama";   // llama or remote
    std::vector<std::string> urls;   // remote: one per replica
    std::string api_key;             // remote: sent to the servers
    int parallel = 16;               // remote: streams in flight at once
    std::string routing = "cache-aware";  // remote: cache-aware or round-robin
    double read_timeout_s = 60;      // remote: longest silence inside a stream
    std::string served_model;        // remote: the "model" field (default: what the server lists)
    bool remote() const { return backend == "remote"; }
};
// api_key_flag: the flag that names the servers' key ("--api-key" for run and bench; serve has its own
// --api-key for its clients, so there it is "--remote-api-key").
void add_backend_options(CLI::App & cmd, BackendArgs & args, const std::string & api_key_flag);

struct BenchBackendArgs {
    bool json = false;
    std::vector<std::string> sizes = {"1M", "10M", "50M"};
    std::vector<int> sequences = {1, 2, 4, 8, 16, 32};
    int cpu_threads = 0;
    int decode_steps = 64;
    int repeats = 5;
    int fork_prefix = 2048;
    int join_branches = 4;
    int join_branch_tokens = 256;
    int memory_forks = 8;
    int memory_prefix = 512;
    int memory_own = 32;
    std::vector<int> layout_sequences = {1, 16, 64, 128};
    int layout_context = 512;
    std::string model_dir = "build/test-models";
};

void add_bench_backend_options(CLI::App & cmd, BenchBackendArgs & args);
int run_bench_backend(const BenchBackendArgs & args);

struct CountdownArgs {
    std::string model;  // empty: the shipped model
    std::string strategy = "native";
    int context = 0;
    std::string prompt_style = "forkjoin";
    int max_children = 8;
    int concurrency = 16;
    int64_t kv_cells = 0;  // 0: sized for every thread's window
    int samples = 4;
    bool native_samples = false;  // self-consistency, best-of-n: samples are native runs
    float temperature = 0.0f;
    uint64_t seed = 0;
    bool sweep = false;
    std::string sweep_strategies = "sequential,native";
    std::string sweep_contexts = "256,512,1024,2048";
    int distractors = 0;              // tokens of other problems' traces before each root's context
    std::string sweep_distractors;    // the sweep's x axis instead of the context: distractor tokens
    std::string report = "countdown-sweep";
    std::string trace_path;  // write the runs' thread trees as Chrome trace JSON
    int threads = 0;         // CPU threads per decode (0: adapt to the free cores)
    std::string controller = "default";  // controller policies (runtime/policies.h)
    std::string calibration;             // the policies' per-model settings: "none", a file, or "" (beside the model)
    int64_t max_total_tokens = 0;        // per problem, all threads (0: no limit)
    BackendArgs backend;
};

// The options of `run --task countdown|text`; bench countdown adds concurrency and the sweep's.
void add_countdown_options(CLI::App & cmd, CountdownArgs & args);
void add_bench_countdown_options(CLI::App & cmd, CountdownArgs & args);
int run_bench_countdown(const CountdownArgs & args, const std::string & problems_path, int limit, bool json);
// forkjoin run --task countdown: one problem, shown live (the thread tree on a terminal, event lines
// when piped), then the verified answer and totals; json: one object with the whole tree instead.
int run_countdown_once(const CountdownArgs & args, const std::string & json_line, bool json);
// forkjoin run --task text: a question through a text strategy (sequential, self-consistency, plan-execute).
int run_text_once(const CountdownArgs & args, const std::string & question, const std::string & templates_path, int max_items, bool json);

// forkjoin calibrate context-rot: the model's normal range for the context-rot probe (runtime/calibration.h),
// written beside the model (app/calibration_file.h) unless --out says where.
struct CalibrateArgs {
    std::string model;        // empty: the shipped model
    std::string problems;
    int limit = 100;
    int context = 512;
    std::string strategies = "sequential,native";
    int concurrency = 16;
    int threads = 0;
    std::string out;
};
void add_calibrate_options(CLI::App & cmd, CalibrateArgs & args);
int run_calibrate(const CalibrateArgs & args);

// forkjoin generate traces: the model's own searches that the strict verifier accepts, as training
// examples (strategies/countdown_traces.h) for forkjoin-train --traces.
struct GenerateTracesArgs {
    std::string model;        // empty: the shipped model
    std::string problems;     // fresh training problems (forkjoin generate countdown)
    int limit = 0;            // first N problems (0: all)
    std::string exclude;      // comma list of JSONL problem files never to train on; "" the shipped eval
                              // sets beside the shipped model; "none" none
    std::string strategies = "sequential,native";
    int attempts = 4;         // sampled runs per problem and strategy, each with its own seed
    float temperature = 0.8f;
    uint64_t seed = 1;
    int context = 4096;       // per-thread window
    int concurrency = 16;
    int threads = 0;
    bool join_corrections = true;  // also the expert's continuation of unsolved roots' joins
    std::string out;
};
void add_generate_traces_options(CLI::App & cmd, GenerateTracesArgs & args);
int run_generate_traces(const GenerateTracesArgs & args);

struct ServeArgs {
    std::string model;        // empty: the shipped model
    std::string host = "127.0.0.1";
    int port = 8080;
    std::string api_key;
    int max_queue = 64;
    int sequences = 64;
    int64_t ctx_per_sequence = 0;
    std::string kv_layout;    // empty: by task and dialect
    std::string task;         // empty: countdown for the shipped model, else text
    std::string dialect = "plain";
    int max_threads = 64;
    int max_tokens = 2048;
    int threads = 0;
    std::string controller = "default";  // requests that name none get these policies
    std::string calibration;             // as CountdownArgs::calibration
    double shutdown_timeout_s = 10;      // SIGTERM: in-flight requests get this long, then are cancelled
    int heartbeat_ms = 250;
    BackendArgs backend;
};

void add_serve_options(CLI::App & cmd, ServeArgs & args);
// Serves until SIGINT or SIGTERM.
int run_serve(const ServeArgs & args);

}  // namespace forkjoin::app
