#include "dialects/dialect.h"

namespace forkjoin::dialects {
namespace {

constexpr std::string_view kGoalOpen = "<Goal>";
constexpr std::string_view kGoalClose = "</Goal>";
constexpr std::string_view kOutline = "<Outline>";
constexpr std::string_view kOutlineClose = "</Outline>";
constexpr std::string_view kPathClose = "</Path>";
constexpr std::string_view kPathSeed = "<Path>\n";

// Finds `tag` in the text fed since `scanned` (it may span pieces).
size_t find_new(const std::string & text, size_t scanned, std::string_view tag) {
    const size_t from = scanned >= tag.size() ? scanned - tag.size() + 1 : 0;
    return text.find(tag, from);
}

class MultiverseParser : public ThreadParser {
public:
    MultiverseParser(std::string context, bool is_path) : is_path_(is_path) {
        text_ = std::move(context);
        scanned_ = prompt_size_ = text_.size();
    }

    std::optional<Event> feed(std::string_view piece) override {
        const size_t scanned = scanned_;
        text_.append(piece);
        scanned_ = text_.size();
        const size_t goal = find_new(text_, scanned, kGoalClose);
        const size_t path = is_path_ ? find_new(text_, scanned, kPathClose) : std::string::npos;
        if (path != std::string::npos && (goal == std::string::npos || path < goal)) {
            return Event{EventKind::end, {}, {}};
        }
        if (goal == std::string::npos) return std::nullopt;
        // The fork point is the end of the token that completed </Goal> (text and KV agree there).
        const size_t open = text_.rfind(kGoalOpen, goal);
        if (open == std::string::npos || open < prompt_end()) {
            return Event{EventKind::malformed, {}, "</Goal> without a <Goal> this thread wrote"};
        }
        SpawnRequest spawn;
        spawn.kv_join = true;
        spawn.block_begin = spawn.block_end = text_.size();
        const std::string_view goal_text = std::string_view(text_).substr(open, goal - open);
        for (size_t at = goal_text.find(kOutline); at != std::string_view::npos; at = goal_text.find(kOutline, at + 1)) {
            const size_t body = at + kOutline.size();
            const size_t close = goal_text.find(kOutlineClose, body);
            if (close == std::string_view::npos) {
                return Event{EventKind::malformed, {}, "an <Outline> in the <Goal> is not closed"};
            }
            std::string_view outline = goal_text.substr(body, close - body);
            while (!outline.empty() && (outline.front() == '\n' || outline.front() == ' ')) outline.remove_prefix(1);
            const size_t colon = outline.find(':');
            ChildRequest child;
            child.forked = true;
            child.label = colon != std::string_view::npos && colon <= 4 ? std::string(outline.substr(0, colon))
                                                                        : std::to_string(spawn.children.size() + 1);
            child.prompt = std::string(kPathSeed) + child.label + ":";
            spawn.children.push_back(std::move(child));
        }
        if (spawn.children.empty()) return Event{EventKind::malformed, {}, "a <Goal> with no <Outline>"};
        return Event{EventKind::spawn, std::move(spawn), {}};
    }

private:
    size_t prompt_end() const { return prompt_size_; }
    bool is_path_;
    size_t scanned_ = 0;
    size_t prompt_size_ = 0;
};

class MultiverseDialect : public Dialect {
public:
    std::string name() const override { return "multiverse"; }
    std::unique_ptr<ThreadParser> parser(std::string prompt) const override {
        return std::make_unique<MultiverseParser>(std::move(prompt), false);
    }
    std::unique_ptr<ThreadParser> child_parser(std::string context, const ChildRequest &) const override {
        return std::make_unique<MultiverseParser>(std::move(context), true);
    }
    // The text the parent's context holds after a KV join: each path's own text, in order.
    std::string join(std::string_view parent, const SpawnRequest & spawn,
                     const std::vector<ChildResult> & results) const override {
        std::string out(parent.substr(0, spawn.block_end));
        for (const auto & r : results) out += r.text;
        return out;
    }
};

}  // namespace

std::unique_ptr<Dialect> make_multiverse_dialect() { return std::make_unique<MultiverseDialect>(); }

}  // namespace forkjoin::dialects
