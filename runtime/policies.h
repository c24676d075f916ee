// Named controller policies a request chooses (`--controller NAME[,NAME]`, `forkjoin.controller`):
//   default         the fixed limits (DefaultController)
//   adaptive-width  per spawn, how many children run from the request's remaining token budget, the
//                   measured cost of its finished children (their mean tokens; before any finished, the
//                   per-thread budget capped at 256), and the free KV cells; nested spawns (depth >= 1)
//                   only when the budget is ample (room for twice the children asked for). Children run
//                   most promising first where the task ranks them (TaskHooks::child_score).
//   early-stop      when a child's result settles its parent's question (TaskHooks::settles: Countdown,
//                   a verified Goal Reached), its running siblings are cancelled and join as not finished.
//   stagger         a spawn's children start at most kAtOnce (2) at a time, most promising first where
//                   the task ranks them (TaskHooks::child_score); each of the others starts when a live
//                   sibling ends (SpawnDecision::at_once). With early-stop, a child that settles the
//                   question cancels the held ones before they start, so it trades the chain's length
//                   (the children run in a row of waves) for the tokens of children never run; alone it
//                   only lengthens the chain. Not in `all`: it spends latency, what parallel reasoning is for.
//                   Composed with adaptive-width, the width is still chosen as if all ran at once.
//   validate        when a spawn's children all ended and none settles the question (TaskHooks::settles:
//                   Countdown, a sub search whose path the verifier accepts), the unsettled ones (and any
//                   never run) run again, sampled at temperature 0.7 with new seeds, before the join; at
//                   most 2 rounds, and only while the remaining budget pays for them at the measured cost
//                   per child. Without a settles hook it never fires here; plan-execute, where no verifier
//                   exists, runs a validator thread over its workers' results instead (strategies/text.h).
//                   The root's answer is validated too, where the strategy can: when the verifier
//                   rejects a native Countdown root's answer, the strategy re-samples (at 0.7) the root's
//                   continuation after its join if a sub search of the join reached the target, else
//                   re-explores: the root starts again from its state with the best first steps (APR's
//                   heuristic) no root of the job expanded as its expansion, and spawns, joins and
//                   answers as any root; each at most kMaxRounds times within the total budget
//                   (strategies/countdown.h, tasks/countdown/re_exploration.h).
//   split           a child whose part is itself worth splitting (TaskHooks::split: Countdown, a state of
//                   3 or more numbers) runs as a search of its own sub-problem (a root of it, in parallel
//                   mode) instead of the search its parent asked for; it may spawn one level deeper than
//                   the request's max_depth, and its text is read back into the join the parent expects.
//                   Only while the budget left pays for each nested child's own children (max_children
//                   at the measured cost per child) and the backend has a sequence free for each of them;
//                   the most promising children first.
//   context-rot     the monitor: every 64 generated tokens (and at the start, the baseline) a throwaway
//                   fork of the thread scores a recall probe (TaskHooks::probe_text: Countdown restates
//                   the thread's own "Current State:" line; otherwise the start of its context restated),
//                   measured against the same probe after a clean reference context, scored once
//                   (TaskHooks::probe_reference: Countdown, the root's own context without what came
//                   before it), else against the thread's baseline. Past the threshold (built in: 1 nat per
//                   token above the reference, 2 above the baseline, which drifts with the position by
//                   itself; calibrated: the model's own clean rise at that position) the thread is compacted where
//                   the task can (TaskHooks::compact: Countdown restarts from the current node's state
//                   line, as an APR child; at most kMaxCompactions per thread, never after it spawned or
//                   in a forked child); free text (a task without TaskHooks::compact) by a summary the
//                   model writes on a fork of the thread (SummaryPlan, summary_plan(); as often). Else
//                   the thread is flagged (a "probe" decision) and the request's next spawns narrowed
//                   to half. The thresholds are built in (ContextRotThresholds) unless the
//                   model's own normal range was measured and stored (runtime/calibration.h,
//                   `forkjoin calibrate context-rot`); the policy is opt-in and not part of `all`.
//   confidence      DeepConf's online pruning (Fu et al. 2025) for sampled strategies: each root's
//                   confidence from the model's 20 most likely tokens per position, over a sliding window
//                   of 128 tokens (ThreadRecord::confidence). The first `warmup` roots to end (not
//                   cancelled) calibrate the threshold: the 10th percentile of their lowest group
//                   confidence (DeepConf-high, which keeps about 90% of traces); a root whose group
//                   confidence falls below it afterwards is stopped. Children are not judged. One
//                   controller must serve all of a job's samples (the strategies make one per job); the
//                   strategy runs the warm-up samples first and weighs the answers by confidence
//                   (strategies/confident_sampling.h).
//   confidence-low  DeepConf-low: the same, with the threshold at the 90th percentile (it keeps about
//                   10% of traces). It saves more tokens for the same vote where the token confidence
//                   tells little early on (the shipped model: models/README.md, Self-consistency with
//                   confidence). Name one of the two.
//   all             split, adaptive-width, early-stop and validate.
// Policies compose: each decides what it knows about and hands the rest to the next, the last one being
// the default. Every decision carries its reason into the trace.
//
// Threading: as runtime/controller.h (the loop thread). A controller made here keeps no state between
// requests that matters for correctness; make one per request when hooks hold per-request data.
#pragma once

#include "runtime/controller.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace forkjoin::runtime {

// What a task tells the policies; an empty member means the policy does without it.
struct TaskHooks {
    // Lower is more promising (Countdown: APR's heuristic on the child's state).
    std::function<double(const dialects::ChildRequest &)> child_score;
    // Why this finished child settles its parent's question, or nullopt when it does not.
    std::function<std::optional<std::string>(const ThreadRecord & child)> settles;
    // The context-rot probe for a thread starting with `context`; empty: the generic one.
    std::function<std::string(const std::string & context)> probe_text;
    // A clean context to measure the probe against (ProbePlan::reference); empty: the thread's own
    // baseline. Countdown: the problem's own root context, nothing before it.
    std::function<std::string(const std::string & context)> probe_reference;
    // The thread's context compacted (ProbeDecision::compact_to), or nullopt when the task cannot.
    // Countdown: restart from the current node's state line, as an APR child starts.
    std::function<std::optional<std::string>(const std::string & context)> compact;
    // This child run as a search of its own sub-problem (its prompt and read-back; `slot` is set by the
    // policy), or nullopt when its part is not worth splitting.
    std::function<std::optional<NestedChild>(const dialects::ChildRequest &)> split;
};

// The context-rot monitor's thresholds, in nats per probe token: how far a probe's NLL may rise above
// the clean reference context's, and above the thread's own first probe where there is no reference
// (more: that one drifts with the position in a trace by itself). The built-in values were settled on
// the shipped model (policies.h ContextRot); a model's own come from runtime/calibration.h.
struct ContextRotThresholds {
    static constexpr double kReference = 1.0;  // on the shipped model, recovers the most from distractors
    static constexpr double kDrift = 2.0;      // 1 narrowed or compacted clean native threads (-7 points on
                                               // 100 3-number problems); 2 cost none
    double reference = kReference;
    double drift = kDrift;
    // Calibrated (runtime/calibration.h): the threshold by position, for both comparisons; entry b holds
    // from b*every generated tokens after the clean start on, the last one for every later position.
    // Empty: reference and drift above.
    int every = 0;
    std::vector<double> by_position;
    std::string source;  // where they were measured (the calibration file), said in the monitor's
                         // decisions; empty: built in
    // The threshold for a probe `since_start` generated tokens after the clean start.
    double at(bool against_reference, int64_t since_start) const {
        if (by_position.empty() || every <= 0) return against_reference ? reference : drift;
        const size_t b = static_cast<size_t>(std::max<int64_t>(0, since_start) / every);
        return by_position[std::min(b, by_position.size() - 1)];
    }
};

// What a policy takes from outside the request: values measured per model.
struct PolicySettings {
    ContextRotThresholds context_rot;
};

// "a,b,c" -> the composed controller. Throws Error(invalid_argument) naming an unknown policy.
std::shared_ptr<Controller> make_controller(const std::string & names, TaskHooks hooks = {}, const PolicySettings & settings = {});
// Whether the policies named in `names` (as make_controller reads them) include `policy`, `all` counted
// as the policies it stands for.
bool has_policy(const std::string & names, const std::string & policy);
// Whether `names` includes either of DeepConf's variants (confidence, confidence-low).
bool has_confidence_policy(const std::string & names);
// The names make_controller knows, for help texts and errors.
const std::vector<std::string> & policy_names();
// The same, comma-separated ("default, split, ..."), as help texts and errors print them.
std::string policy_names_text();

// A policy: answers what it knows about and hands every other question to the next controller.
class Policy : public Controller {
public:
    Policy(std::shared_ptr<Controller> next, TaskHooks hooks) : next_(std::move(next)), hooks_(std::move(hooks)) {}
    SpawnDecision on_spawn(const SpawnContext & c) override { return next_->on_spawn(c); }
    AdmitDecision on_admit(const AdmitContext & c) override { return next_->on_admit(c); }
    LimitDecision on_limit(const LimitContext & c) override { return next_->on_limit(c); }
    ChildEndDecision on_child_ended(const ChildEndContext & c) override { return next_->on_child_ended(c); }
    JoinDecision on_join(const JoinContext & c) override { return next_->on_join(c); }
    ProbePlan probe_plan(const ThreadRecord & t, const std::string & context) override { return next_->probe_plan(t, context); }
    ProbeDecision on_probe(const ProbeResult & p) override { return next_->on_probe(p); }
    ConfidencePlan confidence_plan(const ThreadRecord & t) override { return next_->confidence_plan(t); }
    ConfidenceDecision on_confidence(const ConfidenceContext & c) override { return next_->on_confidence(c); }
    void on_thread_ended(const ThreadRecord & t) override { next_->on_thread_ended(t); }

protected:
    std::shared_ptr<Controller> next_;
    TaskHooks hooks_;
};

class AdaptiveWidth final : public Policy {
public:
    using Policy::Policy;
    SpawnDecision on_spawn(const SpawnContext & c) override;
};

class Stagger final : public Policy {
public:
    static constexpr int kAtOnce = 2;
    using Policy::Policy;
    SpawnDecision on_spawn(const SpawnContext & c) override;
};

class EarlyStop final : public Policy {
public:
    using Policy::Policy;
    ChildEndDecision on_child_ended(const ChildEndContext & c) override;
};

class Validate final : public Policy {
public:
    static constexpr int kMaxRounds = 2;
    using Policy::Policy;
    JoinDecision on_join(const JoinContext & c) override;
};

class Split final : public Policy {
public:
    using Policy::Policy;
    SpawnDecision on_spawn(const SpawnContext & c) override;
};

class ContextRot final : public Policy {
public:
    static constexpr int kEvery = 64;
    static constexpr int kMaxCompactions = 2;  // per thread
    ContextRot(std::shared_ptr<Controller> next, TaskHooks hooks, int every = kEvery, ContextRotThresholds thresholds = {})
        : Policy(std::move(next), std::move(hooks)), every_(every), thresholds_(std::move(thresholds)) {}
    ProbePlan probe_plan(const ThreadRecord & thread, const std::string & context) override;
    ProbeDecision on_probe(const ProbeResult & p) override;
    SpawnDecision on_spawn(const SpawnContext & c) override;
    // Free text's compaction: the summary the model is asked for, and what leads it in the compacted
    // context.
    static SummaryPlan summary_plan() {
        return {"\n\nBefore going on, summarize the reasoning above in a few sentences: what is established, and what is left to do.\nSummary:",
                "\n\nSummary of the reasoning so far: ", 128};
    }

private:
    int every_;
    ContextRotThresholds thresholds_;
    int flagged_ = 0;  // threads of this request whose probe crossed the threshold
    std::vector<int> flagged_threads_;
};

class ConfidencePruning final : public Policy {
public:
    static constexpr int kTopK = 20;
    static constexpr int kWindow = 128;
    static constexpr int kWarmup = 2;
    // DeepConf's two variants, as the share of traces its threshold keeps: the threshold is the
    // (100 - keep)th percentile of the warm-up roots' lowest group confidence.
    static constexpr double kKeepHigh = 90;  // DeepConf-high (`confidence`): the 10th percentile
    static constexpr double kKeepLow = 10;   // DeepConf-low (`confidence-low`): the 90th percentile
    ConfidencePruning(std::shared_ptr<Controller> next, TaskHooks hooks, double keep_percent = kKeepHigh, int warmup = kWarmup,
                      int window = kWindow)
        : Policy(std::move(next), std::move(hooks)), keep_percent_(keep_percent), warmup_(warmup), window_(window) {}
    ConfidencePlan confidence_plan(const ThreadRecord & thread) override;
    ConfidenceDecision on_confidence(const ConfidenceContext & c) override;
    void on_thread_ended(const ThreadRecord & thread) override;
    // The stop threshold once the warm-up ended; nullopt before.
    std::optional<double> threshold() const { return threshold_; }

private:
    double keep_percent_;
    int warmup_;
    int window_;
    std::vector<double> calibration_;  // the warm-up roots' lowest group confidence
    std::optional<double> threshold_;
};

// The p-th percentile (0..100) of `values`, interpolated linearly between ranks (numpy's default).
// Throws Error(invalid_argument) when values is empty.
double percentile(std::vector<double> values, double p);

}  // namespace forkjoin::runtime
