// forkjoin serve: the engine on one model, behind the OpenAI-compatible server (server/).
#include "app/commands.h"
#include "app/backend_choice.h"
#include "app/calibration_file.h"
#include "app/model_file.h"
#include "backends/llama/backend.h"
#include "base/error.h"
#include "runtime/policies.h"
#include "server/http_server.h"

#include <csignal>
#include <cstdio>
#include <thread>

namespace forkjoin::app {

void add_serve_options(CLI::App & cmd, ServeArgs & a) {
    cmd.add_option("--model", a.model, "GGUF model (default: the shipped Countdown model)");
    cmd.add_option("--host", a.host, "address to listen on")->capture_default_str();
    cmd.add_option("--port", a.port, "port (0: any free port, printed at start)")->capture_default_str();
    cmd.add_option("--api-key", a.api_key, "require Authorization: Bearer <key> (except /health)");
    cmd.add_option("--max-queue", a.max_queue, "requests in flight at once; more get 503 with Retry-After")->capture_default_str();
    cmd.add_option("--sequences", a.sequences, "backend sequences (threads of all requests live at once)")->capture_default_str();
    cmd.add_option("--ctx-per-sequence", a.ctx_per_sequence, "KV cells per sequence (0: the model's training context, at most 4096)")
        ->capture_default_str();
    cmd.add_option("--kv-layout", a.kv_layout,
                   "shared (zero-copy fork and KV join: forked dialects) or per-sequence (faster for fresh threads: apr, plain); "
                   "default: per-sequence for the countdown task and the apr and plain dialects, else shared");
    cmd.add_option("--task", a.task, "default task: countdown or text (default: countdown for the shipped model, else text)");
    cmd.add_option("--dialect", a.dialect, "default dialect of the native text strategy")->capture_default_str();
    cmd.add_option("--max-threads", a.max_threads, "running threads of all requests together")->capture_default_str();
    cmd.add_option("--max-tokens", a.max_tokens, "default per-thread token budget (a request's max_tokens overrides)")->capture_default_str();
    cmd.add_option("--threads", a.threads, "CPU threads per decode (0: adapt to the free cores)")->capture_default_str();
    cmd.add_option("--controller", a.controller, "controller policies of requests that name none (forkjoin.controller)")
        ->capture_default_str();
    cmd.add_option("--calibration", a.calibration, "the policies' per-model settings: a calibration file (forkjoin calibrate), or none for the built-in ones (default: MODEL.calibration.json beside the model, when it is for this model)");
    cmd.add_option("--shutdown-timeout", a.shutdown_timeout_s,
                   "on SIGTERM or SIGINT: seconds requests in flight get to finish before they are cancelled")
        ->capture_default_str();
    cmd.add_option("--heartbeat-ms", a.heartbeat_ms,
                   "the longest silence on an open answer (an SSE comment, or JSON whitespace); also how soon a client that "
                   "went away is noticed")
        ->capture_default_str()
        ->check(CLI::Range(1, 600000));
    add_backend_options(cmd, a.backend, "--remote-api-key");
}

namespace {
bool forked_dialect(const std::string & d) { return d != "apr" && d != "plain"; }
}  // namespace

int run_serve(const ServeArgs & a) {
    // Signals go to one thread that stops the server (blocked here before any thread starts).
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    auto model = load_model_for(a.backend, a.model);
    const bool shipped = a.model.empty();
    const std::string task = !a.task.empty() ? a.task : shipped ? "countdown" : "text";
    if (task != "countdown" && task != "text") throw Error(ErrorCode::invalid_argument, "--task: countdown or text, got '" + task + "'");
    dialects::make_dialect(a.dialect);  // a clear error for an unknown name, before anything starts

    llama::BackendOptions bo;
    bo.n_threads = a.threads;
    bo.n_seq_max = static_cast<uint32_t>(std::clamp(a.sequences, 1, 256));
    const int64_t per_seq = a.ctx_per_sequence > 0 ? a.ctx_per_sequence : std::min<int64_t>(model->n_ctx_train(), 4096);
    bo.n_ctx = static_cast<uint32_t>(per_seq * bo.n_seq_max);
    if (a.kv_layout.empty()) {
        bo.kv_layout = task == "countdown" || !forked_dialect(a.dialect) ? llama::KvLayout::per_sequence : llama::KvLayout::shared;
    } else if (a.kv_layout == "shared") {
        bo.kv_layout = llama::KvLayout::shared;
    } else if (a.kv_layout == "per-sequence") {
        bo.kv_layout = llama::KvLayout::per_sequence;
    } else {
        throw Error(ErrorCode::invalid_argument, "--kv-layout: shared or per-sequence, got '" + a.kv_layout + "'");
    }
    const std::unique_ptr<Backend> owned = make_backend(a.backend, model, bo);
    Backend & backend = *owned;

    runtime::EngineOptions eo;
    eo.limits.max_threads = a.max_threads;
    eo.limits.thread_token_budget = a.max_tokens;
    eo.max_jobs = a.max_queue;
    runtime::Engine engine(backend, eo);

    server::ServerOptions so;
    so.host = a.host;
    so.port = a.port;
    so.api_key = a.api_key;
    so.model_id = shipped ? "forkjoin-countdown" : std::filesystem::path(model_path(a.model)).stem().string();
    so.http_threads = a.max_queue + 8;
    so.heartbeat_ms = a.heartbeat_ms;
    so.defaults.task = task;
    so.defaults.dialect = a.dialect;
    runtime::make_controller(a.controller);  // a clear error for an unknown policy, before serving
    so.defaults.controller = a.controller;
    so.policies = policy_settings_for(model->path(), a.calibration);
    so.defaults.limits = eo.limits;
    so.defaults.max_prompt_tokens = per_seq;
    so.defaults.count_tokens = [model](const std::string & text) { return static_cast<int64_t>(model->tokenize(text, false, true).size()); };
    so.defaults.render_chat = [model](const std::vector<server::ChatMessage> & messages) {
        std::vector<std::pair<std::string, std::string>> m;
        for (const auto & x : messages) m.emplace_back(x.role, x.content);
        if (auto rendered = model->render_chat(m)) return *rendered;
        // No template: the messages' text as-is, one after another.
        std::string text;
        for (const auto & x : messages) text += (text.empty() ? "" : "\n") + x.content;
        return text;
    };
    server::Server server(engine, so);
    const int port = server.bind();
    if (a.backend.remote()) {
        std::string urls;
        for (const auto & u : a.backend.urls) urls += (urls.empty() ? "" : ", ") + u;
        std::printf("forkjoin serve: listening on http://%s:%d (model %s, task %s, %u sequences x %lld tokens on remote %s)\n",
                    a.host.c_str(), port, so.model_id.c_str(), task.c_str(), bo.n_seq_max, static_cast<long long>(per_seq), urls.c_str());
    } else {
        std::printf("forkjoin serve: listening on http://%s:%d (model %s, task %s, %u sequences x %lld cells, %s KV)\n", a.host.c_str(), port,
                    so.model_id.c_str(), task.c_str(), bo.n_seq_max, static_cast<long long>(per_seq),
                    bo.kv_layout == llama::KvLayout::shared ? "shared" : "per-sequence");
    }
    std::fflush(stdout);
    std::thread stopper([&] {
        int sig = 0;
        sigwait(&signals, &sig);
        if (sig != SIGUSR1) server.shutdown(a.shutdown_timeout_s);  // SIGUSR1: serve() ended on its own
    });
    server.serve();
    // Stopped by a signal, or the listener failed: wake the signal thread either way.
    pthread_kill(stopper.native_handle(), SIGUSR1);
    stopper.join();
    std::fprintf(stderr, "forkjoin serve: stopped\n");
    return 0;
}

}  // namespace forkjoin::app
