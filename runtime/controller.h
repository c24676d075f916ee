// The controller: every policy decision the runtime takes, in one place.
//
// The runtime (runtime/scheduler.h) enforces what a controller decides; it never decides itself.
// These questions reach the controller:
//   - a thread asked to spawn: run how many of its children (all, fewer: trimmed, none: refused), or
//     not yet (deferred: asked again each step)?
//   - a queued thread could start: admit it now, let it wait, or fail it?
//   - a thread or request reached a limit: fail the thread, cancel the request, or let it go on
//     with a larger budget?
//   - a child ended: do its running siblings still matter, or has it settled the parent's question?
//   - a spawn's children all ended: join them, or re-explore some first (validation)?
//   - a thread's confidence fell (DeepConf's group confidence): stop it now?
// and two observations: a thread's probe result (the context-rot monitor) and a thread's end.
// Each answer carries its reason; the runtime records it in the thread's trace (ThreadRecord::
// decisions), so a run can always say why its tree has the shape it has.
//
// DefaultController is today's fixed policy, from the request's Limits. The adaptive controller
// (width and depth from token usage, re-exploration) is meant to be another implementation.
//
// A request may bring its own controller (RequestOptions::controller, e.g. the named policies of
// runtime/policies.h); otherwise the runtime's decides.
//
// Threading: called on the runtime's loop thread only; an implementation needs no locking unless
// it shares state with other threads itself.
#pragma once

#include "dialects/dialect.h"
#include "runtime/limits.h"
#include "runtime/thread.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace forkjoin::runtime {

// What the request has spent and what the cache holds, for policies that adapt to usage.
struct Usage {
    int64_t generated = 0;           // tokens the request generated so far
    int64_t budget_left = 0;         // its total token budget less `generated`
    int children_finished = 0;       // children of any spawn that ended, and
    int64_t children_tokens = 0;     // the tokens they generated
    int64_t free_cells = 0;          // KV cells neither used nor claimed
    int64_t total_cells = 0;
    int64_t free_sequences = 0;      // backend sequences not open (every request's threads hold theirs)

    // Tokens a child is expected to cost: the mean of this request's finished children, else the prior
    // min(thread budget, kExpectedThreadTokensCap).
    int64_t child_tokens(const Limits & limits) const {
        if (children_finished > 0) return std::max<int64_t>(1, children_tokens / children_finished);
        return std::max<int64_t>(1, std::min<int64_t>(limits.thread_token_budget, kExpectedThreadTokensCap));
    }
    // Children the budget left pays for at `per_child` each, keeping one child's worth for the parent
    // to finish after the join.
    int64_t affordable_children(int64_t per_child) const { return std::max<int64_t>(0, (budget_left - per_child) / per_child); }
};

struct SpawnContext {
    const ThreadRecord & parent;
    int requested = 0;          // children the markup asked for
    const Limits & limits;      // the request's
    const std::vector<dialects::ChildRequest> & children;  // what each would start with
    Usage usage;
};

// A child run as a search of its own sub-problem instead of the one its parent asked for (the split
// policy): it starts from `prompt` (a fresh context in the terms of its sub-problem), may spawn one
// level deeper than the request's max_depth allows, and its final text is rewritten by `read_back`
// into what the parent's join expects from the child it asked for. Fresh children only (a forked
// child shares its parent's context and cannot start elsewhere).
struct NestedChild {
    int slot = 0;                                         // which child of the spawn
    std::string prompt;
    std::function<std::string(const std::string &)> read_back;  // its text, sub-problem -> parent's terms
};

struct SpawnDecision {
    SpawnDecision(int run_ = 0, std::string reason_ = {}, bool defer_ = false) : run(run_), reason(std::move(reason_)), defer(defer_) {}
    int run = 0;                // children to run, the first `run` of those asked for (0: refused)
    std::string reason;
    bool defer = false;         // not now: the parent waits and the controller is asked again next step
                                // (request limits, timeout and cancellation still end it, and the
                                // runtime's watchdog when nothing else can move: Runtime::kStallSeconds)
    std::vector<int> order;     // when set: the indices of the children to run, in the order they start
                                // (most promising first); `run` is then its size, the rest are not run
    std::vector<NestedChild> nested;  // children (of those run) that run as searches of their own; a
                                      // re-exploration of such a slot runs nested again
    int at_once = 0;            // when > 0: at most this many of the spawn's children are live (queued
                                // to start, running, or waiting on children of their own) at a time;
                                // the others are held, in start order, and each starts when a live
                                // sibling ends (it is on the dependency chain after that sibling). A
                                // held child is queued for events and stats (thread_queued, state
                                // queued). One a sibling's settling cancels (ChildEndDecision) never
                                // starts: it joins as not finished with no tokens. A re-exploration
                                // round's children (JoinDecision::rerun) are held the same way, in
                                // rerun order.
};

// A child ended; its siblings may still run.
struct ChildEndContext {
    const ThreadRecord & parent;
    const ThreadRecord & child;      // ended done; its text is final
    int siblings_running = 0;        // siblings of the same spawn not ended yet (queued, held or running)
};

struct ChildEndDecision {
    bool cancel_siblings = false;    // they end "cancelled" and join as not finished
    std::string reason;
};

// Every child of a spawn ended; the join is next.
struct JoinContext {
    const ThreadRecord & parent;
    const std::vector<const ThreadRecord *> & children;  // per slot of the spawn; null: never run
    int round = 0;                   // re-explorations of this spawn so far
    const Limits & limits;
    Usage usage;
};

struct JoinDecision {
    std::vector<int> rerun;          // slots to run (again): fresh threads from the same child request,
                                     // sampled at `temperature` with new seeds; the join waits for them
    float temperature = 0.7f;
    std::string reason;
};

// What admission knows about the room a queued thread would take.
struct AdmitContext {
    const ThreadRecord & thread;
    const Limits & limits;           // the request's
    int max_threads = 0;             // the runtime's, all requests together
    int running_threads = 0;         // all requests, waiting parents not counted
    int running_in_request = 0;
    int64_t prompt_estimate = 0;     // tokens its starting context may take (an upper bound)
    int64_t free_cells = 0;          // cells neither used nor claimed by pending input
    int64_t promised_cells = 0;      // growth still expected of the running threads
    int64_t headroom = 0;            // growth expected of this thread
    uint32_t free_sequences = 0;
    bool nothing_running = false;    // no thread decodes (parents waiting on children may hold cells):
                                     // admitting is the only way on
};

enum class AdmitAction { admit, wait, fail };
struct AdmitDecision {
    AdmitAction action = AdmitAction::admit;
    std::string reason;
};


struct LimitContext {
    const ThreadRecord & thread;     // the thread that hit it (the root for request limits)
    LimitKind kind;
    const Limits & limits;
    int64_t value = 0;               // what was reached (tokens), or elapsed milliseconds for timeout
};

enum class LimitAction { fail_thread, cancel_request, extend };
struct LimitDecision {
    LimitAction action = LimitAction::fail_thread;
    int64_t extend_by = 0;           // extend: tokens (or milliseconds) more before asking again
    std::string reason;
};

// A probe of a thread's attention (the context-rot monitor): a throwaway fork of the thread scores
// `text` after the thread's context. Asked once, when the thread starts; the first probe is at once
// (the baseline), then one every `every` generated tokens. With a `reference` context, the same text
// is also scored once after it on a fresh sequence: what the model gives the probe where nothing
// distracts it (the task says what a clean context is), against which rot is measured.
struct ProbePlan {
    int every = 0;                   // 0: never probe this thread
    std::string text;
    std::string reference;           // empty: none
};

struct ProbeResult {
    const ThreadRecord & thread;
    double nll = 0;                  // mean negative log-likelihood per probe token, now
    double baseline = 0;             // the same at the thread's start (or its last compaction)
    int64_t since_start = 0;         // generated tokens since that probe
    std::optional<double> reference; // the same after the reference context, when the plan has one and
                                     // the thread was not compacted (then its context is clean: its
                                     // baseline is what it is measured against)
};

// Compaction by a summarizer pass, for text the task cannot compact itself (free text): a fork of the
// thread (zero copy) is given `instruction` and writes a summary of at most `max_tokens` (it ends at
// its end of text or there); the thread waits meanwhile. Its context then becomes its starting
// context, `lead`, the summary and a line break, and it goes on from there. The summarizer is a
// thread of the request (label "summary", a child of the thread, in no spawn): its tokens count in
// the request's. When it fails or writes nothing, the thread goes on as it was (said in a decision).
// As any compaction, it rewrites the thread's context: a client streaming the thread has already seen
// the text the summary replaces; the thread's final text carries the lead and the summary instead.
struct SummaryPlan {
    std::string instruction;
    std::string lead;
    int max_tokens = 128;
};

// What the monitor does about a probe.
struct ProbeDecision {
    std::string reason;                     // non-empty: recorded as a "probe" decision
    // Replace the thread's context by this text and go on from it (compaction): the runtime keeps the
    // cells of the common prefix, prefills the rest, records what was dropped, and takes the next
    // probe as the new baseline. Refused (and said so) for a thread that has spawned (its joins would
    // be lost) and for a forked child (it shares its parent's context).
    std::optional<std::string> compact_to;
    // Or compact by a summary the model writes (SummaryPlan); refused as compact_to is.
    std::optional<SummaryPlan> summarize;
};

// The confidence signal (DeepConf): asked once, when a thread starts. top_k > 0 makes the backend
// report the k most likely tokens' log-probabilities with each sampled token (Sampling::top_logprobs),
// from which the runtime keeps ThreadRecord::confidence; on_confidence is asked after each token once
// `window` tokens filled the first group.
struct ConfidencePlan {
    int top_k = 0;                   // 0: not measured
    int window = 0;
};

struct ConfidenceContext {
    const ThreadRecord & thread;     // its confidence so far (lowest_group: of the full windows so far)
    double group = 0;                // the group confidence now: the last `window` tokens' mean
};

// The end reason of a thread the controller stopped for low confidence starts with this, then ": ".
inline constexpr std::string_view kLowConfidence = "low confidence";

struct ConfidenceDecision {
    bool stop = false;               // end the thread now: cancelled, "low confidence: <reason>"
    std::string reason;
};

class Controller {
public:
    virtual ~Controller() = default;
    virtual SpawnDecision on_spawn(const SpawnContext & c) = 0;
    virtual AdmitDecision on_admit(const AdmitContext & c) = 0;
    virtual LimitDecision on_limit(const LimitContext & c) = 0;
    // Default: siblings run on.
    virtual ChildEndDecision on_child_ended(const ChildEndContext &) { return {}; }
    // Default: join what there is.
    virtual JoinDecision on_join(const JoinContext &) { return {}; }
    // Default: no probes. `context` is the thread's starting context.
    virtual ProbePlan probe_plan(const ThreadRecord &, const std::string & /*context*/) { return {}; }
    // After each probe: a reason is recorded for the thread; a compaction is applied (the policy may
    // also act through its other answers, e.g. narrower spawns).
    virtual ProbeDecision on_probe(const ProbeResult &) { return {}; }
    // Default: no confidence measured.
    virtual ConfidencePlan confidence_plan(const ThreadRecord &) { return {}; }
    virtual ConfidenceDecision on_confidence(const ConfidenceContext &) { return {}; }
    // Any thread of the request ended (done, failed or cancelled); its record is final.
    virtual void on_thread_ended(const ThreadRecord &) {}
};

// The fixed policy: spawns run up to max_children below max_depth; a thread starts when the thread
// limits allow and the cache has room for its prompt and expected growth beside the running
// threads' (a root also needs sequences left for the children it may spawn); limits fail the thread
// (per-thread limits) or cancel the request (request limits), never extend.
class DefaultController final : public Controller {
public:
    SpawnDecision on_spawn(const SpawnContext & c) override;
    AdmitDecision on_admit(const AdmitContext & c) override;
    LimitDecision on_limit(const LimitContext & c) override;
};

}  // namespace forkjoin::runtime
