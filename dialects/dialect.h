// Dialects: the markup a model uses to spawn and join threads.
//
// A Dialect turns a thread's generated text into events (a ThreadParser, fed piece by piece as
// tokens are sampled) and builds what the runtime needs around them: each child's starting text
// and the parent's text after the join. Dialects know text only; they never touch the backend.
//
// Contract for every parser: any byte sequence is accepted. Well-formed markup yields a spawn;
// markup that cannot be followed yields a `malformed` event with the reason (the runtime decides
// what the thread does then); anything else is plain text. A parser never throws on input.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace forkjoin::dialects {

struct ChildRequest {
    std::string label;   // what the parent called it (APR: the node id, e.g. "0,1")
    std::string prompt;  // fresh child: its whole starting context; forked child: text appended after the fork
    bool forked = false; // forked: shares the parent's context (KV) up to the spawn point
};

// How a parent takes its children back. Each dialect follows what its upstream engine does.
enum class JoinKind {
    // join() rewrites the parent's text from the spawn block on; the new text is tokenized and
    // prefilled after the cells kept before the block (APR).
    text,
    // Forked children: the parent decodes each child's own tokens again, then the inserted text, at
    // consecutive positions, so later children see earlier ones (ThreadWeaver and Parallel-R1 send
    // the merged tokens back to their server as a new prompt).
    reread,
    // Forked children: KV splice, each child moved after the previous one (forkjoin's first layout).
    kv_consecutive,
    // Forked children: KV splice with no cell moved: every child at the fork point, the parent after
    // the longest (Multiverse's and NPR's engines; llama backend: JoinLayout::shared_start).
    kv_shared_start,
};

struct SpawnRequest {
    std::vector<ChildRequest> children;
    size_t block_begin = 0;  // text join: byte range of the spawn block in the thread's text, replaced by the join
    size_t block_end = 0;
    JoinKind join = JoinKind::text;
    // Forked children's joins (not text):
    std::string later_drop;  // children after the first leave out this start of their own text
                             // ("\n" before the tag) where it is whole tokens
    std::string inserted;    // what the engine writes after the children ("<Conclusion>\n")
    std::string close_cut;   // written after a child whose own text does not end with it: its part was cut
                             // by an end-of-text token or its length (Parallel-R1 closes such a path with
                             // </Path>); re-read joins only

    bool joins_tokens() const { return join != JoinKind::text; }
};

// spawn: start children and wait for them. end: the thread's part is over (a forked child closed
// its path) without an end-of-text token. malformed: markup that cannot be followed. repair: the
// upstream engine rewrites what the thread just wrote (APR turns a "<Sub Searches>" the model
// wrote itself into "<Calling Sub Searches>") and the thread goes on from the rewritten text.
enum class EventKind { spawn, end, malformed, repair };

struct Event {
    Event(EventKind k, SpawnRequest s = {}, std::string why = {}) : kind(k), spawn(std::move(s)), reason(std::move(why)) {}
    EventKind kind;
    SpawnRequest spawn;  // kind == spawn
    std::string reason;  // kind == malformed, repair (what was repaired, for the trace)
    size_t repair_from = 0;    // kind == repair: the text from this byte on ...
    std::string repair_text;   // ... is replaced by this
};

struct ChildResult {
    std::string text;    // fresh child: its whole text (prompt and generation, no end-of-text token);
                         // forked child: the part of its own text the join keeps (its own text after
                         // the fork point, less SpawnRequest::later_drop where the runtime dropped it)
    bool finished = true;  // false: the child was cut off (budget, timeout, failure)
};

// Streams one thread's text. feed() returns an event when the thread must stop generating.
class ThreadParser {
public:
    virtual ~ThreadParser() = default;
    virtual std::optional<Event> feed(std::string_view piece) = 0;
    const std::string & text() const { return text_; }

protected:
    std::string text_;
};

class Dialect {
public:
    virtual ~Dialect() = default;
    virtual std::string name() const = 0;
    // A parser for a thread whose context starts with `prompt` (the prompt is part of text() and
    // is not scanned for markup). The parser may read this dialect's spec: the dialect must outlive
    // every parser it made (the runtime holds both for a request's lifetime).
    virtual std::unique_ptr<ThreadParser> parser(std::string prompt) const = 0;
    // A parser for a child thread (for a forked child, `context` includes the parent's text).
    virtual std::unique_ptr<ThreadParser> child_parser(std::string context, const ChildRequest &) const {
        return parser(std::move(context));
    }
    // How deep its upstream engine nests spawns: a thread at this depth does not spawn (the
    // runtime's Limits::max_depth, when set, overrides it).
    virtual int default_max_depth() const { return 1; }
    // Its engine forks only while the thread can still write this many tokens (its token budget and
    // context window left); with fewer, the block is decoded in line. 0: no such rule.
    virtual int fork_headroom() const { return 0; }
    // The tags this dialect's checkpoints add to their tokenizer as special tokens (upstream's own
    // list); empty when its markup is plain text (APR).
    virtual std::vector<std::string> added_tokens() const { return {}; }
    // The parent's new context after its children ran: its text with the spawn block replaced.
    virtual std::string join(std::string_view parent_text, const SpawnRequest & spawn,
                             const std::vector<ChildResult> & results) const = 0;
};

// The four forked dialects follow their upstream engines' own code (read at the commits named in
// dialects/forked_blocks.cpp). Their tags are the checkpoints' added tokens: seeds and inserted text
// are tokenized with special-token parsing, so a vocabulary that has the tag gives its single token
// and one that does not gives the text.

// "multiverse": <Parallel>\n<Goal>\n<Outline>\n1: ..\n</Outline>..</Goal>\n<Path>\n1: ..</Path>\n..
// <Conclusion>\n..</Conclusion>\n</Parallel>, nestable. At </Goal> one path per outline is forked,
// seeded "\n<Path>\n{n}:" (n: the outline's number); a path ends one token after its </Path> (the
// engine keeps that token, normally "\n"); later paths join without their leading "\n"; KV join,
// shared start; then "<Conclusion>\n" and the parent goes on.
std::unique_ptr<Dialect> make_multiverse_dialect();

// "threadweaver": <Parallel>\n<Outlines>\n<Outline>1: ..</Outline>..</Outlines>\n<Thread>\n1: ..
// </Thread><Thread>\n2: ..</Thread>\n. At </Outlines> one thread per outline is forked, seeded
// "\n<Thread>\n{n}:", stopped at </Thread>; later threads join without their leading "\n"; the
// parent re-reads the merged tokens (its engine re-sends them as a prompt), then "\n".
std::unique_ptr<Dialect> make_threadweaver_dialect();

// "npr": <guideline>\n<plan>1: ..</plan>..</guideline>\n<step>\n1: ..</step>\n..<takeaway>\n..
// </takeaway>. At </guideline> one step per plan is forked, seeded "\n<step>\n{n}:"; a step ends one
// token after its </step>; later steps join without their leading "\n"; KV join, shared start; then
// "<takeaway>\n".
std::unique_ptr<Dialect> make_npr_dialect();

// "parallel-r1": ..<Parallel><Path>..</Path><Path>..</Path></Parallel>\n<Summary>..</Summary>. The
// model does not plan the paths: at <Parallel> `width` paths (upstream: 2) are forked, seeded
// "<Path>", stopped at </Path>; the parent re-reads them (its engine re-sends the merged tokens),
// then "</Parallel>\n<Summary>" and the parent writes the summary.
std::unique_ptr<Dialect> make_parallel_r1_dialect(int width = 2);

// Any dialect by name: plain, apr, multiverse, threadweaver, npr, parallel-r1.
// Throws forkjoin::Error(invalid_argument) for an unknown name.
std::unique_ptr<Dialect> make_dialect(const std::string & name);

// "plain": no markup; a thread never spawns.
std::unique_ptr<Dialect> make_plain_dialect();

}  // namespace forkjoin::dialects
