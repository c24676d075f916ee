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
         .since_start = t.rec.generated_tokens - t.rec.probes[t.baseline_probe].generated,
         // Compacted, the context is clean (what came before its own start is gone): its new baseline is
         // the reference, as a clean thread's first probe is.
         .reference = t.rec.compactions == 0 ? t.rec.probe_reference : std::nullopt});
    if (!d.reason.empty()) decide(r, t, "probe", d.reason);
    if (d.compact_to) {
        compact(r, t, *d.compact_to);
    } else if (d.summarize) {
        summarize(r, t, *d.summarize);
    }
}

std::string Runtime::compaction_refused(const Thread & t) const {
    if (!t.rec.spawns.empty()) return "refused: the thread has spawned, and its joins would be lost";
    if (t.request.forked) return "refused: a forked child shares its parent's context";
    if (t.summary_of >= 0) return "refused: a summarizer is not compacted";
    return {};
}

void Runtime::compact(Request & r, Thread & t, const std::string & text) {
    if (const std::string why = compaction_refused(t); !why.empty()) {
        decide(r, t, "compact", why);
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

void Runtime::summarize(Request & r, Thread & t, const SummaryPlan & plan) {
    if (const std::string why = compaction_refused(t); !why.empty()) {
        decide(r, t, "compact", why);
        return;
    }
    if (plan.max_tokens <= 0 || plan.instruction.empty()) {
        decide(r, t, "compact", "refused: a summary needs an instruction and a token budget");
        return;
    }
    // A forked child of t in no spawn, reading t's whole context and the instruction; plain text
    // (the request's dialect would read its markup as spawns of its own).
    static const std::unique_ptr<dialects::Dialect> plain = dialects::make_plain_dialect();
    auto s = std::make_unique<Thread>();
    s->rec.id = static_cast<int>(r.threads.size());
    s->rec.parent = t.rec.id;
    s->rec.depth = t.rec.depth + 1;
    s->rec.label = "summary";
    s->request.label = "summary";
    s->request.forked = true;
    s->request.prompt = plan.instruction;
    s->prompt = plan.instruction;
    s->own_from = t.parser->text().size();
    s->parser = plain->parser(t.parser->text() + plan.instruction);
    s->summary_of = t.rec.id;
    s->summary = plan;
    s->token_budget = std::min<int64_t>(plan.max_tokens, r.limits.thread_token_budget);
    t.summarizer = s->rec.id;
    ++t.rec.summaries;
    t.rec.state = ThreadState::waiting;
    if (!r.options.script) backend_.set_generating(t.seq, false);
    const int id = s->rec.id;
    r.queue.push_front(id);  // its parent holds a sequence and waits on it: it goes first
    r.threads.push_back(std::move(s));
    decide(r, t, "compact", "summarizing: thread " + std::to_string(id) + " writes a summary of at most " +
                                std::to_string(r.threads.back()->token_budget) + " tokens");
    emit(r, {.kind = EventKind::thread_queued, .thread = id, .parent = t.rec.id, .label = "summary"});
}

void Runtime::finish_summary(Request & r, Thread & t) {
    Thread & s = *r.threads[static_cast<size_t>(t.summarizer)];
    if (!ended(s.rec.state)) return;
    t.summarizer = -1;
    t.rec.state = ThreadState::running;
    if (!r.options.script) backend_.set_generating(t.seq, true);
    const size_t from = std::min(s.rec.text.size(), s.own_from + s.summary.instruction.size());
    std::string summary = s.rec.text.substr(from);
    while (!summary.empty() && (summary.back() == '\n' || summary.back() == ' ')) summary.pop_back();
    size_t first = 0;
    while (first < summary.size() && (summary[first] == '\n' || summary[first] == ' ')) ++first;
    summary.erase(0, first);
    if (s.rec.state != ThreadState::done || summary.empty()) {
        decide(r, t, "compact", "summary " + std::string(s.rec.state != ThreadState::done ? "failed (" + s.rec.end_reason + ")" : "empty") +
                                    ": the thread goes on as it was");
        check_limits(r, t);
        return;
    }
    compact(r, t, t.prompt + s.summary.lead + summary + "\n");
    check_limits(r, t);
}

int64_t Runtime::token_budget(const Request & r, const Thread & t) const {
    return t.token_budget > 0 ? t.token_budget : r.limits.thread_token_budget;
}

}  // namespace forkjoin::runtime
