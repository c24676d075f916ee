// RemoteBackend: the backend seam over a fleet of OpenAI-compatible servers (llama-server, vLLM,
// SGLang). Every thread's tokens are produced by a remote engine; the runtime, dialects, strategies,
// controller and server above are the same as in process.
//
// Model: a sequence is the tokens of one thread, held here. A generating sequence is served by one
// streamed `POST /v1/completions` whose prompt is all of its tokens (as ids) and whose max_tokens is
// what is left of its context; step() hands back at most one arrived token per sequence (so the
// runtime sees a spawn point before anything after it), appended to the sequence as in process.
// Anything that changes a sequence other than taking its stream's next token (append, truncate,
// set_generating(false), close) cancels the stream (the socket is closed: the servers abort the
// generation); if the sequence generates again, a new request re-sends its text so far, and the
// server's prefix cache (llama-server cache_prompt, vLLM automatic prefix caching, SGLang's radix
// cache) makes that cheap. fork() copies the parent's tokens (a new request later, same prefix); there
// is no KV splice (joins are text joins) and no score(). A stream that ends at the model's end of
// generation yields the vocabulary's end-of-generation token, as sampling it in process would.
//
// Streams run on a pool of `parallel` worker threads (the connection pool), and a canceller thread
// closes cancelled streams' sockets: step() and the calls that cancel never wait on the network, but
// step() waits up to `step_wait_s` for a token when none is ready.
//
// Faults: a request that fails retryably (connection refused or lost mid-stream, a stall past the read
// timeout, HTTP 429 or 5xx) is re-sent with the sequence's text so far: to another replica when the
// failure was the connection's (the replica is taken out for a while), after a backoff (doubling from
// backoff_s, or the server's Retry-After); after max_attempts tries the sequence is reported in
// StepResult::blocked with ErrorCode::remote_failed and a message naming the URL and the cause
// ("remote: connection lost ..."), and the runtime fails only that thread. A response that is not a
// completion stream (malformed SSE or JSON, a 4xx other than 429) fails the sequence at once. The tries
// count anew whenever the runtime changes the sequence (append, truncate, set_generating). A stream
// that ends with finish_reason "abort" (vLLM, SGLang) is retried like a 5xx.
// The constructor checks every URL (GET /v1/models) and throws Error(remote_failed) naming the first
// one that does not answer, within connect_s.
//
// Vocabulary: the model's tokenizer, loaded here from its GGUF (vocabulary only), so contexts are the
// same tokens as in process. Text chunks whose ids the server did not report are tokenized with it.
//
// Threading: driven by one thread (the runtime's loop), like every backend; the workers are internal.
#pragma once

#include "backends/backend.h"
#include "backends/remote/http_stream.h"
#include "backends/remote/router.h"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace forkjoin::remote {

struct RemoteOptions {
    std::vector<std::string> urls;  // one per replica
    std::string api_key;            // sent as Authorization: Bearer
    std::string model;              // the "model" field; empty: the first id the first server lists
    int32_t parallel = 16;          // streams in flight at once, all replicas together
    uint32_t max_sequences = 256;
    int32_t context = 4096;         // tokens per sequence (prompt + generated), as the servers' slots allow
    Routing routing = Routing::cache_aware;
    HttpTimeouts timeouts;
    int32_t max_attempts = 4;       // tries of one request, the first included
    double backoff_s = 0.25;        // first retry's delay; doubled per retry, at most 8 s
    double step_wait_s = 0.05;      // longest a step() with nothing ready waits for a token
};

// Prompt tokens and what the servers' prefix caches covered, by kind of request.
struct PromptCacheStats {
    int64_t requests = 0;
    int64_t reported = 0;  // requests whose response reported cached tokens
    int64_t prompt_tokens = 0;
    int64_t cached_tokens = 0;
};

struct RemoteStats {
    int64_t requests = 0;            // completions sent (retries included)
    int64_t retries = 0;
    int64_t failed_sequences = 0;    // given up after max_attempts, or a non-retryable answer
    int64_t cancelled_streams = 0;   // cut by the runtime (spawn point, limit, close)
    int64_t retokenized_chunks = 0;  // chunks whose ids the server did not report
    PromptCacheStats first;          // a fresh sequence's first request
    PromptCacheStats forked;         // a forked child's first request
    PromptCacheStats resumed;        // a sequence's later requests (after a join, a retry)
    std::vector<ReplicaStats> replicas;
};

class RemoteBackend final : public Backend {
public:
    RemoteBackend(std::shared_ptr<const Vocabulary> vocabulary, Token end_of_generation, RemoteOptions options);
    ~RemoteBackend() override;
    RemoteBackend(const RemoteBackend &) = delete;
    RemoteBackend & operator=(const RemoteBackend &) = delete;

    BackendCapabilities capabilities() const override;
    const Vocabulary & vocabulary() const override { return *vocabulary_; }
    uint32_t max_sequences() const override { return options_.max_sequences; }

    SeqId open(std::span<const Token> prompt, const Sampling & sampling = {}, bool generating = true) override;
    SeqId fork(SeqId parent, const Sampling & sampling = {}, bool generating = true) override;
    void append(SeqId seq, std::span<const Token> tokens) override;
    void set_generating(SeqId seq, bool generating) override;
    void truncate(SeqId seq, int32_t n_keep) override;
    void close(SeqId seq) override;

    const StepResult & step() override;

    void splice(SeqId parent, std::span<const SeqId> children, JoinLayout layout = JoinLayout::consecutive,
                std::span<const int32_t> skip = {}) override;
    std::vector<float> score(SeqId seq, std::span<const Token> continuation) override;

    bool live(SeqId seq) const override;
    int32_t length(SeqId seq) const override;
    int32_t n_pending(SeqId seq) const override;
    const std::vector<Token> & tokens(SeqId seq) const override;
    bool has_pending() const override;
    KvUsage usage() const override;
    const DecodeStats & stats() const override { return stats_; }

    const RemoteOptions & options() const { return options_; }
    const std::string & model_id() const { return model_; }
    RemoteStats remote_stats() const;
    // The replica of the sequence's last request (-1: none yet). For tests and traces.
    int replica_of(SeqId seq) const;

private:
    struct Stream;
    enum class RequestKind { first, forked, resumed };
    struct Sequence {
        bool live = false;
        bool generating = true;
        Sampling sampling;
        std::vector<Token> tokens;
        int32_t n_pending = 0;      // the tail no request has carried yet
        int replica = -1;           // where its last request went
        bool forked = false;
        bool sent_before = false;   // a request has carried this sequence
        std::shared_ptr<Stream> stream;
        int32_t attempts = 0;       // failed tries of the current request
        std::chrono::steady_clock::time_point retry_at{};
        std::string failure;        // set once the sequence gave up: reported as blocked, once
        bool failure_reported = false;
    };

    Sequence & seq_ref(SeqId seq);
    const Sequence & seq_ref(SeqId seq) const;
    SeqId new_sequence();
    void check_tokens(std::span<const Token> tokens) const;  // throws invalid_argument for an id past the vocabulary
    void cancel_stream(Sequence & s);
    void start_stream(SeqId id, Sequence & s);
    void push_sampled(Sequence & s, Token token);
    void count_pending_decoded(Sequence & s);
    void canceller_loop();
    // Takes the stream's next token into the sequence, or handles its end; true when `out` got a token.
    bool take_from_stream(SeqId id, Sequence & s);
    void worker_loop();

    std::shared_ptr<const Vocabulary> vocabulary_;
    const Token end_of_generation_;
    RemoteOptions options_;
    std::string model_;
    ReplicaRouter router_;

    std::vector<Sequence> seqs_;
    std::vector<SeqId> free_ids_;
    StepResult result_;
    DecodeStats stats_;

    // Shared with the workers.
    mutable std::mutex mu_;
    std::condition_variable work_cv_;     // a stream to run, or shutting down
    std::condition_variable arrival_cv_;  // a stream produced a token or ended
    std::deque<std::shared_ptr<Stream>> queue_;
    std::condition_variable cancel_cv_;  // a stream's socket to close
    std::deque<std::shared_ptr<Stream>> to_cancel_;
    bool shutting_down_ = false;
    RemoteStats rstats_;
    std::vector<std::thread> workers_;
    std::thread canceller_;  // closes cancelled streams' sockets off the loop (that can wait on a connect)
};

}  // namespace forkjoin::remote
