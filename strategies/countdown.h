// Countdown through the runtime: each problem becomes one request, run as a strategy, and its
// answer is read from the root's final text and checked by the strict verifier.
//   sequential: one thread that never spawns (the baseline; spawns are refused by depth limit 0)
//   native:     the model decides through the apr dialect (fresh children, text join)
//   self-consistency: `samples` independent sequential threads per problem (sampled, seeds differ),
//               merged by the strict verifier: solved when any sample's answer verifies. Costs add
//               up (total tokens), the chain is the longest sample (sequential tokens).
#pragma once

#include "backends/llama/backend.h"
#include "runtime/scheduler.h"
#include "tasks/countdown/prompts.h"

#include <string>
#include <vector>

namespace forkjoin::strategies {

enum class CountdownStrategy { sequential, native, self_consistency };
CountdownStrategy parse_countdown_strategy(const std::string & name);  // throws invalid_argument

struct CountdownOptions {
    CountdownStrategy strategy = CountdownStrategy::native;
    countdown::PromptStyle style = countdown::PromptStyle::forkjoin;
    runtime::Limits limits;        // max_context is the per-thread context window
    Sampling sampling;      // greedy by default
    int concurrent_requests = 16;  // requests in flight at once
    int samples = 4;               // self-consistency: threads per problem
};

struct CountdownOutcome {
    countdown::Problem problem;
    bool solved = false;           // verified
    std::string reason;            // why not
    std::string expression;        // e.g. "(7+5)+(9+3)" when solved
    runtime::RequestResult run;    // self-consistency: the verified sample, else the last one
    runtime::Metrics metrics;      // the problem's cost, all samples together
};

// The backend a Countdown run wants, sized for `o`: every problem in flight with all its threads
// (children or samples) live at once, each thread room for its window (limits.max_context, else its
// token budget plus 512 for prompt and join text). APR's children start fresh and share no cells,
// so each sequence gets its own KV stream (KvLayout::per_sequence): attention walks only the
// thread's own context. `forkjoin bench backend` measured 18x the decode tokens/s of one shared
// cache at 64 sequences of 512 tokens on the 1M test model.
llama::BackendOptions countdown_backend_options(const CountdownOptions & o);

std::vector<CountdownOutcome> run_countdown(Backend & backend, const std::vector<countdown::Problem> & problems,
                                            const CountdownOptions & options);

}  // namespace forkjoin::strategies
