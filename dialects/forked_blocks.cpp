// The dialects whose children fork the parent's context and join by KV splice: multiverse,
// threadweaver, npr and parallel-r1 differ only in their tags, so one parser reads a spec.
#include "dialects/dialect.h"

namespace forkjoin::dialects {
namespace {

struct BlockSpec {
    std::string name;
    std::string open;        // opens the block that plans the children ("<Goal>"); empty: no plan
    std::string close;       // the spawn point ("</Goal>"); the children fork right after it
    std::string item_open;   // one child per item in the plan ("<Outline>")
    std::string item_close;  // "</Outline>"
    std::string seed;        // a child's first text; "{label}" is replaced by the item's label
    std::string child_end;   // a child's part ends at this tag ("</Path>")
    int fixed_width = 0;     // no plan: this many children at the spawn point
};

// Finds `tag` in the text fed since `scanned` (it may span pieces).
size_t find_new(const std::string & text, size_t scanned, const std::string & tag) {
    const size_t from = scanned >= tag.size() ? scanned - tag.size() + 1 : 0;
    return text.find(tag, from);
}

std::string seed_for(const BlockSpec & spec, const std::string & label) {
    std::string s = spec.seed;
    const size_t at = s.find("{label}");
    if (at != std::string::npos) s.replace(at, 7, label);
    return s;
}

class BlockParser : public ThreadParser {
public:
    BlockParser(const BlockSpec & spec, std::string context, bool is_child) : spec_(spec), is_child_(is_child) {
        text_ = std::move(context);
        scanned_ = prompt_size_ = text_.size();
    }

    std::optional<Event> feed(std::string_view piece) override {
        const size_t scanned = scanned_;
        text_.append(piece);
        scanned_ = text_.size();
        const size_t spawn_at = find_new(text_, scanned, spec_.close);
        const size_t end_at = is_child_ ? find_new(text_, scanned, spec_.child_end) : std::string::npos;
        if (end_at != std::string::npos && (spawn_at == std::string::npos || end_at < spawn_at)) {
            return Event{EventKind::end, {}, {}};
        }
        if (spawn_at == std::string::npos) return std::nullopt;
        // The fork point is the end of the token that completed the tag: text and KV agree there.
        SpawnRequest spawn;
        spawn.kv_join = true;
        spawn.block_begin = spawn.block_end = text_.size();
        if (spec_.fixed_width > 0) {
            for (int i = 1; i <= spec_.fixed_width; ++i) add_child(spawn, std::to_string(i));
            return Event{EventKind::spawn, std::move(spawn), {}};
        }
        const size_t open = text_.rfind(spec_.open, spawn_at);
        if (open == std::string::npos || open < prompt_size_) {
            return malformed(spec_.close + " without a " + spec_.open + " this thread wrote");
        }
        const std::string_view plan = std::string_view(text_).substr(open, spawn_at - open);
        for (size_t at = plan.find(spec_.item_open); at != std::string_view::npos; at = plan.find(spec_.item_open, at + 1)) {
            const size_t body = at + spec_.item_open.size();
            const size_t close = plan.find(spec_.item_close, body);
            if (close == std::string_view::npos) return malformed("a " + spec_.item_open + " in the plan is not closed");
            std::string_view item = plan.substr(body, close - body);
            while (!item.empty() && (item.front() == '\n' || item.front() == ' ')) item.remove_prefix(1);
            const size_t colon = item.find(':');
            add_child(spawn, colon != std::string_view::npos && colon > 0 && colon <= 4
                                 ? std::string(item.substr(0, colon))
                                 : std::to_string(spawn.children.size() + 1));
        }
        if (spawn.children.empty()) return malformed("a plan with no " + spec_.item_open);
        return Event{EventKind::spawn, std::move(spawn), {}};
    }

private:
    static Event malformed(std::string reason) { return Event{EventKind::malformed, {}, std::move(reason)}; }
    void add_child(SpawnRequest & spawn, const std::string & label) const {
        ChildRequest child;
        child.forked = true;
        child.label = label;
        child.prompt = seed_for(spec_, label);
        spawn.children.push_back(std::move(child));
    }

    const BlockSpec & spec_;
    bool is_child_;
    size_t scanned_ = 0;
    size_t prompt_size_ = 0;
};

class BlockDialect : public Dialect {
public:
    explicit BlockDialect(BlockSpec spec) : spec_(std::move(spec)) {}
    std::string name() const override { return spec_.name; }
    std::unique_ptr<ThreadParser> parser(std::string prompt) const override {
        return std::make_unique<BlockParser>(spec_, std::move(prompt), false);
    }
    std::unique_ptr<ThreadParser> child_parser(std::string context, const ChildRequest &) const override {
        return std::make_unique<BlockParser>(spec_, std::move(context), true);
    }
    // After a KV join the parent's context holds each child's own text, in order.
    std::string join(std::string_view parent, const SpawnRequest & spawn,
                     const std::vector<ChildResult> & results) const override {
        std::string out(parent.substr(0, spawn.block_end));
        for (const auto & r : results) out += r.text;
        return out;
    }

private:
    BlockSpec spec_;
};

}  // namespace

std::unique_ptr<Dialect> make_multiverse_dialect() {
    return std::make_unique<BlockDialect>(
        BlockSpec{"multiverse", "<Goal>", "</Goal>", "<Outline>", "</Outline>", "<Path>\n{label}:", "</Path>", 0});
}

std::unique_ptr<Dialect> make_threadweaver_dialect() {
    return std::make_unique<BlockDialect>(
        BlockSpec{"threadweaver", "<Outlines>", "</Outlines>", "<Outline>", "</Outline>", "\n<Thread>\n{label}:", "</Thread>", 0});
}

std::unique_ptr<Dialect> make_npr_dialect() {
    return std::make_unique<BlockDialect>(
        BlockSpec{"npr", "<guideline>", "</guideline>", "<plan>", "</plan>", "<step>\n{label}:", "</step>", 0});
}

std::unique_ptr<Dialect> make_parallel_r1_dialect(int width) {
    return std::make_unique<BlockDialect>(BlockSpec{"parallel-r1", "", "<Parallel>", "", "", "<Path>", "</Path>", std::max(1, width)});
}

}  // namespace forkjoin::dialects
