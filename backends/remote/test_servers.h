// Servers for the remote backend's tests, on ephemeral 127.0.0.1 ports, stopped whatever the outcome.
//
// LlamaServer: the real llama-server (build/bin/llama-server, built by scripts/setup.sh from the pinned
// llama.cpp) on a GGUF model, continuous batching on, `slots` slots sharing one KV pool of `context`
// cells per slot. kill() is SIGKILL, for the tests of a server dying mid-stream.
//
// FakeCompletionServer: a tiny HTTP server that stands for a *broken* OpenAI-compatible server (it
// never stands in for llama-server): it lists a model and answers /v1/completions with whatever the
// test's handler does (HTTP errors, Retry-After, garbage, stalls, or a well-formed stream of tokens).
#pragma once

#include "backends/backend.h"

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <sys/types.h>
#include <thread>
#include <vector>

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace forkjoin::remote::testing {

// A port that was free a moment ago (bound to 0, read, closed).
int free_port();

class LlamaServer {
public:
    // Throws std::runtime_error with the server's log when it does not answer /health within 60 s.
    LlamaServer(const std::string & binary, const std::string & model, int slots, int context_per_slot, int cpu_threads = 1,
                const std::vector<std::string> & extra_args = {});
    ~LlamaServer();
    LlamaServer(const LlamaServer &) = delete;
    LlamaServer & operator=(const LlamaServer &) = delete;

    const std::string & url() const { return url_; }
    void kill();
    // Kills it if it runs, and starts it again at the same address (a replica that comes back).
    void restart();
    std::string log() const;

private:
    void start();  // spawns args_ and waits for /health (throws as the constructor does)

    pid_t pid_ = -1;
    std::string url_, log_path_;
    std::vector<std::string> args_;
};

class FakeCompletionServer {
public:
    using Handler = std::function<void(const httplib::Request &, httplib::Response &)>;
    explicit FakeCompletionServer(Handler completions);
    ~FakeCompletionServer();
    const std::string & url() const { return url_; }
    int completions_served() const { return served_; }

    // A well-formed llama-server-like event stream: one chunk per token (with its id), then a final
    // chunk with finish_reason, then [DONE].
    static std::string stream_of(const Vocabulary & vocab, const std::vector<Token> & tokens, const std::string & finish_reason);

private:
    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
    std::string url_;
    std::atomic<int> served_{0};
};

}  // namespace forkjoin::remote::testing
