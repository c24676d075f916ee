// The context-rot monitor: probes of a thread's recall on a throwaway fork, and compaction
// (runtime/controller.h ProbePlan, ProbeDecision).
#include "runtime/runtime_state.h"

#include <algorithm>

namespace forkjoin::runtime {

namespace {
double mean_nll(const std::vector<float> & lp) {
    double sum = 0;
    for (float x : lp) sum -= x;
    return lp.empty() ? 0.0 : sum / static_cast<double>(lp.size());
}
}  // namespace

std::optional<double> Runtime::reference_nll(Thread & t) {
    if (t.probe.reference.empty()) return std::nullopt;
    SeqId seq = -1;
    try {
        const std::vector<Token> context = backend_.vocabulary().tokenize(t.probe.reference, false, /*parse_special=*/true);
        if (context.empty()) return std::nullopt;
        seq = backend_.open(context, {}, /*generating=*/false);
        const std::vector<float> lp = backend_.score(seq, t.probe_tokens);
        backend_.close(seq);
        t.rec.probe_tokens += static_cast<int64_t>(context.size() + lp.size());
        return mean_nll(lp);
    } catch (const Error &) {
        // No free sequence or no room: the monitor goes on against the thread's own baseline.
        if (seq >= 0 && backend_.live(seq)) backend_.close(seq);
        return std::nullopt;
    }
}

void Runtime::probe(Request & r, Thread & t) {
    if (t.next_probe_at < 0 || t.rec.generated_tokens < t.next_probe_at || t.rec.state != ThreadState::running) return;
    if (!backend_.capabilities().score) {
        t.next_probe_at = -1;
        decide(r, t, "probe", "no probes: the backend cannot score");
        return;
    }
    // The baseline waits for the thread's starting context to be decoded: a fork would evaluate all of
    // it a second time.
    if (t.rec.probes.empty() && backend_.length(t.seq) - backend_.n_pending(t.seq) < t.rec.prompt_tokens) return;
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
    const double nll = mean_nll(lp);
    t.rec.probes.push_back({t.rec.generated_tokens, nll});
    t.rec.probe_tokens += pending + static_cast<int64_t>(lp.size());
    if (t.rec.probes.size() == 1) t.rec.probe_reference = reference_nll(t);
    t.rec.probe_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    t.next_probe_at = t.rec.generated_tokens + t.probe.every;
    t.rec.text = t.parser->text();  // what a compaction starts from
    const ProbeDecision d = controller_of(r).on_probe(
        {.thread = t.rec, .nll = nll, .baseline = t.rec.probes[t.baseline_probe].nll,
         .since_start = t.rec.generated_tokens - t.rec.probes[t.baseline_probe].generated, .reference = t.rec.probe_reference});
    if (!d.reason.empty()) decide(r, t, "probe", d.reason);
    if (d.compact_to) compact(r, t, *d.compact_to);
}

void Runtime::compact(Request & r, Thread & t, const std::string & text) {
    if (!t.rec.spawns.empty()) {
        decide(r, t, "compact", "refused: the thread has spawned, and its joins would be lost");
        return;
    }
    if (t.request.forked) {
        decide(r, t, "compact", "refused: a forked child shares its parent's context");
        return;
    }
    const std::string old = t.parser->text();
    const size_t common = static_cast<size_t>(std::mismatch(old.begin(), old.end(), text.begin(), text.end()).first - old.begin());
    const int64_t before = backend_.length(t.seq);
    if (!retext(r, t, common, text, "compact")) return;
    t.parser = make_parser(r, t, text);
    ++t.rec.compactions;
    // What went: the bytes after the common prefix, shown by their ends.
    const std::string dropped = old.substr(common);
    auto one_line = [](std::string s) {
        std::replace(s.begin(), s.end(), '\n', ' ');
        return s;
    };
    const std::string shown = dropped.size() <= 120 ? one_line(dropped)
                                                    : one_line(dropped.substr(0, 60)) + " ... " + one_line(dropped.substr(dropped.size() - 60));
    decide(r, t, "compact", "context " + std::to_string(before) + " -> " + std::to_string(backend_.length(t.seq)) + " tokens; dropped " +
                                std::to_string(dropped.size()) + " bytes: \"" + shown + "\"");
    // The next probe, at once, is the new baseline.
    t.baseline_probe = t.rec.probes.size();
    t.next_probe_at = t.rec.generated_tokens;
}

}  // namespace forkjoin::runtime
