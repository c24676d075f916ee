// Countdown through the engine: each problem becomes one job (a CountdownProgram), run as a
// strategy, and its answer is read from the root's final text and checked by the strict verifier.
//   sequential: one thread that never spawns (the baseline; spawns are refused by depth limit 0)
//   native:     the model decides through the apr dialect (fresh children, text join); under the
//               validate policy a root whose answer fails the verifier is followed up (a rewrite of
//               its continuation, or a re-exploration of first steps it left; see CountdownProgram)
//   self-consistency: `samples` independent sequential threads (sampled, seeds differ); the answer
//               the most samples gave (the same expression) is the answer, then verified. The model
//               picks, the verifier only grades.
//   best-of-n:  the same samples, but the verifier picks: solved when any sample verifies. That is an
//               oracle's upper bound (a verifier the model does not have), reported under its name.
// With the `confidence` controller policy, self-consistency runs as DeepConf does online
// (strategies/confident_sampling.h): warm-up samples first, low-confidence samples stopped, answers
// weighed by confidence, sampling stopped at consensus.
// For both sampled strategies costs add up (total tokens) and the chain is the longest sample. Their
// samples may be native runs instead (CountdownOptions::native_samples): blind resampling of the
// native strategy, against which the validate policy's follow-ups are measured.
#pragma once

#include "backends/llama/backend.h"
#include "runtime/engine.h"
#include "runtime/policies.h"
#include "runtime/program.h"
#include "strategies/confident_sampling.h"
#include "tasks/countdown/prompts.h"
#include "tasks/countdown/verifier.h"

#include <string>
#include <vector>

namespace forkjoin::strategies {

enum class CountdownStrategy { sequential, native, self_consistency, best_of_n };
CountdownStrategy parse_countdown_strategy(const std::string & name);  // throws invalid_argument
const char * countdown_strategy_name(CountdownStrategy s);

struct CountdownOptions {
    CountdownStrategy strategy = CountdownStrategy::native;
    countdown::PromptStyle style = countdown::PromptStyle::forkjoin;
    runtime::Limits limits;        // max_context is the per-thread context window
    Sampling sampling;      // greedy by default
    int concurrent_requests = 16;  // requests in flight at once
    int samples = 4;               // self-consistency, best-of-n: threads per problem
    bool native_samples = false;   // self-consistency, best-of-n: each sample a native run (it spawns, its
                                   // children count as its tokens) instead of a sequential thread
    std::string controller = "default";  // controller policies (runtime/policies.h), e.g. "early-stop"
    runtime::PolicySettings policies;    // their per-model settings (runtime/calibration.h)
    // The context-rot benchmark: text put before each root's context (countdown_distractors()); the
    // answer is read from what follows it. Children start fresh without it (APR).
    std::string distractors;
};

// About `tokens` tokens (never more) of other problems' search traces, whole lines, to put before a
// problem (tasks/countdown/search_trace.h distractor_traces). The same text for a given count.
std::string countdown_distractors(const Vocabulary & vocabulary, int tokens);

// What Countdown tells the controller policies: children ranked by APR's heuristic on their state; a
// child settles its parent when its sub search reaches the target by a path the verifier accepts; a
// child whose state has 3 or more numbers may run as a parallel-mode search of that state (split),
// read back into the sub search its parent asked for (tasks/countdown/sub_problem.h).
runtime::TaskHooks countdown_hooks(const countdown::Problem & problem,
                                   countdown::PromptStyle style = countdown::PromptStyle::forkjoin);

struct CountdownOutcome {
    countdown::Problem problem;
    bool solved = false;           // verified
    std::string reason;            // why not
    std::string expression;        // e.g. "(7+5)+(9+3)" when solved
    runtime::RequestResult run;    // the answering call: a sample (sampled strategies), a root's rewrite
                                   // or re-exploration (native + validate), else the only run
    runtime::Metrics metrics;      // the problem's cost, all samples together
    std::vector<runtime::ThreadRecord> threads;  // the job's whole tree (every sample)
    int votes = 0;                 // self-consistency: samples that gave the chosen answer
    int stopped = 0;               // samples the confidence policy stopped (low confidence), and
    int not_needed = 0;            // samples cancelled or never started once the vote settled
    int rewrites = 0;              // native + validate: the root's continuations after its join re-sampled
    int reexplorations = 0;        // native + validate: roots started again with unexplored first steps
                                   // (both are calls after the root's, one chain; their roots are the
                                   // job's roots after its first, thread id > 0 and no parent)
};

// One problem as a job. After the job ends, outcome() holds the verdict.
class CountdownProgram final : public runtime::Program {
public:
    CountdownProgram(countdown::Problem problem, CountdownOptions options);
    void start(runtime::ProgramContext & ctx) override;
    void on_finished(runtime::ProgramContext & ctx, runtime::RequestId call, const runtime::RequestResult & result) override;
    const CountdownOutcome & outcome() const { return outcome_; }

private:
    void conclude(runtime::ProgramContext & ctx, std::string note = {});
    void start_sample(runtime::ProgramContext & ctx, int i);
    std::string own_text(const runtime::RequestResult & sample) const;  // its text after the distractors
    countdown::ExtractedPath claimed_path(const runtime::RequestResult & sample) const;
    // The vote over the samples so far: per sample its expression ("" without a path), weighed as
    // confident_ says.
    tasks::Vote vote(std::vector<std::string> & answers) const;
    // Whether a failed root may be followed up at all (rewrite or re-exploration); if not, why.
    static bool may_follow_up(const runtime::RequestResult & root, std::string & why_not);
    // Validation of a native root's answer (the validate policy): when the verifier rejects what the
    // root wrote after its join while a child's goal in that join verifies, the root's context up to
    // the join's end is continued again, sampled, at most Validate::kMaxRounds times within the
    // request's total budget. For a root whose answer failed: the prefix to continue, or nothing (with
    // why in `why_not`).
    std::optional<std::string> rewrite_prefix(const runtime::RequestResult & root, std::string & why_not) const;
    void start_rewrite(runtime::ProgramContext & ctx);
    // A follow-up call's options: the job's sampling (its seed moved by `salt`), dialect and
    // controller, and its limits less the tokens and time the job spent.
    runtime::RequestOptions followup_request(uint64_t salt) const;
    // Re-exploration (the validate policy), for a root whose answer failed while no join of the job
    // held a verified path: the root starts again from its state with the best first steps no root of
    // the job expanded (tasks/countdown/re_exploration.h) written as its expansion, as wide as the
    // root's own, and the model goes on from there: spawns, joins, answers. At most
    // Validate::kMaxRounds times within the request's total budget and time. For a root whose answer
    // failed: the new root's context, or nothing (with why in `why_not`); adds its expansion to
    // explored_.
    struct Reexploration {
        std::string prompt;  // the new root's context, its expansion included
        size_t steps = 0;    // the first steps its expansion holds
    };
    std::optional<Reexploration> reexploration_prompt(const runtime::RequestResult & root, std::string & why_not);
    void start_reexploration(runtime::ProgramContext & ctx, Reexploration next, const std::string & why);
    int followups() const { return outcome_.rewrites + outcome_.reexplorations; }
    // Whether the job's roots run in parallel mode (they may spawn).
    bool spawns() const;
    int64_t generated_so_far() const;  // by every call of the job that ended
    double elapsed_so_far() const;     // their wall time
    static constexpr float kRewriteTemperature = 0.7f;  // as the validate policy re-runs sub searches
    countdown::Problem problem_;
    CountdownOptions options_;
    std::shared_ptr<const dialects::Dialect> dialect_;
    std::shared_ptr<runtime::Controller> controller_;
    std::string prompt_;
    std::vector<runtime::RequestResult> samples_;
    int expected_ = 1;
    int started_ = 0;
    bool validate_answer_ = false;  // native under the validate policy
    std::string rewrite_from_;      // the root's context up to its join's end, once a rewrite started
    std::vector<std::vector<int>> explored_;  // the states the job's roots expanded (re-exploration)
    std::vector<std::string> notes_;
    ConfidentSampling confident_;
    CountdownOutcome outcome_;
};

// The backend a Countdown run wants, sized for `o`: every problem in flight with all its threads
// (children or samples) live at once, each thread room for its window (limits.max_context, else its
// token budget plus 512 for prompt and join text). APR's children start fresh and share no cells,
// so each sequence gets its own KV stream (KvLayout::per_sequence): attention walks only the
// thread's own context. `forkjoin bench backend` measured 18x the decode tokens/s of one shared
// cache at 64 sequences of 512 tokens on the 1M test model.
llama::BackendOptions countdown_backend_options(const CountdownOptions & o);

// The problems as jobs on one engine over `backend`, `concurrent_requests` in flight at a time.
std::vector<CountdownOutcome> run_countdown(Backend & backend, const std::vector<countdown::Problem> & problems,
                                            const CountdownOptions & options);
// The same on an engine that is already running (the server's): blocks until all are answered.
std::vector<CountdownOutcome> run_countdown(runtime::Engine & engine, const std::vector<countdown::Problem> & problems,
                                            const CountdownOptions & options);

}  // namespace forkjoin::strategies
