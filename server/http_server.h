// `forkjoin serve`: the engine behind an OpenAI-compatible HTTP API (cpp-httplib).
//
// Routes: POST /v1/completions, POST /v1/chat/completions (server/openai_api.h), GET /v1/models,
// GET /health, GET /metrics (Prometheus text). Every request becomes one job on the shared engine, so
// the threads of all clients ride the same decode batches.
//
// Answers: non-streaming requests get the OpenAI object once the job ends (the connection is kept
// alive meanwhile with JSON whitespace, so a client that goes away is noticed and its job
// cancelled); streaming requests get SSE chunks of the answering thread's text as it is generated,
// the tree's events (spawned, joined, ended) in each chunk's `forkjoin` field, a last chunk with
// finish_reason and the tree, the usage chunk when asked, and `data: [DONE]`. A client that
// disconnects cancels its job: its sequences are freed within one heartbeat (ServerOptions::heartbeat_ms;
// while no data is due, a streaming answer gets an SSE comment and a non-streaming one a space).
//
// Errors: malformed or wrong requests 400 with the field named; no or a wrong bearer token with
// --api-key: 401 (/health stays open, as llama-server and vLLM keep it); a body past the size limit:
// 413; the engine full: 503 with Retry-After; unknown routes: 404. All as OpenAI error objects.
//
// Threading: an HTTP thread pool serves connections; the engine's loop decodes. stop() may be called
// from any thread (a signal handler's thread included through a self-pipe in the CLI).
#pragma once

#include "runtime/engine.h"
#include "runtime/policies.h"
#include "server/openai_api.h"
#include "tasks/countdown/prompts.h"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace httplib {
class Server;
class Request;
class Response;
}

namespace forkjoin::server {

struct ServerOptions {
    std::string host = "127.0.0.1";
    int port = 8080;                 // 0: an ephemeral port (bind() returns it)
    std::string api_key;             // empty: no authentication
    std::string model_id = "forkjoin";
    size_t max_body_bytes = 8u << 20;
    int http_threads = 0;            // 0: the engine's max_jobs + 8 (each open stream holds one)
    int heartbeat_ms = 250;          // > 0: the longest silence on an open answer (see above)
    ApiDefaults defaults;
    runtime::PolicySettings policies;  // the served model's (runtime/calibration.h), for every request
    countdown::PromptStyle countdown_style = countdown::PromptStyle::forkjoin;
    std::function<void(const std::string &)> log;  // one line per request; empty: stderr
};

class Server {
public:
    Server(runtime::Engine & engine, ServerOptions options);
    ~Server();
    Server(const Server &) = delete;
    Server & operator=(const Server &) = delete;

    // Binds host:port; returns the port. Throws Error(io) when it cannot.
    int bind();
    // Serves until stop(). bind() first.
    void serve();
    void stop();
    // Graceful stop: new requests get 503 (Retry-After, Connection: close); requests in flight get
    // up to deadline_s to finish, then are cancelled (their clients get finish_reason "cancelled");
    // then stop(). Blocks until then; call it from any thread but serve()'s.
    void shutdown(double deadline_s);

private:
    struct Exchange;
    void handle_completion(const httplib::Request & http, httplib::Response & res, bool chat);
    void handle_metrics(httplib::Response & res);
    void log_line(const std::string & line);
    void log_request(const std::string & id, const struct ApiRequest & req, const runtime::JobResult * result, const std::string & outcome);
    std::shared_ptr<runtime::Program> make_program(const struct ApiRequest & req) const;

    runtime::Engine & engine_;
    ServerOptions options_;
    std::unique_ptr<httplib::Server> http_;
    int port_ = -1;
    std::atomic<int64_t> next_id_{1};
    std::mutex counters_mu_;
    std::map<std::string, int64_t> responses_;  // "status" -> count, for /metrics
    std::atomic<int64_t> disconnects_{0};
    std::atomic<int64_t> streams_open_{0};
    std::atomic<bool> draining_{false};
};

}  // namespace forkjoin::server
