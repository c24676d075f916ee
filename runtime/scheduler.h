// The runtime: a tree of reasoning threads per request, advanced by the only loop there is.
//
// Each iteration admits queued threads (as the controller allows and the backend's free sequences
// permit), runs one backend step for every runnable thread of every request (continuous batching),
// feeds each sampled token's text to its thread's dialect parser, and applies what follows: a spawn
// (the controller decides how many children run; they are queued with the prompts the dialect built;
// the parent waits), an end of text, a limit hit (the controller decides), a join (when every child
// of a spawn has ended, the dialect's join text replaces the spawn block; the parent keeps the cache
// cells of everything before the block and prefills only the join text). A parent waiting on
// children is not runnable; nothing blocks anything else.
//
// Requests are independent: each has its own dialect, limits, sampling and event sink
// (RequestOptions); the runtime's limits bound them all together (max_threads). Children are fresh
// threads (APR: own prompt, text join) or forked threads (Multiverse: they share the parent's cells
// up to the spawn point and are spliced back in order, no recompute; a backend without splice
// re-reads the children's tokens). A full KV cache makes threads wait; if no thread at all can
// advance, a blocked thread gives its cells back so the others can: the youngest that can be is
// preempted (queued again; it resumes by recomputing its context when there is room): a running
// thread whose context can be rebuilt from its tokens, when another blocked thread gains from it.
// Otherwise the youngest blocked thread fails ("kv cache full"): a forked child, a thread with
// spliced children, a parent waiting on its children, the only thread that could run.
//
// The context-rot monitor (runtime/probes.cpp) may compact a thread: its context is replaced by a
// shorter one the task gives, or by its prompt and a summary a forked summarizer thread writes while
// it waits (ProbeDecision::summarize).
//
// The watchdog (kStallSeconds): a deadlock the rules above do not prevent (a controller that defers a
// spawn forever, a thread waiting for room no one will free) fails its requests with what they were
// waiting for, instead of the loop spinning forever.
//
// Containment: a decode that fails for some sequences (StepResult::blocked, decode_failed) fails
// their threads only; a backend step that throws fails the threads that had input in it, never the
// runtime or the other requests. Nothing already decoded for others is lost.
//
// Scripted requests: instead of sampling, each thread's text comes from a script (one piece per
// iteration, decoded by the real backend in the same batch). Tests use it to drive the real runtime
// with adversarial streams (endless spawns, endless nesting, text that never stops).
//
// Not thread-safe: one thread drives the runtime (runtime/engine.h is the thread-safe front).
#pragma once

#include "backends/backend.h"
#include "runtime/controller.h"
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

// What the runtime holds right now (the server's /metrics).
struct RuntimeStats {
    int requests = 0;           // not finished
    int requests_queued = 0;    // not finished, and none of their threads has started yet
    int threads_running = 0;    // holding a sequence and decoding
    int threads_waiting = 0;    // parents waiting on children
    int threads_queued = 0;
    int64_t decode_steps = 0;   // since the runtime was made
    int64_t decoded_tokens = 0;
    int64_t failed_steps = 0;   // backend steps that threw (their threads failed)
};

class Runtime {
public:
    // The watchdog: when no step makes progress (nothing decoded or pending in the backend, nothing
    // admitted, ended, joined or decided) for this long, the requests still going fail ("stalled:
    // ..."), instead of the loop spinning on a deadlock forever. Steps without progress sleep 1 ms
    // meanwhile. A submit or a cancel restarts the clock.
    static constexpr double kStallSeconds = 2.0;
    // `dialect` is the default for requests that name none; it must outlive the runtime.
    Runtime(Backend & backend, const dialects::Dialect & dialect, Limits limits = {});
    // Default dialect: plain (no markup).
    explicit Runtime(Backend & backend, Limits limits = {});
    ~Runtime();

    // The policy (runtime/controller.h); DefaultController unless set. Not while requests run.
    void set_controller(std::shared_ptr<Controller> controller);

    RequestId submit(const std::string & prompt, const RequestOptions & options = {});
    void cancel(RequestId request, const std::string & reason = "cancelled");
    // One iteration of the loop; false when there is nothing left to do.
    bool step();
    void run();
    bool finished(RequestId request) const;
    const RequestResult & result(RequestId request) const;
    // Drops a finished request's record (a long-running caller collects results, then forgets them).
    void forget(RequestId request);
    RuntimeStats stats() const;

private:
    struct Thread;
    struct Request;
    // The request and thread a live sequence belongs to; {nullptr, nullptr} for one it no longer tracks.
    std::pair<Request *, Thread *> owner_of(SeqId seq);
    void admit();
    // Growth still expected of a running thread (its token budget, capped: kExpectedThreadTokensCap).
    int64_t headroom(const Request & r, const Thread & t) const;
    int running_threads(const Request * only = nullptr) const;  // not queued, not waiting on children
    AdmitDecision ask_admit(const Request & r, const Thread & t) const;
    bool admit_forked(Request & r, Thread & t);  // false: no free sequence yet
    bool admit_resumed(Request & r, Thread & t);  // a preempted thread; false: no free sequence yet
    // resumed: a preempted thread back with its context (its start, plans and records kept).
    void started(Request & r, Thread & t, bool resumed = false);
    std::unique_ptr<dialects::ThreadParser> make_parser(const Request & r, const Thread & t, std::string text) const;
    void release_seq(Request & r, Thread & t);
    // A full cache's victim: its cells are freed and it is queued again with its whole context, to
    // be prefilled when admitted (nothing it generated is lost; re-decoded tokens count again).
    bool preemptible(const Thread & t) const;
    void preempt(Request & r, Thread & t, const std::string & why);
    void kv_join(Request & r, Thread & parent);
    void resume_after_join(Request & r, Thread & parent, const std::string & text, const std::string & inserted);
    bool join_fits(Request & r, Thread & parent, size_t joined_length);  // false: parent failed
    // The thread's context becomes `text`, which agrees with the present one up to byte `from`: the
    // cells of every token that ends by `from` are kept, the rest is tokenized and prefilled (a text
    // join, a dialect's repair). False: the thread failed (`what` names the step in its reason).
    bool retext(Request & r, Thread & t, size_t from, const std::string & text, const char * what);
    // Records where each token ends in the thread's text, starting at byte `offset`.
    void append_offsets(Thread & t, const std::vector<Token> & tokens, size_t offset) const;
    void feed_scripts();
    // `ahead`: tokens already appended to t's sequence after this one (the rest of a scripted piece);
    // limits and the context length are measured without them, so a script stops where a sampled
    // thread would. Returns the markup event the piece caused, if any.
    std::optional<dialects::EventKind> on_text(Request & r, Thread & t, const std::string & piece, int32_t ahead = 0);
    void on_spawn(Request & r, Thread & t, dialects::SpawnRequest spawn);
    // Asks the controller about t's pending spawn; queues the children it runs, or leaves it deferred.
    void decide_spawn(Request & r, Thread & t);
    // Queues a child of t for slot `slot` of its spawn (or holds it back, SpawnDecision::at_once); its id.
    int add_child(Request & r, Thread & t, size_t slot);
    // Queues t's held children while fewer than its at_once are live; `ended_child` is the one whose
    // end made room.
    void start_held(Request & r, Thread & t, int ended_child);
    // t's children of its current spawn queued to start or running; held ones are not.
    int live_children(const Request & r, const Thread & t) const;
    // All children ended: true when the controller had some run again (the join waits for them).
    bool reexplore(Request & r, Thread & parent);
    Sampling sampling_of(const Request & r, const Thread & t) const;
    Usage usage_of(const Request & r) const;
    void try_join(Request & r, Thread & parent);
    void end_thread(Request & r, Thread & t, ThreadState state, const std::string & reason);
    void end_request(Request & r, const std::string & reason);
    // Asks the controller; true when the thread (or its request) was ended.
    bool hit_limit(Request & r, Thread & t, LimitKind kind, int64_t value);
    void check_limits(Request & r, Thread & t, int32_t ahead = 0);
    void check_request_limits(Request & r);
    // Adds what the backend decoded for each live thread since the last look.
    void count_decoded();
    void backend_step();
    void finalize(Request & r);
    // The watchdog: every request still going fails, saying what its threads were waiting for.
    void fail_stalled();
    void decide(Request & r, Thread & t, const char * kind, std::string reason);
    Controller & controller_of(const Request & r) const;
    // The context-rot monitor: probes t when it reached its next probe point (runtime/controller.h).
    void probe(Request & r, Thread & t);
    // The probe's NLL after the plan's reference context, on a fresh sequence (nullopt: none, or no room).
    std::optional<double> reference_nll(Thread & t);
    // Replaces t's context by `text` (ProbeDecision::compact_to).
    void compact(Request & r, Thread & t, const std::string & text);
    // Why t's context cannot be compacted (recorded as a "compact" decision), or empty when it can.
    std::string compaction_refused(const Thread & t) const;
    // Queues a summarizer of t (ProbeDecision::summarize); t waits for it.
    void summarize(Request & r, Thread & t, const SummaryPlan & plan);
    // t's summarizer ended: compacts t to its summary, or leaves it as it was; t runs again.
    void finish_summary(Request & r, Thread & t);
    // A thread's token budget: its own, else the request's.
    int64_t token_budget(const Request & r, const Thread & t) const;
    // DeepConf's signal: the controller's plan for t, and the sampling t starts with (top-k log-probs
    // when the plan measures confidence).
    Sampling start_sampling(Request & r, Thread & t);
    // The sampling t decodes with under its plan (a preempted thread resumes with it).
    Sampling thread_sampling(const Request & r, const Thread & t) const;
    // One sampled token's confidence into t's record; true when a full group is there to ask about.
    bool observe_confidence(Request & r, Thread & t, const SampledToken & s);
    // The controller on t's group confidence (after the token was read): may end t.
    void ask_confidence(Request & r, Thread & t);
    // At t's end: lowest_group for a thread shorter than one window.
    void finish_confidence(Thread & t);
    void emit(Request & r, Event e);
    double now_s(const Request & r) const;

    Backend & backend_;
    std::shared_ptr<const dialects::Dialect> owned_dialect_;
    const dialects::Dialect * default_dialect_;
    Limits limits_;
    std::shared_ptr<Controller> controller_;
    std::map<RequestId, std::unique_ptr<Request>> requests_;
    std::map<SeqId, std::pair<RequestId, int>> by_seq_;
    RequestId next_request_ = 0;
    int live_threads_ = 0;
    uint64_t admissions_ = 0;  // threads started so far (Thread::admitted)
    int64_t steps_ = 0, decoded_ = 0, failed_steps_ = 0;
    uint64_t progress_ = 0;  // events and decisions so far: a step that adds none (and decodes nothing) made no progress
    std::optional<std::chrono::steady_clock::time_point> stalled_since_;  // the first of a run of steps without progress
};

}  // namespace forkjoin::runtime
