// The runtime: a tree of reasoning threads per request, advanced by the only loop there is.
//
// Each iteration admits queued threads (as the limits and the backend's free sequences allow),
// runs one backend step for every runnable thread of every request (continuous batching), feeds
// each sampled token's text to its thread's dialect parser, and applies what follows: a spawn
// (children queued with the prompts the dialect built; the parent waits), an end of text, a
// limit hit, a join (when every child of a spawn has ended, the dialect's join text replaces the
// spawn block; the parent keeps the cache cells of everything before the block and prefills only
// the join text). A parent waiting on children is not runnable; nothing blocks anything else.
//
// Threads are admitted only when the KV cache has room for them (see cells_for), so a short cache
// makes threads wait their turn. Children are fresh threads (APR: own prompt, text join) or forked threads (Multiverse: they share
// the parent's cells up to the spawn point and are spliced back in order, no recompute). A full KV cache makes threads wait; if no thread at all can
// advance, the youngest blocked thread fails ("kv cache full") so the others can.
//
// Scripted requests: instead of sampling, each thread's text comes from a script (one piece per
// iteration, decoded by the real backend in the same batch). Tests use it to drive the real runtime
// with adversarial streams (endless spawns, endless nesting, text that never stops).
//
// Not thread-safe: one thread drives the runtime.
#pragma once

#include "backends/llama/backend.h"
#include "dialects/dialect.h"
#include "runtime/limits.h"
#include "runtime/thread.h"

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace forkjoin::runtime {

using RequestId = int;

// Next piece of a scripted thread's text, given the thread and its text so far; nullopt ends it.
using Script = std::function<std::optional<std::string>(const ThreadRecord & thread)>;

struct RequestOptions {
    llama::Sampling sampling;  // each thread gets it with its own seed (seed + thread id)
    Script script;             // set: threads are scripted instead of sampled
};

struct Metrics {
    int64_t total_tokens = 0;       // decoded for the request: prompts + generated + inserted, each once
    int64_t generated_tokens = 0;
    int64_t sequential_tokens = 0;  // generated tokens on the longest dependency chain
    int64_t max_context_tokens = 0; // longest context of any thread
    int64_t decode_steps = 0;       // backend steps while the request was live
    double mean_batch = 0;          // tokens decoded per step, all requests together
    double wall_s = 0;
    int threads = 0;
};

struct RequestResult {
    bool finished = false;
    bool ok = false;               // the root ended with its end-of-text token
    std::string end_reason;        // when not ok
    std::string text;              // the root's final context
    std::vector<ThreadRecord> threads;  // index = thread id within the request; [0] is the root
    Metrics metrics;
};

class Runtime {
public:
    Runtime(llama::LlamaBackend & backend, const dialects::Dialect & dialect, Limits limits = {});
    ~Runtime();

    RequestId submit(const std::string & prompt, const RequestOptions & options = {});
    void cancel(RequestId request, const std::string & reason = "cancelled");
    // One iteration of the loop; false when there is nothing left to do.
    bool step();
    void run();
    bool finished(RequestId request) const;
    const RequestResult & result(RequestId request) const;
    // Drops a finished request's record (a long-running caller collects results, then forgets them).
    void forget(RequestId request);

private:
    struct Thread;
    struct Request;
    Thread & thread(int request, int id);
    void admit();
    // Admission control: a thread starts only when the cache has room for its prompt and its
    // expected growth (its token budget, capped) beside what running threads may still need.
    static constexpr int64_t kHeadroomCap = 256;
    int64_t headroom(const Thread & t) const;
    int running_threads(const Request * only = nullptr) const;  // not queued, not waiting on children
    bool cells_for(const Thread & t) const;
    bool admit_forked(Request & r, Thread & t);  // false: no free sequence yet
    std::unique_ptr<dialects::ThreadParser> make_parser(const Thread & t, std::string text) const;
    void release_seq(Request & r, Thread & t);
    void kv_join(Request & r, Thread & parent);
    void resume_after_join(Request & r, Thread & parent, const std::string & text);
    bool join_fits(Request & r, Thread & parent, size_t joined_length);  // false: parent failed
    // Records where each token ends in the thread's text, starting at byte `offset`.
    void append_offsets(Thread & t, const std::vector<llama::Token> & tokens, size_t offset) const;
    void feed_scripts();
    void on_text(Request & r, Thread & t, const std::string & piece);
    void on_spawn(Request & r, Thread & t, dialects::SpawnRequest spawn);
    void try_join(Request & r, Thread & parent);
    void end_thread(Request & r, Thread & t, ThreadState state, const std::string & reason);
    void end_request(Request & r, const std::string & reason);
    void check_limits(Request & r, Thread & t);
    void finalize(Request & r);
    double now_s(const Request & r) const;

    llama::LlamaBackend & backend_;
    const dialects::Dialect & dialect_;
    Limits limits_;
    std::map<RequestId, std::unique_ptr<Request>> requests_;
    std::map<llama::SeqId, std::pair<RequestId, int>> by_seq_;
    RequestId next_request_ = 0;
    int live_threads_ = 0;
    int64_t steps_ = 0, decoded_ = 0;
};

}  // namespace forkjoin::runtime
