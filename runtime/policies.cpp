#include "runtime/policies.h"

#include "base/comma_list.h"
#include "base/error.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

namespace forkjoin::runtime {

const std::vector<std::string> & policy_names() {
    static const std::vector<std::string> names = {"default", "split", "adaptive-width", "stagger", "early-stop", "validate", "context-rot", "confidence", "confidence-low", "all"};
    return names;
}

std::string policy_names_text() {
    std::string text;
    for (const auto & name : policy_names()) text += (text.empty() ? "" : ", ") + name;
    return text;
}

namespace {
// The policies `names` chooses, `all` expanded, in order; throws on an unknown name.
std::vector<std::string> chosen_policies(const std::string & names) {
    std::vector<std::string> chosen;
    for (const std::string & name : split_comma_list(names)) {
        if (name.empty()) continue;
        if (std::find(policy_names().begin(), policy_names().end(), name) == policy_names().end()) {
            throw Error(ErrorCode::invalid_argument, "unknown controller policy '" + name + "' (" + policy_names_text() + ")");
        }
        if (name == "all") {
            // context-rot is not in `all` until its threshold is calibrated per model (see policies.h);
            // confidence belongs to sampled strategies (the context-rot issue's), not to this set.
            // split first: it nests among the children the others let run.
            chosen.insert(chosen.end(), {"split", "adaptive-width", "early-stop", "validate"});
        } else if (name != "default") {
            chosen.push_back(name);
        }
    }
    return chosen;
}

// The indices of the `run` children the task ranks best (lowest score first; ties in the order asked).
std::vector<int> most_promising(const std::vector<dialects::ChildRequest> & children,
                                const std::function<double(const dialects::ChildRequest &)> & score_of, int run) {
    std::vector<int> idx(children.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::vector<double> score;
    for (const auto & ch : children) score.push_back(score_of(ch));
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return score[static_cast<size_t>(a)] < score[static_cast<size_t>(b)]; });
    idx.resize(std::min(idx.size(), static_cast<size_t>(std::max(0, run))));
    return idx;
}
}  // namespace

bool has_confidence_policy(const std::string & names) {
    const auto chosen = chosen_policies(names);
    return std::any_of(chosen.begin(), chosen.end(), [](const std::string & p) { return p == "confidence" || p == "confidence-low"; });
}

bool has_policy(const std::string & names, const std::string & policy) {
    const auto chosen = chosen_policies(names);
    return std::find(chosen.begin(), chosen.end(), policy) != chosen.end();
}

std::shared_ptr<Controller> make_controller(const std::string & names, TaskHooks hooks, const PolicySettings & settings) {
    const std::vector<std::string> chosen = chosen_policies(names);
    std::shared_ptr<Controller> c = std::make_shared<DefaultController>();
    // Innermost last: the first named policy sees each question first.
    for (auto it = chosen.rbegin(); it != chosen.rend(); ++it) {
        if (*it == "adaptive-width") c = std::make_shared<AdaptiveWidth>(c, hooks);
        if (*it == "early-stop") c = std::make_shared<EarlyStop>(c, hooks);
        if (*it == "stagger") c = std::make_shared<Stagger>(c, hooks);
        if (*it == "validate") c = std::make_shared<Validate>(c, hooks);
        if (*it == "context-rot") c = std::make_shared<ContextRot>(c, hooks, ContextRot::kEvery, settings.context_rot);
        if (*it == "split") c = std::make_shared<Split>(c, hooks);
        if (*it == "confidence") c = std::make_shared<ConfidencePruning>(c, hooks);
        if (*it == "confidence-low") c = std::make_shared<ConfidencePruning>(c, hooks, ConfidencePruning::kKeepLow);
    }
    return c;
}

SpawnDecision AdaptiveWidth::on_spawn(const SpawnContext & c) {
    SpawnDecision base = next_->on_spawn(c);
    if (base.defer || base.run <= 0) return base;
    const Usage & u = c.usage;
    const int64_t per_child = u.child_tokens(c.limits);
    const int64_t affordable = u.affordable_children(per_child);
    int64_t prompt_bytes = 0;
    for (const auto & ch : c.children) prompt_bytes += static_cast<int64_t>(ch.prompt.size());
    const int64_t per_child_cells = per_child + (c.children.empty() ? 0 : prompt_bytes / static_cast<int64_t>(c.children.size()));
    const int64_t fits = u.total_cells > 0 ? std::max<int64_t>(0, u.free_cells / std::max<int64_t>(1, per_child_cells)) : base.run;
    const std::string why = "budget left " + std::to_string(u.budget_left) + " / ~" + std::to_string(per_child) + " tokens per child" +
                            (u.children_finished > 0 ? " (measured over " + std::to_string(u.children_finished) + ")" : " (prior)") +
                            ", room in the cache for " + std::to_string(fits);
    if (c.parent.depth >= 1 && affordable < 2 * static_cast<int64_t>(c.requested)) {
        return {0, "nested spawn of " + std::to_string(c.requested) + " refused: budget tight (" + why + ")"};
    }
    const int run = static_cast<int>(std::min<int64_t>({base.run, affordable, std::max<int64_t>(1, fits)}));
    if (run <= 0) return {0, "spawn of " + std::to_string(c.requested) + " refused: " + why};
    SpawnDecision d;
    d.run = run;
    d.at_once = base.at_once;  // a cap a policy after it set (stagger) stands
    d.reason = "ran " + std::to_string(run) + " of " + std::to_string(c.requested) + ": " + why;
    if (hooks_.child_score) {
        d.order = most_promising(c.children, hooks_.child_score, run);
        d.reason += "; most promising first";
    }
    return d;
}

SpawnDecision Stagger::on_spawn(const SpawnContext & c) {
    SpawnDecision d = next_->on_spawn(c);
    if (d.defer || d.run <= kAtOnce) return d;
    if (d.order.empty() && hooks_.child_score) {
        d.order = most_promising(c.children, hooks_.child_score, d.run);
        d.reason += "; most promising first";
    }
    d.at_once = d.at_once > 0 ? std::min(d.at_once, kAtOnce) : kAtOnce;  // the runtime says it in the spawn's reason
    return d;
}

SpawnDecision Split::on_spawn(const SpawnContext & c) {
    if (c.parent.nested) {
        // A nested search spawns as the root of its sub-problem would: one level deeper than the
        // request allows, and only into sequences that are free now (its parent and siblings hold
        // theirs while they wait; children that could never open one would wait forever).
        Limits deeper = c.limits;
        deeper.max_depth = std::max(deeper.max_depth, c.parent.depth + 1);
        SpawnDecision d = next_->on_spawn({.parent = c.parent, .requested = c.requested, .limits = deeper, .children = c.children, .usage = c.usage});
        if (d.defer || d.run <= 0) return d;
        const int64_t free = std::max<int64_t>(0, c.usage.free_sequences);
        if (free == 0) return {0, "spawn of " + std::to_string(c.requested) + " refused: no backend sequence free for a nested search's children"};
        if (d.run > free) {
            d.reason += "; " + std::to_string(free) + " run: backend sequences free";
            d.run = static_cast<int>(free);
            if (!d.order.empty()) d.order.resize(static_cast<size_t>(free));
        }
        return d;
    }
    SpawnDecision d = next_->on_spawn(c);
    if (!hooks_.split || d.defer || d.run <= 0) return d;
    std::vector<int> chosen = d.order;
    if (chosen.empty()) {
        for (int i = 0; i < std::min<int>(d.run, static_cast<int>(c.children.size())); ++i) chosen.push_back(i);
    }
    // Each nested child is expected to spawn up to max_children of its own.
    const int64_t per_child = c.usage.child_tokens(c.limits);
    const int64_t grandchildren = std::max(1, c.limits.max_children);
    int64_t affordable = c.usage.affordable_children(per_child) - static_cast<int64_t>(chosen.size());
    int64_t sequences = c.usage.free_sequences - static_cast<int64_t>(chosen.size());
    int worth = 0;
    for (int slot : chosen) {
        auto n = hooks_.split(c.children[static_cast<size_t>(slot)]);
        if (!n) continue;
        ++worth;
        if (affordable < grandchildren || sequences < grandchildren) continue;
        affordable -= grandchildren;
        sequences -= grandchildren;
        n->slot = slot;
        d.nested.push_back(std::move(*n));
    }
    if (worth > 0) {
        d.reason += "; " + std::to_string(d.nested.size()) + " of " + std::to_string(worth) +
                    " worth splitting run as searches of their own (each may spawn " + std::to_string(grandchildren) +
                    "; budget left " + std::to_string(c.usage.budget_left) + " at ~" + std::to_string(per_child) +
                    " tokens per child, " + std::to_string(c.usage.free_sequences) + " sequences free)";
    }
    return d;
}

ChildEndDecision EarlyStop::on_child_ended(const ChildEndContext & c) {
    if (hooks_.settles) {
        if (auto why = hooks_.settles(c.child)) return {true, *why};
    }
    return next_->on_child_ended(c);
}

}  // namespace forkjoin::runtime

namespace forkjoin::runtime {

JoinDecision Validate::on_join(const JoinContext & c) {
    // A nested search (split) is validated as a whole, by its parent's join: re-exploring inside it as
    // well multiplies the rounds.
    if (!hooks_.settles || c.round >= kMaxRounds || c.parent.nested) return next_->on_join(c);
    std::vector<int> unsettled;
    for (size_t i = 0; i < c.children.size(); ++i) {
        const ThreadRecord * child = c.children[i];
        if (child && child->state == ThreadState::done && hooks_.settles(*child)) return next_->on_join(c);  // settled: join
        unsettled.push_back(static_cast<int>(i));
    }
    const Usage & u = c.usage;
    const int64_t per_child = u.child_tokens(c.limits);
    // Not enough budget for another round: join what there is.
    if (u.affordable_children(per_child) < static_cast<int64_t>(unsettled.size())) return next_->on_join(c);
    JoinDecision d;
    d.rerun = unsettled;
    d.temperature = 0.7f;
    d.reason = "no child settled it; re-exploring " + std::to_string(unsettled.size()) + " sub searches sampled at 0.7 (round " +
               std::to_string(c.round + 1) + " of " + std::to_string(kMaxRounds) + ", ~" + std::to_string(per_child) +
               " tokens per child, budget left " + std::to_string(u.budget_left) + ")";
    return d;
}

}  // namespace forkjoin::runtime

namespace forkjoin::runtime {

ProbePlan ContextRot::probe_plan(const ThreadRecord & thread, const std::string & context) {
    std::string text = hooks_.probe_text ? hooks_.probe_text(context) : std::string();
    if (text.empty()) {
        // Generic recall: the start of the context, restated after a line break.
        std::string head = context.substr(0, std::min<size_t>(context.size(), 64));
        text = "\n" + head;
    }
    ProbePlan p = next_->probe_plan(thread, context);
    if (p.every > 0) return p;  // a policy further in already probes
    return {every_, text, hooks_.probe_reference ? hooks_.probe_reference(context) : std::string()};
}

ProbeDecision ContextRot::on_probe(const ProbeResult & p) {
    ProbeDecision inner = next_->on_probe(p);
    const double against = p.reference.value_or(p.baseline);
    const double threshold = thresholds_.at(p.reference.has_value(), p.since_start);
    if (p.nll - against <= threshold) return inner;
    char buf[200];
    std::snprintf(buf, sizeof buf, "context rot: probe NLL %.3f vs %.3f %s (threshold +%.2f, %s", p.nll, against,
                  p.reference ? "after a clean context" : "at the start", threshold, thresholds_.source.empty() ? "built in)" : "calibrated: ");
    std::string why = buf;
    if (!thresholds_.source.empty()) why += thresholds_.source + ")";
    // Compact where the task can and the thread has not been compacted too often; free text (a task
    // with no compaction of its own) by a summary the model writes, as often; else narrow.
    if (hooks_.compact && p.thread.compactions < kMaxCompactions) {
        if (auto compacted = hooks_.compact(p.thread.text)) return {why + ": compacted", std::move(compacted), std::nullopt};
    }
    if (!hooks_.compact && p.thread.spawns.empty() && !p.thread.forked && p.thread.summaries < kMaxCompactions) {
        return {why + ": summarizing", std::nullopt, summary_plan()};
    }
    if (std::find(flagged_threads_.begin(), flagged_threads_.end(), p.thread.id) != flagged_threads_.end()) return inner;
    flagged_threads_.push_back(p.thread.id);
    ++flagged_;
    return {why + ": this request's next spawns run at half width", std::nullopt, std::nullopt};
}

SpawnDecision ContextRot::on_spawn(const SpawnContext & c) {
    SpawnDecision d = next_->on_spawn(c);
    if (flagged_ == 0 || d.defer || d.run <= 1) return d;
    const int narrowed = std::max(1, d.run / 2);
    d.reason += "; narrowed to " + std::to_string(narrowed) + " (context rot seen in " + std::to_string(flagged_) + " threads)";
    d.run = narrowed;
    if (!d.order.empty()) d.order.resize(static_cast<size_t>(narrowed));
    return d;
}

}  // namespace forkjoin::runtime

namespace forkjoin::runtime {

double percentile(std::vector<double> values, double p) {
    if (values.empty()) throw Error(ErrorCode::invalid_argument, "percentile of no values");
    std::sort(values.begin(), values.end());
    const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
    const size_t lo = static_cast<size_t>(rank);
    const size_t hi = std::min(lo + 1, values.size() - 1);
    return values[lo] + (rank - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

ConfidencePlan ConfidencePruning::confidence_plan(const ThreadRecord & thread) {
    if (thread.parent >= 0) return next_->confidence_plan(thread);
    return {kTopK, window_};
}

void ConfidencePruning::on_thread_ended(const ThreadRecord & thread) {
    next_->on_thread_ended(thread);
    // A cancelled root (stopped, or its job ended) says nothing about how whole traces go.
    if (thread.parent >= 0 || thread.state == ThreadState::cancelled || threshold_ || thread.confidence.tokens == 0) return;
    calibration_.push_back(thread.confidence.lowest_group);
    if (static_cast<int>(calibration_.size()) >= warmup_) threshold_ = percentile(calibration_, 100.0 - keep_percent_);
}

ConfidenceDecision ConfidencePruning::on_confidence(const ConfidenceContext & c) {
    if (c.thread.parent >= 0 || !threshold_ || c.group >= *threshold_) return next_->on_confidence(c);
    char buf[200];
    std::snprintf(buf, sizeof buf, "group confidence %.3f below %.3f (the %.0fth percentile of the first %zu samples' lowest) after %lld tokens",
                  c.group, *threshold_, 100.0 - keep_percent_, calibration_.size(), static_cast<long long>(c.thread.confidence.tokens));
    return {true, buf};
}

}  // namespace forkjoin::runtime
