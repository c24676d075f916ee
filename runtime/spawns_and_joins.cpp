// Spawns (the controller decides which children run), re-exploration before a join, and joins
// (text joins that keep the parent's cache up to the spawn block; KV joins, or a re-read where the
// backend has no splice).
#include "runtime/runtime_state.h"

#include <algorithm>

namespace forkjoin::runtime {

void Runtime::on_spawn(Request & r, Thread & t, dialects::SpawnRequest spawn) {
    t.rec.state = ThreadState::waiting;
    if (!r.options.script) backend_.set_generating(t.seq, false);
    t.spawn = std::move(spawn);
    t.spawn_deferred = true;
    t.deferrals = 0;
    t.join_rounds = 0;
    // The forked dialects' engines stop forking near the length limit and decode the block in line.
    const int headroom = r.dialect->fork_headroom();
    if (headroom > 0 && t.spawn->joins_tokens()) {
        int64_t left = r.limits.thread_token_budget - t.rec.generated_tokens;
        if (r.limits.max_context > 0) left = std::min<int64_t>(left, r.limits.max_context - backend_.length(t.seq));
        if (left < headroom) {
            t.spawn_deferred = false;
            t.spawn_slots.assign(t.spawn->children.size(), -1);
            t.rec.spawns.push_back({});
            decide(r, t, "spawn", "spawn of " + std::to_string(t.spawn->children.size()) + " refused: " + std::to_string(left) +
                                      " tokens left, the " + r.dialect->name() + " engine forks with " +
                                      std::to_string(headroom) + " to spare; decoded in line");
            emit(r, {.kind = EventKind::spawned, .thread = t.rec.id, .parent = t.rec.parent, .children = {}});
            return;  // try_join resumes it in line
        }
    }
    decide_spawn(r, t);
}

void Runtime::decide_spawn(Request & r, Thread & t) {
    const dialects::SpawnRequest & spawn = *t.spawn;
    const Usage usage = usage_of(r);
    const SpawnDecision d = controller_of(r).on_spawn(
        {.parent = t.rec, .requested = static_cast<int>(spawn.children.size()), .limits = r.limits, .children = spawn.children, .usage = usage});
    if (d.defer) {
        t.defer_reason = d.reason;
        if (t.deferrals++ == 0) decide(r, t, "spawn", "deferred: " + d.reason);
        return;
    }
    t.spawn_deferred = false;
    t.spawn_slots.assign(spawn.children.size(), -1);
    t.nested_slots.assign(spawn.children.size(), std::nullopt);
    t.at_once = std::max(0, d.at_once);
    t.held.clear();
    for (const NestedChild & n : d.nested) {
        if (n.slot >= 0 && static_cast<size_t>(n.slot) < spawn.children.size() && !spawn.children[static_cast<size_t>(n.slot)].forked &&
            !n.prompt.empty() && n.read_back) {
            t.nested_slots[static_cast<size_t>(n.slot)] = n;
        }
    }
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
    std::string reason = t.deferrals > 0 ? d.reason + " (after " + std::to_string(t.deferrals) + " deferrals)" : d.reason;
    if (t.at_once > 0 && chosen.size() > static_cast<size_t>(t.at_once)) {
        reason += "; " + std::to_string(t.at_once) + " at a time, each of the others when one ends";
    }
    decide(r, t, "spawn", reason);
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
    child->rec.forked = request.forked;
    child->prompt = request.prompt;
    const bool nested = slot < t.nested_slots.size() && t.nested_slots[slot].has_value();
    if (nested) {
        // A search of its own sub-problem: it starts as a root of that problem would.
        child->prompt = t.nested_slots[slot]->prompt;
        child->read_back = t.nested_slots[slot]->read_back;
        child->rec.nested = true;
        child->parser = r.dialect->parser(child->prompt);
    } else if (child->request.forked) {
        child->own_from = t.parser->text().size();
        child->parser = r.dialect->child_parser(t.parser->text() + child->prompt, child->request);
    } else {
        child->parser = r.dialect->child_parser(child->prompt, child->request);
    }
    const int id = child->rec.id;
    if (t.at_once > 0 && (live_children(r, t) >= t.at_once || !t.held.empty())) {
        t.held.push_back(id);  // starts when a live sibling ends (start_held), in this order
        child->wait_reason = "held back: " + std::to_string(t.at_once) + " of its spawn at a time";
    } else {
        r.queue.push_back(id);
    }
    r.threads.push_back(std::move(child));
    return id;
}

int Runtime::live_children(const Request & r, const Thread & t) const {
    int live = 0;
    for (int id : t.spawn_slots) {
        if (id >= 0 && !ended(r.threads[static_cast<size_t>(id)]->rec.state) && std::find(t.held.begin(), t.held.end(), id) == t.held.end()) {
            ++live;
        }
    }
    return live;
}

void Runtime::start_held(Request & r, Thread & t, int ended_child) {
    while (!t.held.empty()) {
        if (live_children(r, t) >= t.at_once) return;
        Thread & next = *r.threads[static_cast<size_t>(t.held.front())];
        t.held.pop_front();
        if (ended(next.rec.state)) continue;
        next.started_after = ended_child;
        r.queue.push_back(next.rec.id);
    }
}

Usage Runtime::usage_of(const Request & r) const {
    const KvUsage kv = backend_.usage();
    return {.generated = r.generated,
            .budget_left = r.limits.total_token_budget - r.generated,
            .children_finished = r.children_finished,
            .children_tokens = r.children_tokens,
            .free_cells = static_cast<int64_t>(kv.cells_total) - kv.cells_used - kv.pending_tokens,
            .total_cells = kv.cells_total,
            .free_sequences = static_cast<int64_t>(backend_.max_sequences()) - kv.live_sequences};
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

void Runtime::kv_join(Request & r, Thread & parent) {
    const dialects::SpawnRequest & spawn = *parent.spawn;
    parent.kv_joined = true;
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
    // What each child keeps: its own tokens, less the dialect's later_drop (the "\n" before a later
    // child's tag, which the upstream engines leave out) where that text is whole tokens.
    std::vector<int32_t> skip(spliced.size(), 0);
    std::vector<size_t> skip_bytes(spliced.size(), 0);
    const std::string & drop = spawn.later_drop;
    for (size_t i = 1; i < spliced.size() && !drop.empty(); ++i) {
        const Thread & c = *spliced[i];
        if (c.rec.text.compare(c.own_from, drop.size(), drop) != 0) continue;
        for (size_t k = c.parent_tokens; k < c.token_end.size() && c.token_end[k] - c.own_from <= drop.size(); ++k) {
            if (c.token_end[k] - c.own_from == drop.size()) {
                skip[i] = static_cast<int32_t>(k + 1 - c.parent_tokens);
                skip_bytes[i] = drop.size();
            }
        }
    }
    const bool kv = spawn.join == dialects::JoinKind::kv_consecutive || spawn.join == dialects::JoinKind::kv_shared_start;
    const bool reread = !(kv && backend_.can_splice());
    std::vector<Token> inserted;
    // A re-read child cut before its closing tag (end-of-text, its length) gets the tag (close_cut).
    std::vector<std::vector<Token>> closing(spliced.size());
    std::vector<std::string> closing_text(spliced.size());
    try {
        // The engine's own text (tags): the model's added tokens where its vocabulary has them.
        inserted = backend_.vocabulary().tokenize(spawn.inserted, false, /*parse_special=*/true);
        for (size_t i = 0; i < spliced.size() && reread && !spawn.close_cut.empty(); ++i) {
            if (spliced[i]->rec.text.ends_with(spawn.close_cut)) continue;
            closing[i] = backend_.vocabulary().tokenize(spawn.close_cut, false, /*parse_special=*/true);
            closing_text[i] = spawn.close_cut;
        }
    } catch (const Error & e) {
        release_children();
        end_thread(r, parent, ThreadState::failed, std::string("join: ") + e.what());
        return;
    }
    size_t joined_length = static_cast<size_t>(backend_.length(parent.seq)) + inserted.size();
    for (size_t i = 0; i < spliced.size(); ++i) {
        joined_length += static_cast<size_t>(backend_.length(spliced[i]->seq)) - spliced[i]->parent_tokens - static_cast<size_t>(skip[i]) +
                         closing[i].size();
    }
    if (!join_fits(r, parent, joined_length)) {
        release_children();
        return;
    }
    // Shared start leaves the parent no last cell: it needs the inserted text to go on from.
    const JoinLayout layout = spawn.join == dialects::JoinKind::kv_shared_start && !inserted.empty()
                                  ? JoinLayout::shared_start
                                  : JoinLayout::consecutive;
    try {
        if (!reread) {
            // splice() first decodes what the parent and children still have pending: theirs.
            parent.rec.decoded_tokens += backend_.n_pending(parent.seq);
            for (Thread * c : spliced) c->rec.decoded_tokens += backend_.n_pending(c->seq);
            backend_.splice(parent.seq, seqs, layout, skip);
            // The children's cells now belong to the parent without being decoded again.
            parent.decoded_seen = backend_.length(parent.seq) - backend_.n_pending(parent.seq);
        } else {
            // A re-read (the dialect's join, or a backend without KV splice): the parent decodes each
            // child's kept tokens again at consecutive positions; later children see earlier ones.
            for (size_t i = 0; i < spliced.size(); ++i) {
                const auto & own = backend_.tokens(spliced[i]->seq);
                const auto first = own.begin() + static_cast<std::ptrdiff_t>(spliced[i]->parent_tokens + static_cast<size_t>(skip[i]));
                backend_.append(parent.seq, std::vector<Token>(first, own.end()));
                backend_.append(parent.seq, closing[i]);
                parent.rec.inserted_tokens += static_cast<int64_t>(own.end() - first) + static_cast<int64_t>(closing[i].size());
            }
        }
        backend_.append(parent.seq, inserted);
        parent.rec.inserted_tokens += static_cast<int64_t>(inserted.size());
    } catch (const Error & e) {
        release_children();
        end_thread(r, parent, ThreadState::failed, std::string("join: ") + e.what());
        return;
    }
    // The parent's context now holds each child's kept tokens, in order, then the inserted text.
    std::string kept_texts;
    std::vector<dialects::ChildResult> joined;
    for (size_t i = 0; i < spliced.size(); ++i) {
        Thread & c = *spliced[i];
        const size_t from = c.own_from + skip_bytes[i];
        const size_t base = parent.parser->text().size() + kept_texts.size();
        for (size_t k = c.parent_tokens + static_cast<size_t>(skip[i]); k < c.token_end.size(); ++k) {
            parent.token_end.push_back(base + (c.token_end[k] - from));
        }
        append_offsets(parent, closing[i], base + (c.rec.text.size() - from));
        const std::string kept = c.rec.text.substr(from) + closing_text[i];
        kept_texts += kept;
        joined.push_back({kept, c.rec.state == ThreadState::done});
        release_seq(r, c);  // the splice closed its sequence; this settles the bookkeeping
    }
    append_offsets(parent, inserted, parent.parser->text().size() + kept_texts.size());
    const std::string before = parent.parser->text();
    const std::string text = r.dialect->join(before, spawn, joined);
    resume_after_join(r, parent, text, text.size() > before.size() ? text.substr(before.size()) : std::string());
}

bool Runtime::join_fits(Request & r, Thread & parent, size_t joined_length) {
    // A join that would leave the parent no room to write in its window fails it before anything is
    // decoded, so no thread's context ever exceeds the window (the thread fails at the window anyway).
    if (r.limits.max_context <= 0 || joined_length < static_cast<size_t>(r.limits.max_context)) return true;
    decide(r, parent, "limit", "context window: the join needs " + std::to_string(joined_length) + " tokens");
    if (parent.rec.id == 0) r.result.limit = LimitKind::context_window;
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
    parent.nested_slots.clear();
    parent.at_once = 0;
    parent.held.clear();
    parent.rec.state = ThreadState::running;
    if (!r.options.script) backend_.set_generating(parent.seq, true);
    parent.rec.max_context = std::max<int64_t>(parent.rec.max_context, backend_.length(parent.seq));
    emit(r, {.kind = EventKind::joined, .thread = parent.rec.id, .parent = parent.rec.parent, .text = inserted, .children = children});
    check_limits(r, parent);
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
        // A nested search's text is read back into what this parent asked for.
        results.push_back({c.read_back ? c.read_back(c.rec.text) : c.rec.text, c.rec.state == ThreadState::done});
    }
    if (reexplore(r, parent)) return;  // the controller wants some children run again first
    if (parent.spawn->joins_tokens() &&
        std::all_of(parent.spawn_slots.begin(), parent.spawn_slots.end(), [](int id) { return id < 0; })) {
        // No child ran (a refused spawn: depth, budget): the forked dialects' engines then decode
        // in line, the parent writing its block itself; nothing is joined or inserted.
        resume_after_join(r, parent, parent.parser->text(), "");
        return;
    }
    if (parent.spawn->joins_tokens()) {
        kv_join(r, parent);
        return;
    }
    const dialects::SpawnRequest spawn = *parent.spawn;
    const std::string text = r.dialect->join(parent.parser->text(), spawn, results);
    if (!retext(r, parent, spawn.block_begin, text, "join")) return;
    resume_after_join(r, parent, text, text.substr(std::min(text.size(), static_cast<size_t>(spawn.block_begin))));
}

bool Runtime::retext(Request & r, Thread & t, size_t from, const std::string & text, const char * what) {
    // Keep the cache cells of every token that ends by `from`; prefill the rest.
    const size_t keep = static_cast<size_t>(std::upper_bound(t.token_end.begin(), t.token_end.end(), from) - t.token_end.begin());
    const size_t kept_bytes = keep ? t.token_end[keep - 1] : 0;
    std::vector<Token> tokens;
    try {
        tokens = backend_.vocabulary().tokenize(std::string_view(text).substr(kept_bytes));
        if (!join_fits(r, t, keep + tokens.size())) return false;
        backend_.truncate(t.seq, static_cast<int32_t>(keep));
        backend_.append(t.seq, tokens);
    } catch (const Error & e) {
        end_thread(r, t, ThreadState::failed, std::string(what) + ": " + e.what());
        return false;
    }
    t.token_end.resize(keep);
    append_offsets(t, tokens, kept_bytes);
    t.rec.inserted_tokens += static_cast<int64_t>(tokens.size());
    t.decoded_seen = std::min<int64_t>(t.decoded_seen, static_cast<int64_t>(keep));
    return true;
}

}  // namespace forkjoin::runtime
