// Limits the runtime enforces whatever the model emits, and what happens at each.
#pragma once

#include <cstdint>

namespace forkjoin::runtime {

// What a thread is expected to generate before anything is measured: its token budget, capped here
// (admission reserves this much cache growth for a running thread; policies use it as their prior).
constexpr int64_t kExpectedThreadTokensCap = 256;

// Which limit a thread or request reached.
enum class LimitKind { thread_tokens, context_window, request_tokens, timeout };
const char * limit_kind_name(LimitKind kind);

struct Limits {
    int max_threads = 32;               // running threads at once (all requests); more wait in a queue.
                                        // Parents waiting on children do not count (they would deadlock)
    int max_threads_per_request = 16;   // running threads of one request; more wait in its queue
    int max_children = 8;               // per spawn: children past this are not run and join as "not run"
    int max_depth = -1;                 // a thread at this depth may not spawn: nothing runs (APR joins the spawn
                                        // at once, the forked dialects decode the block in line, as their
                                        // engines do); -1: the dialect's own (Dialect::default_max_depth)
    int thread_token_budget = 2048;     // generated tokens per thread: past it the thread fails ("token budget")
    int64_t total_token_budget = 1000000;  // generated tokens per request: past it the request is cancelled
    int max_context = 0;                // tokens in one thread's context (0: the backend's cache): past it the thread fails
    double timeout_s = 0;               // wall clock per request (0: none): past it the request is cancelled
};

}  // namespace forkjoin::runtime
