// Named controller policies a request chooses (`--controller NAME[,NAME]`, `forkjoin.controller`):
//   default         the fixed limits (DefaultController)
//   adaptive-width  per spawn, how many children run from the request's remaining token budget, the
//                   measured cost of its finished children (their mean tokens; before any finished, the
//                   per-thread budget capped at 256), and the free KV cells; nested spawns (depth >= 1)
//                   only when the budget is ample (room for twice the children asked for). Children run
//                   most promising first where the task ranks them (TaskHooks::child_score).
//   early-stop      when a child's result settles its parent's question (TaskHooks::settles: Countdown,
//                   a verified Goal Reached), its running siblings are cancelled and join as not finished.
//   validate        when a spawn's children all ended and none settles the question (TaskHooks::settles:
//                   Countdown, a sub search whose path the verifier accepts), the unsettled ones (and any
//                   never run) run again, sampled at temperature 0.7 with new seeds, before the join; at
//                   most 2 rounds, and only while the remaining budget pays for them at the measured cost
//                   per child. Without a settles hook it never fires.
//   all             every policy above.
// Policies compose: each decides what it knows about and hands the rest to the next, the last one being
// the default. Every decision carries its reason into the trace.
//
// Threading: as runtime/controller.h (the loop thread). A controller made here keeps no state between
// requests that matters for correctness; make one per request when hooks hold per-request data.
#pragma once

#include "runtime/controller.h"

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
};

// "a,b,c" -> the composed controller. Throws Error(invalid_argument) naming an unknown policy.
std::shared_ptr<Controller> make_controller(const std::string & names, TaskHooks hooks = {});
// The names make_controller knows, for help texts and errors.
const std::vector<std::string> & policy_names();

// A policy: answers what it knows about and hands every other question to the next controller.
class Policy : public Controller {
public:
    Policy(std::shared_ptr<Controller> next, TaskHooks hooks) : next_(std::move(next)), hooks_(std::move(hooks)) {}
    SpawnDecision on_spawn(const SpawnContext & c) override { return next_->on_spawn(c); }
    AdmitDecision on_admit(const AdmitContext & c) override { return next_->on_admit(c); }
    LimitDecision on_limit(const LimitContext & c) override { return next_->on_limit(c); }
    ChildEndDecision on_child_ended(const ChildEndContext & c) override { return next_->on_child_ended(c); }
    JoinDecision on_join(const JoinContext & c) override { return next_->on_join(c); }

protected:
    std::shared_ptr<Controller> next_;
    TaskHooks hooks_;
};

class AdaptiveWidth final : public Policy {
public:
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

}  // namespace forkjoin::runtime
