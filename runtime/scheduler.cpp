#include "runtime/scheduler.h"

#include <algorithm>
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

bool thread_ended(ThreadState s) { return s == ThreadState::done || s == ThreadState::failed || s == ThreadState::cancelled; }

const char * event_kind_name(EventKind kind) {
    switch (kind) {
        case EventKind::thread_queued: return "thread_queued";
        case EventKind::thread_started: return "thread_started";
        case EventKind::text: return "text";
        case EventKind::spawned: return "spawned";
        case EventKind::joined: return "joined";
        case EventKind::thread_ended: return "thread_ended";
        case EventKind::finished: return "finished";
    }
    return "?";
}

namespace {
bool ended(ThreadState s) { return thread_ended(s); }
using Clock = std::chrono::steady_clock;
}  // namespace

struct Runtime::Thread {
    ThreadRecord rec;
    std::string prompt;
    std::unique_ptr<dialects::ThreadParser> parser;
    SeqId seq = -1;
    std::vector<size_t> token_end;  // byte offset in the text after each token of the sequence
    std::optional<dialects::SpawnRequest> spawn;
    std::vector<int> spawn_slots;   // child id per requested child; -1: not run (limits)
    dialects::ChildRequest request; // how its parent asked for it (children only)
    size_t own_from = 0;            // forked child: where its own text starts
    size_t parent_tokens = 0;       // forked child: the parent's tokens when forked
    bool awaiting_splice = false;   // forked child that ended: its cells wait for the KV join
    int64_t decoded_seen = 0;       // the sequence's decoded length when last counted
    std::optional<Sampling> sampling;  // its own (a re-explored child); else the request's, seeded by id
    ProbePlan probe;                   // the context-rot monitor's plan for it
    std::vector<Token> probe_tokens;
    int64_t next_probe_at = -1;        // generated tokens at the next probe; -1: none
    int join_rounds = 0;            // re-explorations of its current spawn (JoinDecision)
    bool spawn_deferred = false;    // its spawn waits for the controller's answer (SpawnDecision::defer)
    int64_t deferrals = 0;
    int64_t waits = 0;              // admission: steps it was told to wait
    std::string wait_reason;        // admission: why, the last time
};

struct Runtime::Request {
    RequestId id;
    RequestOptions options;
    const dialects::Dialect * dialect = nullptr;  // options.dialect, or the runtime's default
    Controller * controller = nullptr;            // options.controller, or the runtime's
    Limits limits;
    int children_finished = 0;                    // for Usage: children that ended, and their tokens
    int64_t children_tokens = 0;
    std::vector<std::unique_ptr<Thread>> threads;
    std::deque<int> queue;
    int live = 0;
    int64_t generated = 0;
    Clock::time_point start = Clock::now();
    int64_t steps_at_start = 0, decoded_at_start = 0;
    bool root_ended = false;
    RequestResult result;
};

Runtime::Runtime(Backend & backend, const dialects::Dialect & dialect, Limits limits)
    : backend_(backend), default_dialect_(&dialect), limits_(limits), controller_(std::make_shared<DefaultController>()) {}

Runtime::Runtime(Backend & backend, Limits limits)
    : backend_(backend), owned_dialect_(dialects::make_plain_dialect()), default_dialect_(owned_dialect_.get()),
      limits_(limits), controller_(std::make_shared<DefaultController>()) {}

void Runtime::set_controller(std::shared_ptr<Controller> controller) {
    if (!controller) throw Error(ErrorCode::invalid_argument, "set_controller: null controller");
    controller_ = std::move(controller);
}

void Runtime::decide(Request & r, Thread & t, const char * kind, std::string reason) {
    t.rec.decisions.push_back({now_s(r), kind, std::move(reason)});
}

void Runtime::emit(Request & r, Event e) {
    if (!r.options.events) return;
    e.request = r.id;
    e.t_s = now_s(r);
    r.options.events(e);
}

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
    auto r = std::make_unique<Request>();
    r->id = next_request_++;
    r->options = options;
    r->dialect = options.dialect ? options.dialect.get() : default_dialect_;
    r->controller = options.controller.get();
    r->limits = options.limits.value_or(limits_);
    r->limits.max_threads = limits_.max_threads;
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

int Runtime::running_threads(const Request * only) const {
    int n = 0;
    for (const auto & [rid, rp] : requests_) {
        if (only && rp.get() != only) continue;
        for (const auto & t : rp->threads) n += t->rec.state == ThreadState::running;
    }
    return n;
}

int64_t Runtime::headroom(const Request & r, const Thread & t) const {
    const int64_t expected = std::min<int64_t>(r.limits.thread_token_budget, kHeadroomCap);
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
    const int64_t prompt = t.request.forked ? static_cast<int64_t>(t.request.prompt.size()) : static_cast<int64_t>(t.prompt.size());
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
                                  .nothing_running = live_threads_ == 0});
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

void Runtime::started(Request & r, Thread & t) {
    r.queue.pop_front();
    by_seq_[t.seq] = {r.id, t.rec.id};
    ++live_threads_;
    ++r.live;
    t.rec.state = ThreadState::running;
    t.rec.start_s = now_s(r);
    if (t.waits > 0) decide(r, t, "admit", "started after waiting " + std::to_string(t.waits) + " steps (" + t.wait_reason + ")");
    t.probe = controller_of(r).probe_plan(t.rec, t.parser->text());
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
            if (t.request.forked) {
                if (!admit_forked(r, t)) break;
                continue;
            }
            std::vector<Token> tokens;
            try {
                tokens = backend_.vocabulary().tokenize(t.prompt);
            } catch (const Error & e) {
                r.queue.pop_front();
                end_thread(r, t, ThreadState::failed, std::string("prompt: ") + e.what());
                continue;
            }
            if (tokens.empty() || (r.limits.max_context > 0 && static_cast<int>(tokens.size()) >= r.limits.max_context)) {
                r.queue.pop_front();
                end_thread(r, t, ThreadState::failed,
                           tokens.empty() ? "empty prompt" : "context window: the prompt alone fills it");
                continue;
            }
            const Sampling sampling = sampling_of(r, t);
            try {
                t.seq = backend_.open(tokens, sampling, /*generating=*/!r.options.script);
            } catch (const Error & e) {
                if (e.code() == ErrorCode::sequence_limit) break;  // wait for a free sequence
                r.queue.pop_front();
                end_thread(r, t, ThreadState::failed, e.what());
                continue;
            }
            t.rec.prompt_tokens = static_cast<int64_t>(tokens.size());
            t.rec.max_context = t.rec.prompt_tokens;
            t.decoded_seen = 0;
            t.token_end.clear();
            append_offsets(t, tokens, 0);
            if (t.token_end.back() != t.prompt.size()) t.token_end.assign(tokens.size(), 0);  // pieces do not add up: never reuse
            started(r, t);
        }
    }
}

bool Runtime::admit_forked(Request & r, Thread & t) {
    Thread & parent = *r.threads[static_cast<size_t>(t.rec.parent)];
    std::vector<Token> seed;
    const Sampling sampling = sampling_of(r, t);
    try {
        seed = backend_.vocabulary().tokenize(t.request.prompt);
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
            std::vector<Token> tokens;
            try {
                tokens = backend_.vocabulary().tokenize(*piece);
                backend_.append(t.seq, tokens);
            } catch (const Error & e) {
                end_thread(r, t, ThreadState::failed, e.what());
                continue;
            }
            t.rec.generated_tokens += static_cast<int64_t>(tokens.size());
            r.generated += static_cast<int64_t>(tokens.size());
            append_offsets(t, tokens, t.parser->text().size());
            emit(r, {.kind = EventKind::text, .thread = t.rec.id, .text = *piece});
            on_text(r, t, *piece);
        }
    }
}

void Runtime::on_text(Request & r, Thread & t, const std::string & piece) {
    auto event = t.parser->feed(piece);
    t.rec.max_context = std::max<int64_t>(t.rec.max_context, backend_.length(t.seq));
    if (event && event->kind == dialects::EventKind::malformed) {
        end_thread(r, t, ThreadState::failed, "malformed markup: " + event->reason);
        return;
    }
    if (event && event->kind == dialects::EventKind::end) {
        end_thread(r, t, ThreadState::done, "");
        return;
    }
    if (event) {
        on_spawn(r, t, std::move(event->spawn));
        return;
    }
    check_limits(r, t);
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
            end_thread(r, t, ThreadState::failed, d.reason);
            return true;
        case LimitAction::cancel_request:
            end_request(r, d.reason);
            return true;
    }
    return false;
}

void Runtime::check_limits(Request & r, Thread & t) {
    if (t.rec.state != ThreadState::running) return;
    if (t.rec.generated_tokens >= r.limits.thread_token_budget) {
        hit_limit(r, t, LimitKind::thread_tokens, t.rec.generated_tokens);
    } else if (r.limits.max_context > 0 && backend_.length(t.seq) >= r.limits.max_context) {
        hit_limit(r, t, LimitKind::context_window, backend_.length(t.seq));
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

void Runtime::on_spawn(Request & r, Thread & t, dialects::SpawnRequest spawn) {
    t.rec.state = ThreadState::waiting;
    if (!r.options.script) backend_.set_generating(t.seq, false);
    t.spawn = std::move(spawn);
    t.spawn_deferred = true;
    t.deferrals = 0;
    t.join_rounds = 0;
    decide_spawn(r, t);
}

void Runtime::decide_spawn(Request & r, Thread & t) {
    const dialects::SpawnRequest & spawn = *t.spawn;
    const Usage usage = usage_of(r);
    const SpawnDecision d = controller_of(r).on_spawn(
        {.parent = t.rec, .requested = static_cast<int>(spawn.children.size()), .limits = r.limits, .children = spawn.children, .usage = usage});
    if (d.defer) {
        if (t.deferrals++ == 0) decide(r, t, "spawn", "deferred: " + d.reason);
        return;
    }
    t.spawn_deferred = false;
    t.spawn_slots.assign(spawn.children.size(), -1);
    // Which children run, in the order they start: the controller's order, else the first `run`.
    std::vector<size_t> chosen;
    if (!d.order.empty()) {
        for (int i : d.order) {
            if (i >= 0 && static_cast<size_t>(i) < spawn.children.size() &&
                std::find(chosen.begin(), chosen.end(), static_cast<size_t>(i)) == chosen.end()) {
                chosen.push_back(static_cast<size_t>(i));
            }
        }
    } else {
        for (size_t c = 0; c < std::min(spawn.children.size(), static_cast<size_t>(std::max(0, d.run))); ++c) chosen.push_back(c);
    }
    decide(r, t, "spawn", t.deferrals > 0 ? d.reason + " (after " + std::to_string(t.deferrals) + " deferrals)" : d.reason);
    std::vector<int> ids;
    for (size_t c : chosen) {
        const int id = add_child(r, t, c);
        t.spawn_slots[c] = id;
        ids.push_back(id);
    }
    t.rec.spawns.push_back(ids);
    // Children first: a listener learns of a thread before it sees it named as a child.
    for (int id : ids) {
        emit(r, {.kind = EventKind::thread_queued, .thread = id, .parent = t.rec.id, .label = r.threads[static_cast<size_t>(id)]->rec.label});
    }
    emit(r, {.kind = EventKind::spawned, .thread = t.rec.id, .parent = t.rec.parent, .children = ids});
}

int Runtime::add_child(Request & r, Thread & t, size_t slot) {
    const dialects::ChildRequest & request = t.spawn->children[slot];
    auto child = std::make_unique<Thread>();
    child->rec.id = static_cast<int>(r.threads.size());
    child->rec.parent = t.rec.id;
    child->rec.depth = t.rec.depth + 1;
    child->rec.label = request.label;
    child->request = request;
    child->prompt = request.prompt;
    if (child->request.forked) {
        child->own_from = t.parser->text().size();
        child->parser = r.dialect->child_parser(t.parser->text() + child->prompt, child->request);
    } else {
        child->parser = r.dialect->child_parser(child->prompt, child->request);
    }
    const int id = child->rec.id;
    r.queue.push_back(id);
    r.threads.push_back(std::move(child));
    return id;
}

Sampling Runtime::sampling_of(const Request & r, const Thread & t) const {
    if (t.sampling) return *t.sampling;
    Sampling s = r.options.sampling;
    s.seed += static_cast<uint64_t>(t.rec.id);
    return s;
}

Usage Runtime::usage_of(const Request & r) const {
    const KvUsage kv = backend_.usage();
    return {.generated = r.generated,
            .budget_left = r.limits.total_token_budget - r.generated,
            .children_finished = r.children_finished,
            .children_tokens = r.children_tokens,
            .free_cells = static_cast<int64_t>(kv.cells_total) - kv.cells_used - kv.pending_tokens,
            .total_cells = kv.cells_total};
}

bool Runtime::reexplore(Request & r, Thread & parent) {
    std::vector<const ThreadRecord *> children;
    for (int id : parent.spawn_slots) children.push_back(id < 0 ? nullptr : &r.threads[static_cast<size_t>(id)]->rec);
    const JoinDecision d = controller_of(r).on_join(
        {.parent = parent.rec, .children = children, .round = parent.join_rounds, .limits = r.limits, .usage = usage_of(r)});
    std::vector<int> slots;
    for (int s : d.rerun) {
        if (s >= 0 && static_cast<size_t>(s) < parent.spawn_slots.size() && std::find(slots.begin(), slots.end(), s) == slots.end()) slots.push_back(s);
    }
    if (slots.empty()) return false;
    ++parent.join_rounds;
    decide(r, parent, "validate", d.reason);
    std::vector<int> ids;
    for (int s : slots) {
        const int old = parent.spawn_slots[static_cast<size_t>(s)];
        if (old >= 0) release_seq(r, *r.threads[static_cast<size_t>(old)]);  // a forked child's cells waiting for a splice
        const int id = add_child(r, parent, static_cast<size_t>(s));
        Sampling sampling = r.options.sampling;
        sampling.temperature = d.temperature;
        sampling.seed = r.options.sampling.seed * 1000003ull + static_cast<uint64_t>(id) * 7919ull + static_cast<uint64_t>(parent.join_rounds);
        r.threads[static_cast<size_t>(id)]->sampling = sampling;
        parent.spawn_slots[static_cast<size_t>(s)] = id;
        ids.push_back(id);
    }
    // A round runs after the previous one: a spawn of its own in the tree (and in the dependency chain).
    parent.rec.spawns.push_back(ids);
    for (int id : ids) {
        emit(r, {.kind = EventKind::thread_queued, .thread = id, .parent = parent.rec.id, .label = r.threads[static_cast<size_t>(id)]->rec.label});
    }
    emit(r, {.kind = EventKind::spawned, .thread = parent.rec.id, .parent = parent.rec.parent, .children = ids});
    return true;
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

void Runtime::kv_join(Request & r, Thread & parent) {
    std::vector<SeqId> seqs;
    std::vector<Thread *> spliced;
    for (int id : parent.spawn_slots) {
        if (id < 0) continue;
        Thread & c = *r.threads[static_cast<size_t>(id)];
        if (c.awaiting_splice && c.seq >= 0) {
            seqs.push_back(c.seq);
            spliced.push_back(&c);
        }
    }
    // Children that ended are no longer closed by their parent's end: a join that fails releases them.
    auto release_children = [&] {
        for (Thread * c : spliced) release_seq(r, *c);
    };
    size_t joined_length = static_cast<size_t>(backend_.length(parent.seq));
    for (Thread * c : spliced) joined_length += static_cast<size_t>(backend_.length(c->seq)) - c->parent_tokens;
    if (!join_fits(r, parent, joined_length)) {
        release_children();
        return;
    }
    try {
        if (backend_.can_splice()) {
            // splice() first decodes what the parent and children still have pending: theirs.
            parent.rec.decoded_tokens += backend_.n_pending(parent.seq);
            for (Thread * c : spliced) c->rec.decoded_tokens += backend_.n_pending(c->seq);
            backend_.splice(parent.seq, seqs);
            // The children's cells now belong to the parent without being decoded again.
            parent.decoded_seen = backend_.length(parent.seq) - backend_.n_pending(parent.seq);
        } else {
            // No KV splice on this backend (one KV stream per sequence): the parent re-reads each
            // child's own tokens, the same tokens at the same positions, recomputed. Later siblings
            // then attend to earlier ones, as after a text join.
            for (Thread * c : spliced) {
                const auto & own = backend_.tokens(c->seq);
                const auto first = own.begin() + static_cast<std::ptrdiff_t>(c->parent_tokens);
                backend_.append(parent.seq, std::vector<Token>(first, own.end()));
                parent.rec.inserted_tokens += static_cast<int64_t>(own.end() - first);
            }
        }
    } catch (const Error & e) {
        release_children();
        end_thread(r, parent, ThreadState::failed, std::string("KV join: ") + e.what());
        return;
    }
    // The parent's context now holds each spliced child's own tokens, in order.
    std::string own_texts;
    for (Thread * c : spliced) {
        const size_t base = parent.parser->text().size() + own_texts.size();
        for (size_t k = c->parent_tokens; k < c->token_end.size(); ++k) {
            parent.token_end.push_back(base + (c->token_end[k] - c->own_from));
        }
        own_texts += c->rec.text.substr(c->own_from);
        release_seq(r, *c);  // the splice closed its sequence; this settles the bookkeeping
    }
    std::vector<dialects::ChildResult> joined;
    for (Thread * c : spliced) joined.push_back({c->rec.text.substr(c->own_from), c->rec.state == ThreadState::done});
    const std::string before = parent.parser->text();
    const std::string text = r.dialect->join(before, *parent.spawn, joined);
    resume_after_join(r, parent, text, text.size() > before.size() ? text.substr(before.size()) : std::string());
}

bool Runtime::join_fits(Request & r, Thread & parent, size_t joined_length) {
    // A join that would leave the parent no room to write in its window fails it before anything is
    // decoded, so no thread's context ever exceeds the window (the thread fails at the window anyway).
    if (r.limits.max_context <= 0 || joined_length < static_cast<size_t>(r.limits.max_context)) return true;
    decide(r, parent, "limit", "context window: the join needs " + std::to_string(joined_length) + " tokens");
    end_thread(r, parent, ThreadState::failed,
               "context window (" + std::to_string(r.limits.max_context) + "): the join needs " +
                   std::to_string(joined_length) + " tokens");
    return false;
}

void Runtime::resume_after_join(Request & r, Thread & parent, const std::string & text, const std::string & inserted) {
    const std::vector<int> children = parent.rec.spawns.empty() ? std::vector<int>{} : parent.rec.spawns.back();
    parent.parser = make_parser(r, parent, text);
    parent.spawn.reset();
    parent.spawn_slots.clear();
    parent.rec.state = ThreadState::running;
    if (!r.options.script) backend_.set_generating(parent.seq, true);
    parent.rec.max_context = std::max<int64_t>(parent.rec.max_context, backend_.length(parent.seq));
    emit(r, {.kind = EventKind::joined, .thread = parent.rec.id, .parent = parent.rec.parent, .text = inserted, .children = children});
    check_limits(r, parent);
}

void Runtime::append_offsets(Thread & t, const std::vector<Token> & tokens, size_t offset) const {
    for (auto tok : tokens) t.token_end.push_back(offset += backend_.vocabulary().piece(tok).size());
}

void Runtime::try_join(Request & r, Thread & parent) {
    std::vector<dialects::ChildResult> results;
    for (int id : parent.spawn_slots) {
        if (id < 0) {
            results.push_back({"", false});
            continue;
        }
        const Thread & c = *r.threads[static_cast<size_t>(id)];
        if (!ended(c.rec.state)) return;
        results.push_back({c.rec.text, c.rec.state == ThreadState::done});
    }
    if (reexplore(r, parent)) return;  // the controller wants some children run again first
    if (parent.spawn->kv_join) {
        kv_join(r, parent);
        return;
    }
    const dialects::SpawnRequest spawn = *parent.spawn;
    const std::string text = r.dialect->join(parent.parser->text(), spawn, results);
    // Keep the cache cells of every token that ends before the spawn block; prefill the rest.
    const size_t keep = static_cast<size_t>(
        std::upper_bound(parent.token_end.begin(), parent.token_end.end(), spawn.block_begin) - parent.token_end.begin());
    const size_t kept_bytes = keep ? parent.token_end[keep - 1] : 0;
    std::vector<Token> tokens;
    try {
        tokens = backend_.vocabulary().tokenize(std::string_view(text).substr(kept_bytes));
        if (!join_fits(r, parent, keep + tokens.size())) return;
        backend_.truncate(parent.seq, static_cast<int32_t>(keep));
        backend_.append(parent.seq, tokens);
    } catch (const Error & e) {
        end_thread(r, parent, ThreadState::failed, std::string("join: ") + e.what());
        return;
    }
    parent.token_end.resize(keep);
    append_offsets(parent, tokens, kept_bytes);
    parent.rec.inserted_tokens += static_cast<int64_t>(tokens.size());
    parent.decoded_seen = std::min<int64_t>(parent.decoded_seen, static_cast<int64_t>(keep));
    resume_after_join(r, parent, text, text.substr(std::min(text.size(), static_cast<size_t>(spawn.block_begin))));
}

void Runtime::end_thread(Request & r, Thread & t, ThreadState state, const std::string & reason) {
    if (ended(t.rec.state)) return;
    // A parent that ends takes its running children with it.
    for (int id : t.spawn_slots) {
        if (id >= 0) end_thread(r, *r.threads[static_cast<size_t>(id)], ThreadState::cancelled, "parent ended");
    }
    if (t.rec.state == ThreadState::queued) {
        r.queue.erase(std::remove(r.queue.begin(), r.queue.end(), t.rec.id), r.queue.end());
    }
    const bool keep_for_splice = state != ThreadState::cancelled && t.request.forked && t.rec.parent >= 0 &&
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
    if (t.rec.parent < 0) return;
    ++r.children_finished;
    r.children_tokens += t.rec.generated_tokens;
    Thread & parent = *r.threads[static_cast<size_t>(t.rec.parent)];
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
    for (int id : siblings) spent += r.threads[static_cast<size_t>(id)]->rec.generated_tokens;
    decide(r, parent, "stop", "cancelled " + std::to_string(siblings.size()) + " siblings of thread " + std::to_string(t.rec.id) +
                                  " (they had generated " + std::to_string(spent) + " tokens): " + d.reason);
    for (int id : siblings) end_thread(r, *r.threads[static_cast<size_t>(id)], ThreadState::cancelled, "stopped early: " + d.reason);
}

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

Controller & Runtime::controller_of(const Request & r) const {
    return r.controller ? *r.controller : *controller_;
}

void Runtime::end_request(Request & r, const std::string & reason) {
    end_thread(r, *r.threads[0], ThreadState::cancelled, reason);
}

void Runtime::cancel(RequestId request, const std::string & reason) {
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
    for (size_t i = r.threads.size(); i-- > 0;) {  // children have larger ids than their parents
        const ThreadRecord & t = r.threads[i]->rec;
        m.total_tokens += t.decoded_tokens;
        m.generated_tokens += t.generated_tokens;
        m.max_context_tokens = std::max(m.max_context_tokens, t.max_context);
        int64_t c = t.generated_tokens;
        for (const auto & spawn : t.spawns) {
            int64_t longest = 0;
            for (int id : spawn) longest = std::max(longest, chain[static_cast<size_t>(id)]);
            c += longest;
        }
        chain[i] = c;
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
        const std::string & piece = backend_.vocabulary().piece(s.token);
        t.token_end.push_back(t.parser->text().size() + piece.size());
        emit(r, {.kind = EventKind::text, .thread = t.rec.id, .text = piece});
        on_text(r, t, piece);
    }
    // The context-rot monitor: threads at a probe point are probed now (a throwaway fork each).
    for (auto & [seq, owner] : by_seq_) {
        Request & r = *requests_.at(owner.first);
        Thread & t = *r.threads[static_cast<size_t>(owner.second)];
        if (t.next_probe_at >= 0) probe(r, t);
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
        // Nothing could advance: the youngest blocked thread gives its cells back.
        Thread * victim = nullptr;
        Request * owner = nullptr;
        for (const auto & b : res->blocked) {
            auto [r, t] = owner_of(b.seq);
            if (!t || ended(t->rec.state)) continue;
            if (!victim || t->rec.start_s > victim->rec.start_s) {
                victim = t;
                owner = r;
            }
        }
        if (victim) end_thread(*owner, *victim, ThreadState::failed, "kv cache full");
    }
}

bool Runtime::step() {
    admit();
    feed_scripts();
    if (backend_.has_pending()) backend_step();
    bool active = false;
    for (auto & [rid, rp] : requests_) {
        Request & r = *rp;
        if (r.result.finished) continue;
        check_request_limits(r);
        for (size_t i = 0; i < r.threads.size() && !r.root_ended; ++i) {
            Thread & t = *r.threads[i];
            if (t.rec.state != ThreadState::waiting) continue;
            if (t.spawn_deferred) {
                decide_spawn(r, t);  // the controller deferred it: ask again
            } else {
                try_join(r, t);
            }
        }
        finalize(r);
        active |= !r.result.finished;
    }
    return active;
}

void Runtime::run() {
    while (step()) {
    }
}

}  // namespace forkjoin::runtime
