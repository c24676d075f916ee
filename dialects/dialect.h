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

struct SpawnRequest {
    std::vector<ChildRequest> children;
    size_t block_begin = 0;  // text join: byte range of the spawn block in the thread's text, replaced by the join
    size_t block_end = 0;
    bool kv_join = false;    // the children's own text (and KV cells) is appended to the parent in order
};

// spawn: start children and wait for them. end: the thread's part is over (a forked child closed
// its path) without an end-of-text token. malformed: markup that cannot be followed.
enum class EventKind { spawn, end, malformed };

struct Event {
    EventKind kind;
    SpawnRequest spawn;  // kind == spawn
    std::string reason;  // kind == malformed
};

struct ChildResult {
    std::string text;    // fresh child: its whole text (prompt and generation, no end-of-text token);
                         // forked child: its own text after the fork point
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
    // is not scanned for markup).
    virtual std::unique_ptr<ThreadParser> parser(std::string prompt) const = 0;
    // A parser for a child thread (for a forked child, `context` includes the parent's text).
    virtual std::unique_ptr<ThreadParser> child_parser(std::string context, const ChildRequest &) const {
        return parser(std::move(context));
    }
    // The parent's new context after its children ran: its text with the spawn block replaced.
    virtual std::string join(std::string_view parent_text, const SpawnRequest & spawn,
                             const std::vector<ChildResult> & results) const = 0;
};

// "multiverse": <Parallel><Goal><Outline>..</Outline>..</Goal><Path>..</Path>..<Conclusion>..
// </Conclusion></Parallel>, nestable. At </Goal> one path per outline is forked from the prefix
// (seeded "<Path>\n"); a path ends at its </Path>; paths never see each other; the KV join appends
// them in order and the parent goes on (its Conclusion).
std::unique_ptr<Dialect> make_multiverse_dialect();

// "threadweaver": <Parallel><Outlines><Outline>i: ..</Outline>..</Outlines><Thread>i: ..</Thread>..
// </Parallel>. At </Outlines> one thread per outline is forked, seeded "\n<Thread>\n{i}:", and
// stopped at </Thread>; KV join.
std::unique_ptr<Dialect> make_threadweaver_dialect();

// "npr": <guideline><plan>i: ..</plan>..</guideline><step>\ni: ..</step>..<takeaway>. At
// </guideline> one step per plan is forked, seeded "<step>\n{i}:", stopped at </step>; KV join.
std::unique_ptr<Dialect> make_npr_dialect();

// "parallel-r1": <Parallel><Path>..</Path>..</Parallel><Summary>..</Summary>. The model does not
// plan the paths, so at <Parallel> `width` paths are forked (seeded "<Path>", stopped at </Path>)
// and spliced back; the model then closes the block and summarises.
std::unique_ptr<Dialect> make_parallel_r1_dialect(int width = 2);

// Any dialect by name: plain, apr, multiverse, threadweaver, npr, parallel-r1.
// Throws forkjoin::Error(invalid_argument) for an unknown name.
std::unique_ptr<Dialect> make_dialect(const std::string & name);

// "plain": no markup; a thread never spawns.
std::unique_ptr<Dialect> make_plain_dialect();

}  // namespace forkjoin::dialects
