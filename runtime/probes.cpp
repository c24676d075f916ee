// The context-rot monitor: probes of a thread's recall on a throwaway fork (runtime/controller.h).
#include "runtime/runtime_state.h"

#include <algorithm>

namespace forkjoin::runtime {

void Runtime::probe(Request & r, Thread & t) {
    if (t.next_probe_at < 0 || t.rec.generated_tokens < t.next_probe_at || t.rec.state != ThreadState::running) return;
    if (!backend_.capabilities().score) {
        t.next_probe_at = -1;
        decide(r, t, "probe", "no probes: the backend cannot score");
        return;
    }
    const auto start = std::chrono::steady_clock::now();
    const int64_t pending = backend_.n_pending(t.seq);  // the fork evaluates these too
    std::vector<float> lp;
    try {
        lp = backend_.score(t.seq, t.probe_tokens);
    } catch (const Error & e) {
        // No free sequence for the throwaway fork, or no room: skip this one, try at the next point.
        t.next_probe_at = t.rec.generated_tokens + t.probe.every;
        return;
    }
    double sum = 0;
    for (float x : lp) sum -= x;
    const double nll = lp.empty() ? 0.0 : sum / static_cast<double>(lp.size());
    t.rec.probes.push_back({t.rec.generated_tokens, nll});
    t.rec.probe_tokens += pending + static_cast<int64_t>(lp.size());
    t.rec.probe_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    t.next_probe_at = t.rec.generated_tokens + t.probe.every;
    const std::string d = controller_of(r).on_probe({.thread = t.rec, .nll = nll, .baseline = t.rec.probes.front().nll});
    if (!d.empty()) decide(r, t, "probe", d);
}

}  // namespace forkjoin::runtime
