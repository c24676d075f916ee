// DeepConf's confidence signal (runtime/controller.h ConfidencePlan): token confidences from the
// backend's top-k log-probabilities, kept per thread over a sliding window.
#include "runtime/runtime_state.h"

#include <algorithm>
#include <cstdio>

namespace forkjoin::runtime {

Sampling Runtime::start_sampling(Request & r, Thread & t) {
    t.confidence = controller_of(r).confidence_plan(t.rec);
    if (t.confidence.top_k <= 0 || t.confidence.window <= 0) t.confidence = {};
    t.confidence_window.clear();
    t.confidence_sum = 0;
    t.rec.confidence = {};
    t.rec.confidence.window = t.confidence.window;
    return thread_sampling(r, t);
}

Sampling Runtime::thread_sampling(const Request & r, const Thread & t) const {
    Sampling s = sampling_of(r, t);
    if (t.confidence.top_k > 0) s.top_logprobs = std::max(s.top_logprobs, t.confidence.top_k);
    return s;
}

bool Runtime::observe_confidence(Request & r, Thread & t, const SampledToken & s) {
    if (t.confidence.top_k <= 0) return false;
    if (s.top.empty()) {
        // A backend without top log-probabilities (a remote engine that does not send them).
        t.confidence = {};
        t.rec.confidence.window = 0;
        decide(r, t, "confidence", "not measured: the backend reports no top log-probabilities");
        return false;
    }
    double c = 0;
    for (const auto & x : s.top) c -= x.logprob;
    c /= static_cast<double>(s.top.size());
    Confidence & rc = t.rec.confidence;
    rc.mean += (c - rc.mean) / static_cast<double>(++rc.tokens);
    t.confidence_window.push_back(c);
    t.confidence_sum += c;
    const size_t window = static_cast<size_t>(t.confidence.window);
    if (t.confidence_window.size() > window) {
        t.confidence_sum -= t.confidence_window.front();
        t.confidence_window.pop_front();
    }
    if (t.confidence_window.size() < window) return false;
    const double group = t.confidence_sum / static_cast<double>(window);
    rc.lowest_group = rc.tokens == static_cast<int64_t>(window) ? group : std::min(rc.lowest_group, group);
    rc.last_group = group;
    return true;
}

void Runtime::ask_confidence(Request & r, Thread & t) {
    if (t.rec.state != ThreadState::running) return;
    const ConfidenceDecision d = controller_of(r).on_confidence({.thread = t.rec, .group = t.rec.confidence.last_group});
    if (!d.stop) return;
    decide(r, t, "confidence", d.reason);
    end_thread(r, t, ThreadState::cancelled, std::string(kLowConfidence) + ": " + d.reason);
}

void Runtime::finish_confidence(Thread & t) {
    Confidence & rc = t.rec.confidence;
    if (rc.window > 0 && rc.tokens > 0 && rc.tokens < rc.window) rc.lowest_group = rc.mean;
}

}  // namespace forkjoin::runtime
