#include "runtime/runtime_state.h"

#include <algorithm>
#include <thread>
#include <deque>

namespace forkjoin::runtime {

const char * thread_state_name(ThreadState s) {
    switch (s) {
        case ThreadState::queued: return "queued";
        case ThreadState::running: return "running";
        case ThreadState::waiting: return "waiting";
        case ThreadState::done: return "done";
        case ThreadState::failed: return "failed";
        case ThreadState::cancelled: return "cancelled";
    }
    return "?";
}

const char * finish_reason(const RequestResult & result) {
    if (result.ok || !result.limit) return "stop";
    return *result.limit == LimitKind::timeout ? "timeout" : "length";
}

bool thread_ended(ThreadState s) { return s == ThreadState::done || s == ThreadState::failed || s == ThreadState::cancelled; }

const char * event_kind_name(EventKind kind) {
    switch (kind) {
        case EventKind::thread_queued: return "thread_queued";
        case EventKind::thread_started: return "thread_started";
        case EventKind::thread_preempted: return "thread_preempted";
        case EventKind::text: return "text";
        case EventKind::spawned: return "spawned";
        case EventKind::joined: return "joined";
        case EventKind::thread_ended: return "thread_ended";
        case EventKind::finished: return "finished";
    }
    return "?";
}

void Runtime::set_controller(std::shared_ptr<Controller> controller) {
    if (!controller) throw Error(ErrorCode::invalid_argument, "set_controller: null controller");
    controller_ = std::move(controller);
}

void Runtime::decide(Request & r, Thread & t, const char * kind, std::string reason) {
    ++progress_;
    t.rec.decisions.push_back({now_s(r), kind, std::move(reason)});
}

void Runtime::emit(Request & r, Event e) {
    ++progress_;
    if (!r.options.events) return;
    e.request = r.id;
    e.t_s = now_s(r);
    r.options.events(e);
}

Runtime::Runtime(Backend & backend, const dialects::Dialect & dialect, Limits limits)
    : backend_(backend), default_dialect_(&dialect), limits_(limits), controller_(std::make_shared<DefaultController>()) {}

Runtime::Runtime(Backend & backend, Limits limits)
    : backend_(backend), owned_dialect_(dialects::make_plain_dialect()), default_dialect_(owned_dialect_.get()),
      limits_(limits), controller_(std::make_shared<DefaultController>()) {}

Runtime::~Runtime() {
    for (auto & [id, r] : requests_) {
        for (auto & t : r->threads) {
            if (t->seq >= 0 && backend_.live(t->seq)) backend_.close(t->seq);
        }
    }
}

double Runtime::now_s(const Request & r) const {
    return std::chrono::duration<double>(Clock::now() - r.start).count();
}

RequestId Runtime::submit(const std::string & prompt, const RequestOptions & options) {
    stalled_since_.reset();  // something new to do: the watchdog's clock starts again
    auto r = std::make_unique<Request>();
    r->id = next_request_++;
    r->options = options;
    r->dialect = options.dialect ? options.dialect.get() : default_dialect_;
    r->controller = options.controller.get();
    r->limits = options.limits.value_or(limits_);
    r->limits.max_threads = limits_.max_threads;
    if (r->limits.max_depth < 0) r->limits.max_depth = r->dialect->default_max_depth();
    r->steps_at_start = steps_;
    r->decoded_at_start = decoded_;
    auto root = std::make_unique<Thread>();
    root->prompt = prompt;
    root->parser = r->dialect->parser(prompt);
    r->threads.push_back(std::move(root));
    r->queue.push_back(0);
    const RequestId id = r->id;
    Request & req = *r;
    requests_[id] = std::move(r);
    emit(req, {.kind = EventKind::thread_queued, .thread = 0});
    return id;
}

bool Runtime::finished(RequestId request) const {
    auto it = requests_.find(request);
    return it != requests_.end() && it->second->result.finished;
}

const RequestResult & Runtime::result(RequestId request) const {
    auto it = requests_.find(request);
    if (it == requests_.end()) throw Error(ErrorCode::invalid_argument, "no request " + std::to_string(request));
    return it->second->result;
}

void Runtime::forget(RequestId request) {
    auto it = requests_.find(request);
    if (it == requests_.end()) return;
    if (!it->second->result.finished) throw Error(ErrorCode::invalid_argument, "forget: request " + std::to_string(request) + " is still running");
    requests_.erase(it);
}

RuntimeStats Runtime::stats() const {
    RuntimeStats st;
    for (const auto & [rid, rp] : requests_) {
        if (rp->result.finished) continue;
        ++st.requests;
        st.requests_queued += rp->threads.size() == 1 && rp->threads[0]->rec.state == ThreadState::queued;
        for (const auto & t : rp->threads) {
            st.threads_running += t->rec.state == ThreadState::running;
            st.threads_waiting += t->rec.state == ThreadState::waiting;
            st.threads_queued += t->rec.state == ThreadState::queued;
        }
    }
    st.decode_steps = steps_;
    st.decoded_tokens = decoded_;
    st.failed_steps = failed_steps_;
    return st;
}

void Runtime::feed_scripts() {
    for (auto & [rid, rp] : requests_) {
        Request & r = *rp;
        if (!r.options.script) continue;
        for (size_t i = 0; i < r.threads.size(); ++i) {
            Thread & t = *r.threads[i];
            if (t.rec.state != ThreadState::running || backend_.n_pending(t.seq) > 0) continue;
            t.rec.text = t.parser->text();
            std::optional<std::string> piece = r.options.script(t.rec);
            if (!piece) {
                end_thread(r, t, ThreadState::done, "");
                continue;
            }
            // A script stands for what the model would sample: its tags are the model's added
            // tokens where the vocabulary has them, and it is read token by token, so the thread
            // stops where a sampled one would (the rest of the piece is never generated).
            std::vector<Token> tokens;
            try {
                tokens = backend_.vocabulary().tokenize(*piece, false, /*parse_special=*/true);
                backend_.append(t.seq, tokens);
            } catch (const Error & e) {
                end_thread(r, t, ThreadState::failed, e.what());
                continue;
            }
            for (size_t k = 0; k < tokens.size(); ++k) {
                const std::string & text = backend_.vocabulary().piece(tokens[k]);
                ++t.rec.generated_tokens;
                ++r.generated;
                t.token_end.push_back(t.parser->text().size() + text.size());
                emit(r, {.kind = EventKind::text, .thread = t.rec.id, .text = text});
                const auto event = on_text(r, t, text, static_cast<int32_t>(tokens.size() - k - 1));
                if (k + 1 == tokens.size()) break;
                // A repair rewrote the context from inside the piece: the rest of it is gone already.
                if (event == dialects::EventKind::repair) break;
                if (t.rec.state == ThreadState::running) continue;
                // Stopped by its markup or a limit: the script's later tokens were never generated.
                if (t.seq >= 0 && backend_.live(t.seq)) {
                    backend_.truncate(t.seq, backend_.length(t.seq) - static_cast<int32_t>(tokens.size() - k - 1));
                }
                break;
            }
        }
    }
}

std::optional<dialects::EventKind> Runtime::on_text(Request & r, Thread & t, const std::string & piece, int32_t ahead) {
    auto event = t.parser->feed(piece);
    t.rec.max_context = std::max<int64_t>(t.rec.max_context, backend_.length(t.seq) - ahead);
    if (!event) {
        check_limits(r, t, ahead);
        return std::nullopt;
    }
    switch (event->kind) {
        case dialects::EventKind::malformed:
            end_thread(r, t, ThreadState::failed, "malformed markup: " + event->reason);
            break;
        case dialects::EventKind::end:
            end_thread(r, t, ThreadState::done, "");
            break;
        case dialects::EventKind::repair: {
            const std::string text = t.parser->text().substr(0, event->repair_from) + event->repair_text;
            decide(r, t, "repair", event->reason);
            if (!retext(r, t, event->repair_from, text, "repair")) break;
            t.parser = make_parser(r, t, text);
            check_limits(r, t);  // the repair rewrote the sequence: nothing of the piece is ahead any more
            break;
        }
        case dialects::EventKind::spawn:
            on_spawn(r, t, std::move(event->spawn));
            break;
    }
    return event->kind;
}

bool Runtime::hit_limit(Request & r, Thread & t, LimitKind kind, int64_t value) {
    const LimitDecision d = controller_of(r).on_limit({.thread = t.rec, .kind = kind, .limits = r.limits, .value = value});
    decide(r, t, "limit", std::string(limit_kind_name(kind)) + ": " + d.reason);
    switch (d.action) {
        case LimitAction::extend:
            switch (kind) {
                case LimitKind::thread_tokens: r.limits.thread_token_budget += static_cast<int>(d.extend_by); break;
                case LimitKind::context_window: r.limits.max_context += static_cast<int>(d.extend_by); break;
                case LimitKind::request_tokens: r.limits.total_token_budget += d.extend_by; break;
                case LimitKind::timeout: r.limits.timeout_s += static_cast<double>(d.extend_by) / 1000.0; break;
            }
            return false;
        case LimitAction::fail_thread:
            if (t.rec.id == 0) r.result.limit = kind;
            end_thread(r, t, ThreadState::failed, d.reason);
            return true;
        case LimitAction::cancel_request:
            r.result.limit = kind;
            end_request(r, d.reason);
            return true;
    }
    return false;
}

void Runtime::check_limits(Request & r, Thread & t, int32_t ahead) {
    if (t.rec.state != ThreadState::running) return;
    const int64_t context = backend_.length(t.seq) - ahead;
    if (t.rec.generated_tokens >= token_budget(r, t)) {
        // A summary at its length is written, not failed.
        if (t.summary_of >= 0) {
            end_thread(r, t, ThreadState::done, "summary length (" + std::to_string(t.token_budget) + " tokens)");
            return;
        }
        hit_limit(r, t, LimitKind::thread_tokens, t.rec.generated_tokens);
    } else if (r.limits.max_context > 0 && context >= r.limits.max_context) {
        hit_limit(r, t, LimitKind::context_window, context);
    }
}

void Runtime::check_request_limits(Request & r) {
    if (r.root_ended) return;
    Thread & root = *r.threads[0];
    if (r.generated >= r.limits.total_token_budget) {
        hit_limit(r, root, LimitKind::request_tokens, r.generated);
    } else if (r.limits.timeout_s > 0 && now_s(r) > r.limits.timeout_s) {
        hit_limit(r, root, LimitKind::timeout, static_cast<int64_t>(now_s(r) * 1000));
    }
}

std::unique_ptr<dialects::ThreadParser> Runtime::make_parser(const Request & r, const Thread & t, std::string text) const {
    return t.rec.parent < 0 ? r.dialect->parser(std::move(text)) : r.dialect->child_parser(std::move(text), t.request);
}

void Runtime::release_seq(Request & r, Thread & t) {
    if (t.seq >= 0 && backend_.live(t.seq)) {
        const int64_t decoded = backend_.length(t.seq) - backend_.n_pending(t.seq);
        if (decoded > t.decoded_seen) t.rec.decoded_tokens += decoded - t.decoded_seen;
        backend_.close(t.seq);
    }
    if (t.seq >= 0) {
        by_seq_.erase(t.seq);
        --live_threads_;
        --r.live;
    }
    t.seq = -1;
    t.awaiting_splice = false;
}

void Runtime::append_offsets(Thread & t, const std::vector<Token> & tokens, size_t offset) const {
    for (auto tok : tokens) t.token_end.push_back(offset += backend_.vocabulary().piece(tok).size());
}

void Runtime::end_thread(Request & r, Thread & t, ThreadState state, const std::string & reason) {
    if (ended(t.rec.state)) return;
    // A parent that ends takes its running children with it.
    for (int id : t.spawn_slots) {
        if (id >= 0) end_thread(r, *r.threads[static_cast<size_t>(id)], ThreadState::cancelled, "parent ended");
    }
    if (t.summarizer >= 0) end_thread(r, *r.threads[static_cast<size_t>(t.summarizer)], ThreadState::cancelled, "parent ended");
    if (t.rec.state == ThreadState::queued) {
        r.queue.erase(std::remove(r.queue.begin(), r.queue.end(), t.rec.id), r.queue.end());
    }
    const bool keep_for_splice = state != ThreadState::cancelled && t.request.forked && t.summary_of < 0 && t.rec.parent >= 0 &&
                                 r.threads[static_cast<size_t>(t.rec.parent)]->rec.state == ThreadState::waiting &&
                                 t.seq >= 0 && backend_.live(t.seq);
    if (keep_for_splice) {
        backend_.set_generating(t.seq, false);  // its cells wait for the parent's KV join
        t.awaiting_splice = true;
    } else {
        release_seq(r, t);
    }
    t.rec.state = state;
    t.rec.end_reason = reason;
    t.rec.end_s = now_s(r);
    t.rec.text = t.parser->text();
    finish_confidence(t);
    // At or under a nested search: the text read back through each nested search up to the root.
    t.rec.request_text.clear();
    for (const Thread * at = &t; at; at = at->rec.parent >= 0 ? r.threads[static_cast<size_t>(at->rec.parent)].get() : nullptr) {
        if (at->read_back) t.rec.request_text = at->read_back(t.rec.in_request_terms());
    }
    controller_of(r).on_thread_ended(t.rec);
    emit(r, {.kind = EventKind::thread_ended, .thread = t.rec.id, .parent = t.rec.parent, .label = t.rec.label, .text = reason, .state = state});
    if (t.rec.id == 0) {
        r.root_ended = true;
        r.result.ok = state == ThreadState::done;
        r.result.end_reason = reason;
        r.result.text = t.rec.text;
        for (auto & other : r.threads) {
            if (!ended(other->rec.state)) end_thread(r, *other, ThreadState::cancelled, "request ended");
        }
        return;
    }
    if (t.rec.parent < 0 || t.summary_of >= 0) return;  // a summary is no sub-task: not in children's costs
    ++r.children_finished;
    r.children_tokens += t.rec.generated_tokens;
    Thread & parent = *r.threads[static_cast<size_t>(t.rec.parent)];
    // A held sibling (SpawnDecision::at_once) takes its place; one this end settles is cancelled below
    // before it can start.
    if (parent.rec.state == ThreadState::waiting && !r.root_ended) start_held(r, parent, t.rec.id);
    if (state != ThreadState::done || parent.rec.state != ThreadState::waiting || r.root_ended) return;
    // Has this child settled its parent's question? Then its siblings need not run on.
    std::vector<int> siblings;
    for (int id : parent.spawn_slots) {
        if (id >= 0 && id != t.rec.id && !ended(r.threads[static_cast<size_t>(id)]->rec.state)) siblings.push_back(id);
    }
    if (siblings.empty()) return;
    const ChildEndDecision d = controller_of(r).on_child_ended({.parent = parent.rec, .child = t.rec, .siblings_running = static_cast<int>(siblings.size())});
    if (!d.cancel_siblings) return;
    int64_t spent = 0;
    int never_started = 0;  // held back by the spawn's at_once, or not admitted yet
    for (int id : siblings) {
        spent += r.threads[static_cast<size_t>(id)]->rec.generated_tokens;
        never_started += r.threads[static_cast<size_t>(id)]->admitted == 0;
    }
    parent.held.clear();  // cancelled below, before they start
    decide(r, parent, "stop", "cancelled " + std::to_string(siblings.size()) + " siblings of thread " + std::to_string(t.rec.id) +
                                  " (they had generated " + std::to_string(spent) + " tokens" +
                                  (never_started > 0 ? "; " + std::to_string(never_started) + " never started" : "") + "): " + d.reason);
    for (int id : siblings) end_thread(r, *r.threads[static_cast<size_t>(id)], ThreadState::cancelled, "stopped early: " + d.reason);
}

Controller & Runtime::controller_of(const Request & r) const {
    return r.controller ? *r.controller : *controller_;
}

void Runtime::end_request(Request & r, const std::string & reason) {
    end_thread(r, *r.threads[0], ThreadState::cancelled, reason);
}

void Runtime::cancel(RequestId request, const std::string & reason) {
    stalled_since_.reset();
    auto it = requests_.find(request);
    if (it == requests_.end() || it->second->result.finished) return;
    end_request(*it->second, reason);
    finalize(*it->second);
}

void Runtime::finalize(Request & r) {
    if (r.result.finished || !r.root_ended) return;
    Metrics & m = r.result.metrics;
    m.threads = static_cast<int>(r.threads.size());
    std::vector<int64_t> chain(r.threads.size(), 0);
    std::vector<int64_t> summaries(r.threads.size(), 0);  // its summarizers' chains: it waited on them
    std::vector<int64_t> until_end(r.threads.size(), 0);  // a child's chain from its spawn to its end
    for (size_t i = r.threads.size(); i-- > 0;) {  // children have larger ids than their parents
        const ThreadRecord & t = r.threads[i]->rec;
        m.total_tokens += t.decoded_tokens;
        m.generated_tokens += t.generated_tokens;
        m.max_context_tokens = std::max(m.max_context_tokens, t.max_context);
        int64_t c = t.generated_tokens + summaries[i];
        for (const auto & spawn : t.spawns) {
            // A held child (SpawnDecision::at_once) ends after the sibling of the same spawn whose end
            // started it, which has a smaller id (it started first): siblings are taken in id order.
            std::vector<int> ids = spawn;
            std::sort(ids.begin(), ids.end());
            int64_t longest = 0;
            for (int id : ids) {
                const int after = r.threads[static_cast<size_t>(id)]->started_after;
                until_end[static_cast<size_t>(id)] = chain[static_cast<size_t>(id)] + (after >= 0 ? until_end[static_cast<size_t>(after)] : 0);
                longest = std::max(longest, until_end[static_cast<size_t>(id)]);
            }
            c += longest;
        }
        chain[i] = c;
        if (r.threads[i]->summary_of >= 0) summaries[static_cast<size_t>(r.threads[i]->summary_of)] += c;
    }
    m.sequential_tokens = chain[0];
    m.prompt_tokens = r.threads[0]->rec.prompt_tokens;
    m.decode_steps = steps_ - r.steps_at_start;
    m.mean_batch = m.decode_steps ? static_cast<double>(decoded_ - r.decoded_at_start) / static_cast<double>(m.decode_steps) : 0.0;
    m.wall_s = now_s(r);
    for (const auto & t : r.threads) r.result.threads.push_back(t->rec);
    r.result.finished = true;
    emit(r, {.kind = EventKind::finished, .thread = 0, .text = r.result.end_reason, .state = r.threads[0]->rec.state});
}

std::pair<Runtime::Request *, Runtime::Thread *> Runtime::owner_of(SeqId seq) {
    auto it = by_seq_.find(seq);
    if (it == by_seq_.end()) return {nullptr, nullptr};
    Request & r = *requests_.at(it->second.first);
    return {&r, r.threads[static_cast<size_t>(it->second.second)].get()};
}

void Runtime::count_decoded() {
    for (auto & [seq, owner] : by_seq_) {
        Thread & t = *requests_.at(owner.first)->threads[static_cast<size_t>(owner.second)];
        const int64_t decoded = backend_.length(seq) - backend_.n_pending(seq);
        if (decoded > t.decoded_seen) t.rec.decoded_tokens += decoded - t.decoded_seen;
        t.decoded_seen = decoded;  // a truncation lowers it: tokens decoded again count again
    }
}

void Runtime::backend_step() {
    const StepResult * res = nullptr;
    try {
        res = &backend_.step();
    } catch (const std::exception & e) {
        // The backend could not say which sequence failed: every thread with input in this step fails,
        // the others (waiting, queued, idle) go on.
        ++failed_steps_;
        std::vector<std::pair<Request *, Thread *>> hit;
        for (auto & [seq, owner] : by_seq_) {
            if (backend_.live(seq) && backend_.n_pending(seq) > 0) hit.push_back(owner_of(seq));
        }
        for (auto [r, t] : hit) {
            if (!ended(t->rec.state)) end_thread(*r, *t, ThreadState::failed, std::string("decode failed: ") + e.what());
        }
        return;
    }
    ++steps_;
    decoded_ += res->n_decoded;
    count_decoded();
    for (const auto & s : res->sampled) {
        auto [owner, thread] = owner_of(s.seq);
        if (!thread) continue;
        Request & r = *owner;
        Thread & t = *thread;
        if (t.rec.state != ThreadState::running) continue;
        ++t.rec.generated_tokens;
        ++r.generated;
        if (backend_.vocabulary().is_end_of_generation(s.token)) {
            // The end-of-text token is not part of the text: never decode it into a context.
            backend_.truncate(t.seq, backend_.length(t.seq) - 1);
            end_thread(r, t, ThreadState::done, "");
            continue;
        }
        const bool ask = observe_confidence(r, t, s);
        const std::string & piece = backend_.vocabulary().piece(s.token);
        t.token_end.push_back(t.parser->text().size() + piece.size());
        emit(r, {.kind = EventKind::text, .thread = t.rec.id, .text = piece});
        on_text(r, t, piece);
        if (ask) ask_confidence(r, t);
    }
    // The context-rot monitor: threads at a probe point are probed now (a throwaway fork each). Listed
    // first: a probe's compaction that fails ends its thread, which leaves by_seq_.
    std::vector<std::pair<RequestId, int>> to_probe;
    for (const auto & [seq, owner] : by_seq_) {
        if (requests_.at(owner.first)->threads[static_cast<size_t>(owner.second)]->next_probe_at >= 0) to_probe.push_back(owner);
    }
    for (const auto & [rid, id] : to_probe) {
        Request & r = *requests_.at(rid);
        probe(r, *r.threads[static_cast<size_t>(id)]);
    }
    // A sequence that filled its own KV stream (per_sequence layout) cannot be helped by waiting, nor
    // can one whose decode failed on its own.
    for (const auto & b : res->blocked) {
        if (b.reason == ErrorCode::kv_cache_full) continue;
        auto [owner, thread] = owner_of(b.seq);
        if (thread && !ended(thread->rec.state)) {
            end_thread(*owner, *thread, ThreadState::failed,
                       b.reason == ErrorCode::decode_failed ? "decode failed: " + b.message : b.message);
        }
    }
    if (res->n_decoded == 0 && !res->blocked.empty()) {
        // Nothing could advance: a blocked thread gives its cells back (runtime/scheduler.h): the
        // youngest preemptible one is preempted (queued again, to resume by recomputing its context,
        // as vLLM preempts), else the youngest fails. Youngest by admission across all requests
        // (start_s counts from each request's own start).
        struct Pick {
            Thread * thread = nullptr;
            Request * owner = nullptr;
            void consider(Request * r, Thread * t) {
                if (!thread || t->admitted > thread->admitted) thread = t, owner = r;
            }
        } youngest, youngest_preemptible;
        int blocked = 0;
        for (const auto & b : res->blocked) {
            auto [r, t] = owner_of(b.seq);
            if (!t || ended(t->rec.state)) continue;
            ++blocked;
            youngest.consider(r, t);
            if (preemptible(*t)) youngest_preemptible.consider(r, t);
        }
        // Alone, it would come back to the same place (the cells are held by threads that wait).
        if (youngest_preemptible.thread && blocked > 1) {
            preempt(*youngest_preemptible.owner, *youngest_preemptible.thread, "KV cache full: no thread could advance");
        } else if (youngest.thread) {
            end_thread(*youngest.owner, *youngest.thread, ThreadState::failed, "kv cache full");
        }
    }
}

bool Runtime::preemptible(const Thread & t) const {
    // Running only: a parent that just spawned still has its spawn block to decode, but it waits on
    // its children, and resuming it as running would have it write (and spawn) again.
    return t.rec.state == ThreadState::running && !t.request.forked && !t.kv_joined && t.seq >= 0 && backend_.live(t.seq);
}

void Runtime::preempt(Request & r, Thread & t, const std::string & why) {
    const std::vector<Token> & tokens = backend_.tokens(t.seq);
    t.resume.assign(tokens.begin(), tokens.end());
    release_seq(r, t);
    t.rec.state = ThreadState::queued;
    ++t.rec.preemptions;
    r.queue.push_front(t.rec.id);  // first of its request's queue: it resumes before new threads start
    decide(r, t, "preempt", why + "; it resumes by recomputing its " + std::to_string(t.resume.size()) + " tokens");
    emit(r, {.kind = EventKind::thread_preempted, .thread = t.rec.id, .parent = t.rec.parent, .label = t.rec.label, .text = why});
}

bool Runtime::step() {
    const uint64_t progress_before = progress_;
    const int64_t decoded_before = decoded_;
    admit();
    feed_scripts();
    const bool pending = backend_.has_pending();
    if (pending) backend_step();
    bool active = false;
    for (auto & [rid, rp] : requests_) {
        Request & r = *rp;
        if (r.result.finished) continue;
        check_request_limits(r);
        for (size_t i = 0; i < r.threads.size() && !r.root_ended; ++i) {
            Thread & t = *r.threads[i];
            if (t.rec.state != ThreadState::waiting) continue;
            if (t.summarizer >= 0) {
                finish_summary(r, t);
            } else if (t.spawn_deferred) {
                decide_spawn(r, t);  // the controller deferred it: ask again
            } else {
                try_join(r, t);
            }
        }
        finalize(r);
        active |= !r.result.finished;
    }
    if (!active || pending || progress_ != progress_before || decoded_ != decoded_before) {
        stalled_since_.reset();
        return active;
    }
    // Nothing decoded, nothing admitted, nothing ended or joined, nothing decided: no thread can move
    // until something outside the runtime changes, and nothing outside it can (a controller deferring
    // forever, a thread waiting for room no one will free). Wait a little instead of spinning; past
    // kStallSeconds the stuck requests fail with what they were waiting for.
    const auto now = std::chrono::steady_clock::now();
    if (!stalled_since_) stalled_since_ = now;
    if (std::chrono::duration<double>(now - *stalled_since_).count() < kStallSeconds) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return active;
    }
    stalled_since_.reset();
    fail_stalled();
    return true;
}

void Runtime::fail_stalled() {
    for (auto & [rid, rp] : requests_) {
        Request & r = *rp;
        if (r.result.finished || r.root_ended) continue;
        int queued = 0, deferred = 0, summarizing = 0, waiting = 0, running = 0;
        std::string wait_reason, defer_reason;
        for (const auto & t : r.threads) {
            switch (t->rec.state) {
                case ThreadState::queued:
                    ++queued;
                    if (wait_reason.empty()) wait_reason = t->wait_reason;
                    break;
                case ThreadState::waiting:
                    if (t->spawn_deferred) {
                        ++deferred;
                        if (defer_reason.empty()) defer_reason = t->defer_reason;
                    } else if (t->summarizer >= 0) {
                        ++summarizing;
                    } else {
                        ++waiting;
                    }
                    break;
                case ThreadState::running: ++running; break;
                default: break;
            }
        }
        auto because = [](const std::string & reason) { return reason.empty() ? std::string() : " (" + reason + ")"; };
        const std::string why = "stalled: nothing could advance for " + std::to_string(static_cast<int>(kStallSeconds)) + " s (" +
                                std::to_string(running) + " running, " + std::to_string(queued) + " queued" + because(wait_reason) +
                                ", " + std::to_string(deferred) + " spawns deferred by the controller" + because(defer_reason) + ", " +
                                std::to_string(summarizing) + " waiting on a summary, " + std::to_string(waiting) + " waiting on children)";
        decide(r, *r.threads[0], "stall", why);
        end_thread(r, *r.threads[0], ThreadState::failed, why);  // and every thread still going with it
        finalize(r);
    }
}

void Runtime::run() {
    while (step()) {
    }
}

}  // namespace forkjoin::runtime
