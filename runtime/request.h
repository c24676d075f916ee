// What a request asks of the runtime and what it gets back. No llama.cpp here: the server, the CLI
// and the benchmarks read these whatever the backend.
#pragma once

#include "backends/backend.h"
#include "runtime/thread.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace forkjoin::runtime {

using RequestId = int;

// Next piece of a scripted thread's text, given the thread and its text so far; nullopt ends it.
using Script = std::function<std::optional<std::string>(const ThreadRecord & thread)>;

struct RequestOptions {
    Sampling sampling;  // each thread gets it with its own seed (seed + thread id)
    Script script;      // set: threads are scripted instead of sampled
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

}  // namespace forkjoin::runtime
