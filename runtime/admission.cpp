// Admission: which queued thread starts, as the controller decides and the backend has room.
#include "runtime/runtime_state.h"

#include <algorithm>

namespace forkjoin::runtime {

int Runtime::running_threads(const Request * only) const {
    int n = 0;
    for (const auto & [rid, rp] : requests_) {
        if (only && rp.get() != only) continue;
        for (const auto & t : rp->threads) n += t->rec.state == ThreadState::running;
    }
    return n;
}

int64_t Runtime::headroom(const Request & r, const Thread & t) const {
    const int64_t expected = std::min<int64_t>(token_budget(r, t), kExpectedThreadTokensCap);
    return std::max<int64_t>(0, expected - t.rec.generated_tokens);
}

AdmitDecision Runtime::ask_admit(const Request & r, const Thread & t) const {
    int64_t promised = 0;
    for (const auto & [rid, rp] : requests_) {
        for (const auto & other : rp->threads) {
            if (other->rec.state == ThreadState::running) promised += headroom(*rp, *other);
        }
    }
    const KvUsage u = backend_.usage();
    // Bytes bound tokens from above for every vocabulary here, so the prompt's size is a safe estimate.
    const int64_t prompt = !t.resume.empty()    ? static_cast<int64_t>(t.resume.size())
                           : t.request.forked ? static_cast<int64_t>(t.request.prompt.size())
                                              : static_cast<int64_t>(t.prompt.size());
    return controller_of(r).on_admit({.thread = t.rec,
                                  .limits = r.limits,
                                  .max_threads = limits_.max_threads,
                                  .running_threads = running_threads(),
                                  .running_in_request = running_threads(&r),
                                  .prompt_estimate = prompt,
                                  .free_cells = static_cast<int64_t>(u.cells_total) - u.cells_used - u.pending_tokens,
                                  .promised_cells = promised,
                                  .headroom = headroom(r, t),
                                  .free_sequences = backend_.max_sequences() - u.live_sequences,
                                  // Not "no sequence live": a parent waiting on its children holds its
                                  // cells, and its children, promised less room than they might need,
                                  // would wait for them forever.
                                  .nothing_running = running_threads() == 0});
}

void Runtime::started(Request & r, Thread & t, bool resumed) {
    r.queue.pop_front();
    by_seq_[t.seq] = {r.id, t.rec.id};
    ++live_threads_;
    ++r.live;
    t.rec.state = ThreadState::running;
    if (t.waits > 0) decide(r, t, "admit", std::string(resumed ? "resumed" : "started") + " after waiting " + std::to_string(t.waits) + " steps (" + t.wait_reason + ")");
    t.waits = 0;
    t.wait_reason.clear();
    if (resumed) {
        emit(r, {.kind = EventKind::thread_started, .thread = t.rec.id, .parent = t.rec.parent, .label = t.rec.label});
        return;
    }
    t.rec.start_s = now_s(r);
    t.admitted = ++admissions_;
    if (t.summary_of < 0) t.probe = controller_of(r).probe_plan(t.rec, t.parser->text());  // a summary is not probed
    if (t.probe.every > 0 && !t.probe.text.empty()) {
        try {
            t.probe_tokens = backend_.vocabulary().tokenize(t.probe.text);
            t.next_probe_at = 0;
        } catch (const Error & e) {
            decide(r, t, "probe", std::string("no probes: ") + e.what());
        }
    }
    emit(r, {.kind = EventKind::thread_started, .thread = t.rec.id, .parent = t.rec.parent, .label = t.rec.label});
}

void Runtime::admit() {
    for (auto & [rid, rp] : requests_) {
        Request & r = *rp;
        while (!r.queue.empty()) {
            Thread & t = *r.threads[static_cast<size_t>(r.queue.front())];
            const AdmitDecision d = ask_admit(r, t);
            if (d.action == AdmitAction::wait) {
                ++t.waits;
                t.wait_reason = d.reason;
                break;  // this request's queue waits; the next request may still fit
            }
            if (d.action == AdmitAction::fail) {
                r.queue.pop_front();
                decide(r, t, "admit", "refused: " + d.reason);
                end_thread(r, t, ThreadState::failed, d.reason);
                continue;
            }
            // No free sequence: it waits for one (a thread that ends frees it).
            auto no_sequence = [&] {
                ++t.waits;
                t.wait_reason = "no free sequence: all " + std::to_string(backend_.max_sequences()) + " in use";
            };
            if (!t.resume.empty()) {
                if (!admit_resumed(r, t)) no_sequence();
                if (t.rec.state == ThreadState::queued) break;
                continue;
            }
            if (t.request.forked) {
                if (!admit_forked(r, t)) no_sequence();
                if (t.rec.state == ThreadState::queued) break;
                continue;
            }
            std::vector<Token> tokens;
            try {
                // Control tokens written as text are the tokens (a chat template's markers, a checkpoint's
                // tags in a fresh child's prompt), as llama-server and vLLM read a prompt.
                tokens = backend_.vocabulary().tokenize(t.prompt, false, /*parse_special=*/true);
                // A fresh context starts as the model's own tokenizer starts one (BOS where it adds it).
                if (const auto start = backend_.vocabulary().start_token()) tokens.insert(tokens.begin(), *start);
            } catch (const Error & e) {
                r.queue.pop_front();
                end_thread(r, t, ThreadState::failed, std::string("prompt: ") + e.what());
                continue;
            }
            const size_t lead = backend_.vocabulary().start_token() ? 1 : 0;  // BOS spells no text
            if (tokens.size() <= lead || (r.limits.max_context > 0 && static_cast<int>(tokens.size()) >= r.limits.max_context)) {
                r.queue.pop_front();
                end_thread(r, t, ThreadState::failed,
                           tokens.size() <= lead ? "empty prompt" : "context window: the prompt alone fills it");
                continue;
            }
            const Sampling sampling = start_sampling(r, t);
            try {
                t.seq = backend_.open(tokens, sampling, /*generating=*/!r.options.script);
            } catch (const Error & e) {
                if (e.code() == ErrorCode::sequence_limit) {
                    no_sequence();
                    break;
                }
                r.queue.pop_front();
                end_thread(r, t, ThreadState::failed, e.what());
                continue;
            }
            t.rec.prompt_tokens = static_cast<int64_t>(tokens.size());
            t.rec.max_context = t.rec.prompt_tokens;
            t.decoded_seen = 0;
            t.token_end.clear();
            t.token_end.assign(lead, 0);
            append_offsets(t, std::vector<Token>(tokens.begin() + static_cast<std::ptrdiff_t>(lead), tokens.end()), 0);
            if (t.token_end.back() != t.prompt.size()) t.token_end.assign(tokens.size(), 0);  // pieces do not add up: never reuse
            started(r, t);
        }
    }
}

bool Runtime::admit_resumed(Request & r, Thread & t) {
    try {
        t.seq = backend_.open(t.resume, thread_sampling(r, t), /*generating=*/!r.options.script);
    } catch (const Error & e) {
        if (e.code() == ErrorCode::sequence_limit) return false;  // wait for a free sequence
        r.queue.pop_front();
        end_thread(r, t, ThreadState::failed, std::string("resuming after a preemption: ") + e.what());
        return true;
    }
    t.resume.clear();
    t.resume.shrink_to_fit();
    t.decoded_seen = 0;  // all of it is decoded again, and counts again
    started(r, t, /*resumed=*/true);
    return true;
}

bool Runtime::admit_forked(Request & r, Thread & t) {
    Thread & parent = *r.threads[static_cast<size_t>(t.rec.parent)];
    std::vector<Token> seed;
    const Sampling sampling = start_sampling(r, t);
    try {
        // A forked child's seed is the dialect's text (its tags: the model's added tokens where it has them).
        seed = backend_.vocabulary().tokenize(t.request.prompt, false, /*parse_special=*/true);
        t.seq = backend_.fork(parent.seq, sampling, /*generating=*/!r.options.script);
    } catch (const Error & e) {
        if (e.code() == ErrorCode::sequence_limit) return false;  // wait for a free sequence
        r.queue.pop_front();
        end_thread(r, t, ThreadState::failed, e.what());
        return true;
    }
    // The shared prefix was decoded for the parent: only what the child adds counts as its own.
    t.decoded_seen = backend_.length(t.seq) - backend_.n_pending(t.seq);
    t.token_end = parent.token_end;
    t.parent_tokens = parent.token_end.size();
    append_offsets(t, seed, t.own_from);
    started(r, t);
    try {
        backend_.append(t.seq, seed);
    } catch (const Error & e) {
        end_thread(r, t, ThreadState::failed, e.what());
        return true;
    }
    t.rec.prompt_tokens = static_cast<int64_t>(seed.size());  // the shared prefix is the parent's
    t.rec.max_context = backend_.length(t.seq);
    return true;
}

Sampling Runtime::sampling_of(const Request & r, const Thread & t) const {
    if (t.sampling) return *t.sampling;
    Sampling s = r.options.sampling;
    s.seed += static_cast<uint64_t>(t.rec.id);
    return s;
}

}  // namespace forkjoin::runtime
