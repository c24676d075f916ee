#include "dialects/apr.h"

#include <map>

namespace forkjoin::dialects {
namespace {

// What the markup means is APR's own inference code (Parallel-Reasoning/APR 5577928,
// src/eval/eval_apr.py decode_trace, src/eval/parallel_infernce_utils.py _get_subsearch_info,
// get_main_trace_after_sub_search, get_search_result).
constexpr std::string_view kCall = "<Calling Sub Searches>";
constexpr std::string_view kResults = "<Sub Searches>";  // the engine writes it; a model that does is repaired
constexpr std::string_view kEndCall = "<End Calling Sub Searches>";
constexpr std::string_view kStart = "<Start Sub Search ";
constexpr std::string_view kMoving = "Moving to Node #";
constexpr std::string_view kState = "Current State: ";
constexpr std::string_view kGenerated = "Generated Node #";
constexpr std::string_view kGoal = "Goal Reached";

struct NodeState {
    std::string target;  // "12"
    std::string nums;    // "[6, 6]"
    std::string ops;     // "['4+2=6']"
};

std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> lines;
    size_t start = 0;
    while (start <= text.size()) {
        const size_t nl = text.find('\n', start);
        if (nl == std::string_view::npos) {
            if (start < text.size()) lines.push_back(text.substr(start));
            break;
        }
        lines.push_back(text.substr(start, nl - start));
        start = nl + 1;
    }
    return lines;
}

// "12:[6, 6], Operations: ['4+2=6']" -> state; nullopt if it does not read.
std::optional<NodeState> parse_state(std::string_view rest) {
    const size_t colon = rest.find(":[");
    const size_t close = rest.find("], Operations: ");
    if (colon == std::string_view::npos || close == std::string_view::npos || close < colon) return std::nullopt;
    NodeState s;
    s.target = std::string(rest.substr(0, colon));
    s.nums = std::string(rest.substr(colon + 1, close - colon));
    s.ops = std::string(rest.substr(close + std::string_view("], Operations: ").size()));
    if (s.target.empty() || s.ops.empty() || s.ops.front() != '[' || s.ops.back() != ']') return std::nullopt;
    return s;
}

std::string append_op(const std::string & ops, std::string_view op) {
    std::string out = ops.substr(0, ops.size() - 1);  // without the closing ']'
    if (ops != "[]") out.append(", ");
    return out.append("'").append(op).append("']");
}

// Every node the parent's text describes: states it moved to, and nodes it generated (whose
// operations are their parent's plus the generating one), as APR's _get_subsearch_info reads them.
std::map<std::string, NodeState> collect_nodes(std::string_view text) {
    std::map<std::string, NodeState> nodes;
    const auto lines = split_lines(text);
    for (size_t i = 0; i + 1 < lines.size(); ++i) {
        const size_t m = lines[i].find(kMoving);
        if (m == std::string_view::npos || !lines[i + 1].starts_with(kState)) continue;
        if (auto s = parse_state(lines[i + 1].substr(kState.size()))) {
            nodes[std::string(lines[i].substr(m + kMoving.size()))] = *s;
        }
    }
    for (const auto & line : lines) {
        if (!line.starts_with(kGenerated)) continue;
        // Generated Node #0,1: 12:[6, 6] Operation: 4+2=6
        const auto rest = line.substr(kGenerated.size());
        const size_t colon = rest.find(": ");
        const size_t opat = rest.find(" Operation: ");
        if (colon == std::string_view::npos || opat == std::string_view::npos || opat < colon) continue;
        const std::string id(rest.substr(0, colon));
        if (nodes.count(id)) continue;
        const size_t comma = id.rfind(',');
        if (comma == std::string::npos) continue;
        auto parent = nodes.find(id.substr(0, comma));
        if (parent == nodes.end()) continue;
        const auto state = rest.substr(colon + 2, opat - colon - 2);  // "12:[6, 6]"
        const size_t tcolon = state.find(":[");
        if (tcolon == std::string_view::npos || !state.ends_with("]")) continue;
        NodeState s;
        s.target = std::string(state.substr(0, tcolon));
        s.nums = std::string(state.substr(tcolon + 1));
        s.ops = append_op(parent->second.ops, rest.substr(opat + std::string_view(" Operation: ").size()));
        nodes[id] = s;
    }
    return nodes;
}

struct StartLine {
    std::string index, level, id;
};

// "<Start Sub Search 0 at level 1> Moving to Node #0,0". As _get_subsearch_info: a line with
// "<Start Sub Search" and "Moving to Node #" names the node after the latter; index and level are
// read where the tag spells them.
std::optional<StartLine> parse_start(std::string_view line) {
    const size_t tag = line.find(kStart);
    const size_t moving = line.find(kMoving);
    if (tag == std::string_view::npos || moving == std::string_view::npos || moving < tag) return std::nullopt;
    StartLine s;
    s.id = std::string(line.substr(moving + kMoving.size()));
    while (!s.id.empty() && (s.id.back() == ' ' || s.id.back() == '\r')) s.id.pop_back();
    const auto rest = line.substr(tag + kStart.size(), moving - tag - kStart.size());
    const size_t at = rest.find(" at level ");
    const size_t gt = rest.find('>');
    if (at != std::string_view::npos && gt != std::string_view::npos && gt > at) {
        s.index = std::string(rest.substr(0, at));
        s.level = std::string(rest.substr(at + 10, gt - at - 10));
    }
    if (s.id.empty()) return std::nullopt;
    return s;
}

class AprParser : public ThreadParser {
public:
    AprParser(std::string prompt, const AprOptions & options) : options_(options) {
        text_ = std::move(prompt);
        scanned_ = text_.size();
    }

    std::optional<Event> feed(std::string_view piece) override {
        text_.append(piece);
        // Look for a tag only where it could newly end (it may span pieces).
        auto find_new = [&](std::string_view tag) {
            return text_.find(tag, scanned_ >= tag.size() ? scanned_ - tag.size() + 1 : 0);
        };
        const size_t results = find_new(kResults);
        const size_t at = find_new(kEndCall);
        scanned_ = text_.size();
        if (results != std::string::npos && results < at) {
            // decode_trace stops generation at "<Sub Searches>" (results only the engine may write)
            // and goes on from "<Calling Sub Searches>" in its place.
            Event e{EventKind::repair, {}, "the thread wrote \"<Sub Searches>\" itself; APR's engine writes "
                                            "\"<Calling Sub Searches>\" in its place"};
            e.repair_from = results;
            e.repair_text = std::string(kCall);
            return e;
        }
        if (at == std::string::npos) return std::nullopt;
        size_t end = at + kEndCall.size();
        if (end < text_.size() && text_[end] == '\n') ++end;
        return spawn_event(at, end);
    }

private:
    Event malformed(std::string reason) const { return Event{EventKind::malformed, {}, std::move(reason)}; }

    Event spawn_event(size_t end_tag, size_t end) {
        const size_t begin = text_.rfind(kCall, end_tag);
        if (begin == std::string::npos) {
            return malformed("\"<End Calling Sub Searches>\" without a \"<Calling Sub Searches>\" before it");
        }
        const auto block = std::string_view(text_).substr(begin + kCall.size(), end_tag - begin - kCall.size());
        const auto nodes = collect_nodes(std::string_view(text_).substr(0, begin));
        SpawnRequest spawn;
        spawn.block_begin = begin;
        spawn.block_end = end;
        for (const auto & line : split_lines(block)) {
            // _get_subsearch_info reads only the lines with both a start tag and a node; it skips
            // any other line (an empty block runs nothing and joins empty).
            const auto start = parse_start(line);
            if (!start) continue;
            auto node = nodes.find(start->id);
            if (node == nodes.end()) {
                return malformed("sub search at Node #" + start->id + ", a node this thread never generated");
            }
            ChildRequest child;
            child.label = start->id;
            child.prompt = options_.child_prefix + std::string(kMoving) + start->id + "\n" + std::string(kState) +
                           node->second.target + ":" + node->second.nums + ", Operations: " + node->second.ops +
                           (options_.state_line_newline ? "\n" : "");
            spawn.children.push_back(std::move(child));
        }
        return Event{EventKind::spawn, std::move(spawn), {}};
    }

    AprOptions options_;
    size_t scanned_ = 0;
};

// The child's clean path: what follows its second-to-last "Goal Reached" line (APR's
// get_search_result), or nullopt when it did not reach the goal.
std::optional<std::string> clean_path(std::string_view child) {
    std::vector<size_t> at;
    for (size_t p = child.find(kGoal); p != std::string_view::npos; p = child.find(kGoal, p + 1)) at.push_back(p);
    if (at.size() < 2) return std::nullopt;
    std::string_view rest = child.substr(at[at.size() - 2] + kGoal.size());
    if (!rest.empty() && rest.front() == '\n') rest.remove_prefix(1);
    while (!rest.empty() && (rest.back() == '\n' || rest.back() == ' ' || rest.back() == '\r' || rest.back() == '\t')) {
        rest.remove_suffix(1);
    }
    return std::string(rest) + "\n";
}

class AprDialect : public Dialect {
public:
    explicit AprDialect(AprOptions options) : options_(std::move(options)) {}
    std::string name() const override { return "apr"; }
    std::unique_ptr<ThreadParser> parser(std::string prompt) const override {
        return std::make_unique<AprParser>(std::move(prompt), options_);
    }
    std::string join(std::string_view parent, const SpawnRequest & spawn,
                     const std::vector<ChildResult> & results) const override {
        std::string out(parent.substr(0, spawn.block_begin));
        out += "<Sub Searches>\n";
        // The level is the one the parent wrote for each sub search.
        const auto block = parent.substr(spawn.block_begin, spawn.block_end - spawn.block_begin);
        std::vector<StartLine> starts;
        for (const auto & line : split_lines(block)) {
            if (auto s = parse_start(line)) starts.push_back(*s);
        }
        for (size_t i = 0; i < spawn.children.size(); ++i) {
            // Upstream nests one level and always writes 1; a deeper forkjoin spawn keeps its own.
            const std::string level = i < starts.size() && !starts[i].level.empty() ? starts[i].level : "1";
            const std::string where = " in Sub Search " + std::to_string(i) + " at level " + level + " at Node #" +
                                      spawn.children[i].label + ">\n";
            const auto path = i < results.size() ? clean_path(results[i].text) : std::nullopt;
            if (path) {
                out += "<Goal Reached" + where + *path;
            } else {
                out += "<No Solution" + where;
            }
        }
        out += "<End Sub Searches>\n";
        return out;
    }

private:
    AprOptions options_;
};

}  // namespace

std::unique_ptr<Dialect> make_apr_dialect(const AprOptions & options) {
    return std::make_unique<AprDialect>(options);
}

}  // namespace forkjoin::dialects
