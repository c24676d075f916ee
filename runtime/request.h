// What a request asks of the runtime and what it gets back. No llama.cpp here: the server, the CLI
// and the benchmarks read these whatever the backend.
#pragma once

#include "backends/backend.h"
#include "runtime/limits.h"
#include "runtime/thread.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace forkjoin::dialects {
class Dialect;
}

namespace forkjoin::runtime {
class Controller;
}

namespace forkjoin::runtime {

using RequestId = int;

// Next piece of a scripted thread's text, given the thread and its text so far; nullopt ends it.
// A piece stands for what the model would sample: it is tokenized with the model's special tokens
// (a tag the vocabulary has is one token) and read token by token, so markup stops the thread where
// it would stop a sampled one and the rest of the piece is dropped. Limits are checked after each
// token, as for a sampled thread.
using Script = std::function<std::optional<std::string>(const ThreadRecord & thread)>;

// What happens to a request's threads, as it happens (RequestOptions::events).
enum class EventKind {
    thread_queued,    // thread: id, parent, label (a spawn's children are queued before its `spawned`)
    thread_started,   // it holds a sequence and decodes (again, after a preemption)
    thread_preempted, // a full KV cache took its cells; text: why. It is queued again and resumes
                      // (thread_started) by recomputing its context: nothing it wrote is lost
    text,             // text: the piece the thread just generated
    spawned,          // thread spawned `children` (those the controller ran)
    joined,           // thread's children joined; text: what the join inserted into its context
    thread_ended,     // state, text: the reason (empty when done)
    finished,         // the request is over: its RequestResult is final
};
const char * event_kind_name(EventKind kind);

struct Event {
    EventKind kind;
    RequestId request = 0;
    int thread = 0;
    int parent = -1;
    std::string label{};
    std::string text{};
    ThreadState state = ThreadState::queued;
    std::vector<int> children{};
    double t_s = 0;  // since the request started
};

// Called on the runtime's loop thread, inside the step that caused the event: keep it short (copy
// the event, wake someone) and do not call back into the runtime from it.
using EventSink = std::function<void(const Event &)>;

struct RequestOptions {
    Sampling sampling;  // each thread gets it with its own seed (seed + thread id)
    Script script;      // set: threads are scripted instead of sampled
    // The markup its threads speak; null: the runtime's default dialect. Shared so a caller may
    // drop its copy while the request runs.
    std::shared_ptr<const dialects::Dialect> dialect;
    std::optional<Limits> limits;  // null: the runtime's; max_threads is always the runtime's
    std::shared_ptr<Controller> controller;  // null: the runtime's
    EventSink events;
};

struct Metrics {
    int64_t total_tokens = 0;       // decoded by the backend for the request (prompts, generated, inserted;
                                    // a token decoded twice counts twice)
    int64_t prompt_tokens = 0;      // the root's starting context
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
    std::optional<LimitKind> limit;  // when the root (or the request) ended at a limit
    std::string text;              // the root's final context
    std::vector<ThreadRecord> threads;  // index = thread id within the request; [0] is the root
    Metrics metrics;
};

// OpenAI's finish_reason for a request's root: "stop" (it ended, or failed otherwise), "length" (a
// token or context limit), "timeout".
const char * finish_reason(const RequestResult & result);

}  // namespace forkjoin::runtime
