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

namespace {
bool ended(ThreadState s) { return s == ThreadState::done || s == ThreadState::failed || s == ThreadState::cancelled; }
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
};

struct Runtime::Request {
    RequestId id;
    RequestOptions options;
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
    : backend_(backend), dialect_(dialect), limits_(limits) {}

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
    r->steps_at_start = steps_;
    r->decoded_at_start = decoded_;
    auto root = std::make_unique<Thread>();
    root->prompt = prompt;
    root->parser = dialect_.parser(prompt);
    r->threads.push_back(std::move(root));
    r->queue.push_back(0);
    const RequestId id = r->id;
    requests_[id] = std::move(r);
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

int64_t Runtime::headroom(const Thread & t) const {
    const int64_t expected = std::min<int64_t>(limits_.thread_token_budget, kHeadroomCap);
    return std::max<int64_t>(0, expected - t.rec.generated_tokens);
}

bool Runtime::cells_for(const Thread & t) const {
    // Room for its prompt and the growth it may still have, after the growth already promised to
    // the running threads. With nothing running, a thread is admitted anyway (progress first).
    if (live_threads_ == 0) return true;
    int64_t promised = 0;
    for (const auto & [rid, rp] : requests_) {
        for (const auto & other : rp->threads) {
            if (other->rec.state == ThreadState::running) promised += headroom(*other);
        }
    }
    const int64_t prompt = t.request.forked ? static_cast<int64_t>(t.request.prompt.size()) : static_cast<int64_t>(t.prompt.size());
    const KvUsage u = backend_.usage();
    const int64_t free = static_cast<int64_t>(u.cells_total) - u.cells_used - u.pending_tokens;
    // Bytes bound tokens from above for every vocabulary here, so `prompt` is a safe estimate.
    return free - promised >= prompt + headroom(t);
}

void Runtime::forget(RequestId request) {
    auto it = requests_.find(request);
    if (it == requests_.end()) return;
    if (!it->second->result.finished) throw Error(ErrorCode::invalid_argument, "forget: request " + std::to_string(request) + " is still running");
    requests_.erase(it);
}

void Runtime::admit() {
    for (auto & [rid, rp] : requests_) {
        Request & r = *rp;
        // Threads waiting on their children do not count against the limits: if they did, parents
        // holding every slot would wait forever for children that can never start.
        while (!r.queue.empty() && running_threads() < limits_.max_threads &&
               running_threads(&r) < limits_.max_threads_per_request) {
            Thread & t = *r.threads[static_cast<size_t>(r.queue.front())];
            if (!cells_for(t)) return;  // the KV cache is short: wait for running threads to finish
            // A new root needs sequences left for the children it may spawn.
            const uint32_t free_seqs = backend_.max_sequences() - backend_.usage().live_sequences;
            if (t.rec.parent < 0 && live_threads_ > 0 && free_seqs <= static_cast<uint32_t>(std::max(0, limits_.max_children))) return;
            if (t.request.forked) {
                if (!admit_forked(r, t)) return;
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
            if (tokens.empty() || (limits_.max_context > 0 && static_cast<int>(tokens.size()) >= limits_.max_context)) {
                r.queue.pop_front();
                end_thread(r, t, ThreadState::failed,
                           tokens.empty() ? "empty prompt" : "context window: the prompt alone fills it");
                continue;
            }
            Sampling sampling = r.options.sampling;
            sampling.seed += static_cast<uint64_t>(t.rec.id);
            try {
                t.seq = backend_.open(tokens, sampling, /*generating=*/!r.options.script);
            } catch (const Error & e) {
                if (e.code() == ErrorCode::sequence_limit) return;  // wait for a free sequence
                r.queue.pop_front();
                end_thread(r, t, ThreadState::failed, e.what());
                continue;
            }
            r.queue.pop_front();
            by_seq_[t.seq] = {rid, t.rec.id};
            ++live_threads_;
            ++r.live;
            t.rec.state = ThreadState::running;
            t.rec.start_s = now_s(r);
            t.rec.prompt_tokens = static_cast<int64_t>(tokens.size());
            t.rec.max_context = t.rec.prompt_tokens;
            t.token_end.clear();
            append_offsets(t, tokens, 0);
            if (t.token_end.back() != t.prompt.size()) t.token_end.assign(tokens.size(), 0);  // pieces do not add up: never reuse
        }
    }
}

bool Runtime::admit_forked(Request & r, Thread & t) {
    Thread & parent = *r.threads[static_cast<size_t>(t.rec.parent)];
    std::vector<Token> seed;
    Sampling sampling = r.options.sampling;
    sampling.seed += static_cast<uint64_t>(t.rec.id);
    try {
        seed = backend_.vocabulary().tokenize(t.request.prompt);
        t.seq = backend_.fork(parent.seq, sampling, /*generating=*/!r.options.script);
    } catch (const Error & e) {
        if (e.code() == ErrorCode::sequence_limit) return false;  // wait for a free sequence
        r.queue.pop_front();
        end_thread(r, t, ThreadState::failed, e.what());
        return true;
    }
    r.queue.pop_front();
    by_seq_[t.seq] = {r.id, t.rec.id};
    ++live_threads_;
    ++r.live;
    t.rec.state = ThreadState::running;
    t.rec.start_s = now_s(r);
    t.token_end = parent.token_end;
    t.parent_tokens = parent.token_end.size();
    append_offsets(t, seed, t.own_from);
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

void Runtime::check_limits(Request & r, Thread & t) {
    if (t.rec.state != ThreadState::running) return;
    if (t.rec.generated_tokens >= limits_.thread_token_budget) {
        end_thread(r, t, ThreadState::failed, "token budget (" + std::to_string(limits_.thread_token_budget) + ")");
    } else if (limits_.max_context > 0 && backend_.length(t.seq) >= limits_.max_context) {
        end_thread(r, t, ThreadState::failed, "context window (" + std::to_string(limits_.max_context) + ")");
    }
}

void Runtime::on_spawn(Request & r, Thread & t, dialects::SpawnRequest spawn) {
    t.rec.state = ThreadState::waiting;
    if (!r.options.script) backend_.set_generating(t.seq, false);
    t.spawn_slots.assign(spawn.children.size(), -1);
    std::vector<int> ids;
    if (t.rec.depth >= limits_.max_depth) {
        t.rec.spawns.push_back({});
        t.rec.notes.push_back("spawn of " + std::to_string(spawn.children.size()) + " refused: depth limit " +
                              std::to_string(limits_.max_depth));
    } else {
        const size_t n = std::min(spawn.children.size(), static_cast<size_t>(std::max(0, limits_.max_children)));
        if (n < spawn.children.size()) {
            t.rec.notes.push_back("ran " + std::to_string(n) + " of " + std::to_string(spawn.children.size()) +
                                  " children: max_children " + std::to_string(limits_.max_children));
        }
        for (size_t c = 0; c < n; ++c) {
            auto child = std::make_unique<Thread>();
            child->rec.id = static_cast<int>(r.threads.size());
            child->rec.parent = t.rec.id;
            child->rec.depth = t.rec.depth + 1;
            child->rec.label = spawn.children[c].label;
            child->request = spawn.children[c];
            child->prompt = spawn.children[c].prompt;
            if (child->request.forked) {
                child->own_from = t.parser->text().size();
                child->parser = dialect_.child_parser(t.parser->text() + child->prompt, child->request);
            } else {
                child->parser = dialect_.child_parser(child->prompt, child->request);
            }
            t.spawn_slots[c] = child->rec.id;
            ids.push_back(child->rec.id);
            r.queue.push_back(child->rec.id);
            r.threads.push_back(std::move(child));
        }
        t.rec.spawns.push_back(ids);
    }
    t.spawn = std::move(spawn);
}

std::unique_ptr<dialects::ThreadParser> Runtime::make_parser(const Thread & t, std::string text) const {
    return t.rec.parent < 0 ? dialect_.parser(std::move(text)) : dialect_.child_parser(std::move(text), t.request);
}

void Runtime::release_seq(Request & r, Thread & t) {
    if (t.seq >= 0 && backend_.live(t.seq)) backend_.close(t.seq);
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
            backend_.splice(parent.seq, seqs);
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
    resume_after_join(r, parent, dialect_.join(parent.parser->text(), *parent.spawn, joined));
}

bool Runtime::join_fits(Request & r, Thread & parent, size_t joined_length) {
    // A join that would leave the parent no room to write in its window fails it before anything is
    // decoded, so no thread's context ever exceeds the window (the thread fails at the window anyway).
    if (limits_.max_context <= 0 || joined_length < static_cast<size_t>(limits_.max_context)) return true;
    end_thread(r, parent, ThreadState::failed,
               "context window (" + std::to_string(limits_.max_context) + "): the join needs " +
                   std::to_string(joined_length) + " tokens");
    return false;
}

void Runtime::resume_after_join(Request & r, Thread & parent, const std::string & text) {
    parent.parser = make_parser(parent, text);
    parent.spawn.reset();
    parent.spawn_slots.clear();
    parent.rec.state = ThreadState::running;
    if (!r.options.script) backend_.set_generating(parent.seq, true);
    parent.rec.max_context = std::max<int64_t>(parent.rec.max_context, backend_.length(parent.seq));
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
    if (parent.spawn->kv_join) {
        kv_join(r, parent);
        return;
    }
    const dialects::SpawnRequest spawn = *parent.spawn;
    const std::string text = dialect_.join(parent.parser->text(), spawn, results);
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
    resume_after_join(r, parent, text);
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
    if (t.rec.id == 0) {
        r.root_ended = true;
        r.result.ok = state == ThreadState::done;
        r.result.end_reason = reason;
        r.result.text = t.rec.text;
        for (auto & other : r.threads) {
            if (!ended(other->rec.state)) end_thread(r, *other, ThreadState::cancelled, "request ended");
        }
    }
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
        m.total_tokens += t.prompt_tokens + t.generated_tokens + t.inserted_tokens;
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
    m.decode_steps = steps_ - r.steps_at_start;
    m.mean_batch = m.decode_steps ? static_cast<double>(decoded_ - r.decoded_at_start) / static_cast<double>(m.decode_steps) : 0.0;
    m.wall_s = now_s(r);
    for (const auto & t : r.threads) r.result.threads.push_back(t->rec);
    r.result.finished = true;
}

std::pair<Runtime::Request *, Runtime::Thread *> Runtime::owner_of(SeqId seq) {
    auto it = by_seq_.find(seq);
    if (it == by_seq_.end()) return {nullptr, nullptr};
    Request & r = *requests_.at(it->second.first);
    return {&r, r.threads[static_cast<size_t>(it->second.second)].get()};
}

bool Runtime::step() {
    admit();
    feed_scripts();
    if (backend_.has_pending()) {
        const auto & res = backend_.step();
        ++steps_;
        decoded_ += res.n_decoded;
        for (const auto & s : res.sampled) {
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
            on_text(r, t, piece);
        }
        // A sequence that filled its own KV stream (per_sequence layout) cannot be helped by waiting.
        for (const auto & b : res.blocked) {
            if (b.reason != ErrorCode::context_overflow) continue;
            auto [owner, thread] = owner_of(b.seq);
            if (thread) end_thread(*owner, *thread, ThreadState::failed, b.message);
        }
        if (res.n_decoded == 0 && !res.blocked.empty()) {
            // Nothing could advance: the youngest blocked thread gives its cells back.
            Thread * victim = nullptr;
            Request * owner = nullptr;
            for (const auto & b : res.blocked) {
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
    bool active = false;
    for (auto & [rid, rp] : requests_) {
        Request & r = *rp;
        if (r.result.finished) continue;
        if (!r.root_ended) {
            if (r.generated >= limits_.total_token_budget) {
                end_request(r, "total token budget (" + std::to_string(limits_.total_token_budget) + ")");
            } else if (limits_.timeout_s > 0 && now_s(r) > limits_.timeout_s) {
                end_request(r, "timeout");
            }
        }
        for (size_t i = 0; i < r.threads.size() && !r.root_ended; ++i) {
            if (r.threads[i]->rec.state == ThreadState::waiting) try_join(r, *r.threads[i]);
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
