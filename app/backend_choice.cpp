#include "app/backend_choice.h"

#include "app/model_file.h"
#include "base/error.h"

#include <cstdio>

namespace forkjoin::app {

void add_backend_options(CLI::App & cmd, BackendArgs & a, const std::string & api_key_flag) {
    cmd.add_option("--backend", a.backend, "llama (in process) or remote (OpenAI-compatible servers named by --url)")
        ->capture_default_str();
    cmd.add_option("--url", a.urls, "remote: a server's base URL, http://host:port (repeat for replicas)");
    cmd.add_option(api_key_flag, a.api_key, "remote: the servers' API key (sent as Authorization: Bearer)");
    cmd.add_option("--remote-parallel", a.parallel, "remote: completion streams in flight at once, all replicas together")
        ->capture_default_str();
    cmd.add_option("--routing", a.routing, "remote: cache-aware (the replica holding the prompt's prefix) or round-robin")
        ->capture_default_str();
    cmd.add_option("--remote-read-timeout", a.read_timeout_s, "remote: seconds of silence after which a stream counts as stalled")
        ->capture_default_str();
    cmd.add_option("--served-model", a.served_model, "remote: the model name sent to the servers (default: the one they list)");
}

std::shared_ptr<const llama::Model> load_model_for(const BackendArgs & args, const std::string & model_arg) {
    if (args.backend != "llama" && args.backend != "remote") {
        throw Error(ErrorCode::invalid_argument, "--backend: llama or remote, got '" + args.backend + "'");
    }
    return load_model(model_arg, /*vocab_only=*/args.remote());
}

std::unique_ptr<Backend> make_backend(const BackendArgs & args, const std::shared_ptr<const llama::Model> & model,
                                      const llama::BackendOptions & in_process) {
    if (!args.remote()) {
        if (!args.urls.empty()) throw Error(ErrorCode::invalid_argument, "--url needs --backend remote");
        return std::make_unique<llama::LlamaBackend>(model, in_process);
    }
    if (args.urls.empty()) throw Error(ErrorCode::invalid_argument, "--backend remote needs at least one --url");
    remote::RemoteOptions o;
    o.urls = args.urls;
    o.api_key = args.api_key;
    o.model = args.served_model;
    o.parallel = args.parallel;
    o.max_sequences = in_process.n_seq_max;
    o.context = static_cast<int32_t>(in_process.n_ctx / std::max<uint32_t>(1, in_process.n_seq_max));
    if (args.routing == "cache-aware") o.routing = remote::Routing::cache_aware;
    else if (args.routing == "round-robin") o.routing = remote::Routing::round_robin;
    else throw Error(ErrorCode::invalid_argument, "--routing: cache-aware or round-robin, got '" + args.routing + "'");
    o.timeouts.read_s = args.read_timeout_s;
    const auto & eog = model->end_of_generation_tokens();
    return std::make_unique<remote::RemoteBackend>(model, eog.empty() ? model->eos() : eog.front(), o);
}

namespace {
std::string cache_line(const char * kind, const remote::PromptCacheStats & c) {
    char buf[200];
    if (c.reported == 0) {
        std::snprintf(buf, sizeof buf, "%s %lld (no cache report)", kind, static_cast<long long>(c.requests));
    } else {
        std::snprintf(buf, sizeof buf, "%s %lld (prefix cache %.1f%% of %lld prompt tokens)", kind, static_cast<long long>(c.requests),
                      100.0 * static_cast<double>(c.cached_tokens) / static_cast<double>(std::max<int64_t>(1, c.prompt_tokens)),
                      static_cast<long long>(c.prompt_tokens));
    }
    return buf;
}
}  // namespace

std::string remote_report(const remote::RemoteStats & s) {
    std::string out = "remote: " + std::to_string(s.requests) + " requests, " + std::to_string(s.retries) + " retries, " +
                      std::to_string(s.failed_sequences) + " sequences failed, " + std::to_string(s.cancelled_streams) +
                      " streams cut at spawn points or limits; by kind: " + cache_line("first", s.first) + ", " +
                      cache_line("forked", s.forked) + ", " + cache_line("resumed", s.resumed);
    for (const auto & r : s.replicas) {
        out += "\n  " + r.url + ": " + std::to_string(r.requests) + " requests, " + std::to_string(r.failures) + " failures" +
               (r.up ? "" : " (out: " + r.last_error + ")");
    }
    return out;
}

}  // namespace forkjoin::app
