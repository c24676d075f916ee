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

#include "backends/backend.h"
#include "dialects/dialect.h"
#include "runtime/limits.h"
#include "runtime/request.h"
#include "runtime/thread.h"

#include <chrono>
#include <functional>
#include <map>
#include <utility>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace forkjoin::runtime {

class Runtime {
public:
    Runtime(Backend & backend, const dialects::Dialect & dialect, Limits limits = {});
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
    // The request and thread a live sequence belongs to; {nullptr, nullptr} for one it no longer tracks.
    std::pair<Request *, Thread *> owner_of(SeqId seq);
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
    void append_offsets(Thread & t, const std::vector<Token> & tokens, size_t offset) const;
    void feed_scripts();
    void on_text(Request & r, Thread & t, const std::string & piece);
    void on_spawn(Request & r, Thread & t, dialects::SpawnRequest spawn);
    void try_join(Request & r, Thread & parent);
    void end_thread(Request & r, Thread & t, ThreadState state, const std::string & reason);
    void end_request(Request & r, const std::string & reason);
    void check_limits(Request & r, Thread & t);
    void finalize(Request & r);
    double now_s(const Request & r) const;

    Backend & backend_;
    const dialects::Dialect & dialect_;
    Limits limits_;
    std::map<RequestId, std::unique_ptr<Request>> requests_;
    std::map<SeqId, std::pair<RequestId, int>> by_seq_;
    RequestId next_request_ = 0;
    int live_threads_ = 0;
    int64_t steps_ = 0, decoded_ = 0;
};

}  // namespace forkjoin::runtime
