// The runtime's private state (runtime/scheduler.h's Runtime::Thread and Runtime::Request), shared by
// the files that implement it: scheduler.cpp (the loop, ends, limits, results), admission.cpp (which
// queued thread starts), spawns_and_joins.cpp (spawns, re-exploration, joins), probes.cpp (the
// context-rot monitor), confidence.cpp (DeepConf's signal). Not a public header: nothing outside runtime/ includes it.
#pragma once

#include "runtime/scheduler.h"

#include <chrono>
#include <deque>

namespace forkjoin::runtime {

inline bool ended(ThreadState s) { return thread_ended(s); }
using Clock = std::chrono::steady_clock;

struct Runtime::Thread {
    ThreadRecord rec;
    std::string prompt;
    std::unique_ptr<dialects::ThreadParser> parser;
    SeqId seq = -1;
    std::vector<size_t> token_end;  // byte offset in the text after each token of the sequence
    std::optional<dialects::SpawnRequest> spawn;
    std::vector<int> spawn_slots;   // child id per requested child; -1: not run (limits)
    dialects::ChildRequest request; // how its parent asked for it (children only)
    std::vector<std::optional<NestedChild>> nested_slots;  // per child of its current spawn: run nested
    std::function<std::string(const std::string &)> read_back;  // a nested child: its text -> its parent's terms
    size_t own_from = 0;            // forked child: where its own text starts
    size_t parent_tokens = 0;       // forked child: the parent's tokens when forked
    bool awaiting_splice = false;   // forked child that ended: its cells wait for the KV join
    bool kv_joined = false;         // spliced children's cells in: its positions are not 0..n-1 any more
    std::vector<Token> resume;      // preempted: its whole context, prefilled again when it is admitted
    uint64_t admitted = 0;          // when it first started, in the runtime's admission order (all requests)
    int64_t decoded_seen = 0;       // the sequence's decoded length when last counted
    std::optional<Sampling> sampling;  // its own (a re-explored child); else the request's, seeded by id
    ProbePlan probe;                   // the context-rot monitor's plan for it
    std::vector<Token> probe_tokens;
    int64_t next_probe_at = -1;        // generated tokens at the next probe; -1: none
    size_t baseline_probe = 0;         // which of rec.probes is the baseline (the first after a compaction)
    ConfidencePlan confidence;         // DeepConf's signal: the controller's plan for it, and
    std::deque<double> confidence_window;  // the token confidences of its current group
    double confidence_sum = 0;
    int summarizer = -1;            // the thread writing its summary (SummaryPlan) while it waits; -1: none
    int summary_of = -1;            // a summarizer: the thread it summarizes
    SummaryPlan summary;            // a summarizer: its plan
    int64_t token_budget = 0;       // its own budget (a summarizer's max_tokens); 0: the request's
    int join_rounds = 0;            // re-explorations of its current spawn (JoinDecision)
    int at_once = 0;                // its current spawn's SpawnDecision::at_once; 0: no cap
    std::deque<int> held;           // children of its current spawn held back by at_once, in start order
    int started_after = -1;         // a held child: the sibling whose end let it start (it is on the
                                    // dependency chain after it); -1: none
    bool spawn_deferred = false;    // its spawn waits for the controller's answer (SpawnDecision::defer)
    std::string defer_reason;       // the controller's, the last time it deferred
    int64_t deferrals = 0;
    int64_t waits = 0;              // admission: steps it was told to wait
    std::string wait_reason;        // admission: why, the last time
};

struct Runtime::Request {
    RequestId id;
    RequestOptions options;
    const dialects::Dialect * dialect = nullptr;  // options.dialect, or the runtime's default
    Controller * controller = nullptr;            // options.controller, or the runtime's
    Limits limits;
    int children_finished = 0;                    // for Usage: children that ended, and their tokens
    int64_t children_tokens = 0;
    std::vector<std::unique_ptr<Thread>> threads;
    std::deque<int> queue;
    int live = 0;
    int64_t generated = 0;
    Clock::time_point start = Clock::now();
    int64_t steps_at_start = 0, decoded_at_start = 0;
    bool root_ended = false;
    RequestResult result;
};

}  // namespace forkjoin::runtime
