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
    std::string prompt;  // a fresh child's whole starting context
};

struct SpawnRequest {
    std::vector<ChildRequest> children;
    size_t block_begin = 0;  // byte range of the spawn block in the thread's text; the join replaces it
    size_t block_end = 0;
};

enum class EventKind { spawn, malformed };

struct Event {
    EventKind kind;
    SpawnRequest spawn;  // kind == spawn
    std::string reason;  // kind == malformed
};

struct ChildResult {
    std::string text;    // the child's whole text (prompt and generation, no end-of-text token)
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
    // A parser for a thread whose context starts with `prompt` (the prompt is part of text()).
    virtual std::unique_ptr<ThreadParser> parser(std::string prompt) const = 0;
    // The parent's new context after its children ran: its text with the spawn block replaced.
    virtual std::string join(std::string_view parent_text, const SpawnRequest & spawn,
                             const std::vector<ChildResult> & results) const = 0;
};

// "plain": no markup; a thread never spawns.
std::unique_ptr<Dialect> make_plain_dialect();

}  // namespace forkjoin::dialects
