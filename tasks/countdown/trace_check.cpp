#include "tasks/countdown/trace_check.h"

#include "tasks/countdown/arithmetic.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <vector>

namespace forkjoin::countdown {
namespace {

std::optional<int> to_int(std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    int v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
}

// "[3, 7, 9]" -> {3, 7, 9}; "[]" -> {}.
std::optional<std::vector<int>> parse_numbers(std::string_view s) {
    if (s.size() < 2 || s.front() != '[' || s.back() != ']') return std::nullopt;
    s = s.substr(1, s.size() - 2);
    std::vector<int> out;
    if (s.find_first_not_of(' ') == std::string_view::npos) return out;
    for (size_t at = 0; at <= s.size();) {
        const size_t comma = std::min(s.find(',', at), s.size());
        const auto v = to_int(s.substr(at, comma - at));
        if (!v) return std::nullopt;
        out.push_back(*v);
        at = comma + 1;
    }
    return out;
}

// "['9-3=6', '7+6=13']" -> the operations; "[]" -> {}.
std::optional<std::vector<Operation>> parse_operations(std::string_view s) {
    if (s.size() < 2 || s.front() != '[' || s.back() != ']') return std::nullopt;
    std::vector<Operation> out;
    for (size_t q = s.find('\''); q != std::string_view::npos; q = s.find('\'', q + 1)) {
        const size_t e = s.find('\'', q + 1);
        if (e == std::string_view::npos) return std::nullopt;
        const auto op = parse_operation(s.substr(q + 1, e - q - 1));
        if (!op) return std::nullopt;
        out.push_back(*op);
        q = e;
    }
    return out;
}

std::vector<int> sorted(std::vector<int> v) {
    std::sort(v.begin(), v.end());
    return v;
}

struct Node {
    std::vector<int> nums;
    std::vector<Operation> ops;
    int generated = 0;                     // children generated so far (the next id's last index)
    std::map<std::string, int> explored;   // operations explored here, how often
};

struct Explored {
    Operation op;
    std::vector<int> result;
};

class Checker {
public:
    Checker(const Problem & p) : target_(p.target) {}

    void line(std::string_view text, int number) {
        number_ = number;
        if (text.empty()) return;
        if (in_join_) {
            // The runtime's join text: not this thread's lines. The winning path's nodes become known.
            if (text == "<End Sub Searches>") {
                in_join_ = false;
                after_join_ = true;
                counting_ = true;
                return;
            }
            if (text.starts_with("<Goal Reached in Sub Search ")) join_goal_ = true;
            if (text.starts_with("<")) return;
            // Read as a search of its own (nodes registered as generated), never counted.
            counting_ = false;
            path_ = false;
            statement(text);
            return;
        }
        if (text == "<Sub Searches>") {
            in_join_ = true;
            join_goal_ = false;
            return;
        }
        if (text.starts_with("<Calling Sub Searches>") || text.starts_with("<Start Sub Search ") ||
            text.starts_with("<End Calling Sub Searches>") || (number == 1 && text.starts_with("<|"))) {
            return;  // the spawn block (the join replaces it) and the mode tag
        }
        if (after_join_) {
            after_join_ = false;
            path_ = false;
            if (text == "No solution found.") return count("join", !join_goal_ ? "" : "a sub search reached the goal");
            const std::string t = std::to_string(target_);
            if (text == t + "," + t + " equal: Goal Reached") {
                path_ = true;
                return count("join", join_goal_ ? "" : "no sub search reached the goal");
            }
            return count("join", "after the join: \"" + std::string(text) + "\"");
        }
        statement(text);
    }

    LineCheck result() { return std::move(check_); }

private:
    void count(const std::string & kind, const std::string & wrong) {
        if (!counting_) return;
        LineCount & c = check_.by_kind[kind];
        ++c.lines;
        if (wrong.empty()) return;
        ++c.wrong;
        if (check_.first_error.empty()) check_.first_error = "line " + std::to_string(number_) + " (" + kind + "): " + wrong;
    }

    bool at_root() const { return current_ == "0"; }  // the root's node (in any thread: a child never moves there)

    void statement(std::string_view text) {
        constexpr std::string_view kMove = "Moving to Node #", kState = "Current State: ", kExplore = "Exploring Operation: ",
                                   kGenerated = "Generated Node #";
        if (text.starts_with(kMove)) return move(std::string(text.substr(kMove.size())));
        if (text.starts_with(kState)) return state(text.substr(kState.size()));
        if (text.starts_with(kExplore)) return explore(text.substr(kExplore.size()));
        if (text.starts_with(kGenerated)) return generated(text.substr(kGenerated.size()));
        if (text == "No solution found.") return count("end", "");
        constexpr std::string_view kEqual = " equal: Goal Reached", kUnequal = " unequal: No Solution";
        if (text.ends_with(kEqual)) return equality(text.substr(0, text.size() - kEqual.size()), /*says_equal=*/true);
        if (text.ends_with(kUnequal)) return equality(text.substr(0, text.size() - kUnequal.size()), /*says_equal=*/false);
        count("format", "\"" + std::string(text) + "\" is no line of the search");
    }

    void move(const std::string & id) {
        pending_.reset();
        if (nodes_.empty()) {  // the prompt: the thread's start node
            start_ = current_ = id;
            nodes_[id];
            defining_ = true;
            return;
        }
        current_ = id;
        count("move", nodes_.contains(id) ? "" : "node #" + id + " was never generated");
    }

    void state(std::string_view s) {
        const size_t colon = s.find(':'), ops = s.find(", Operations: ");
        const auto target = colon == std::string_view::npos ? std::nullopt : to_int(s.substr(0, colon));
        const auto nums = ops == std::string_view::npos || colon > ops ? std::nullopt : parse_numbers(s.substr(colon + 1, ops - colon - 1));
        const auto list = ops == std::string_view::npos ? std::nullopt : parse_operations(s.substr(ops + 14));
        if (defining_) {  // the prompt's state: the start node as given
            defining_ = false;
            if (nums && list) nodes_[current_].nums = *nums, nodes_[current_].ops = *list;
            return;
        }
        if (!target || !nums || !list) return count("state", "unreadable \"" + std::string(s) + "\"");
        const auto it = nodes_.find(current_);
        if (it == nodes_.end()) return count("state", "");  // the move was wrong already
        if (*target != target_) return count("state", "target " + std::to_string(*target) + ", not " + std::to_string(target_));
        if (sorted(*nums) != sorted(it->second.nums)) return count("state", "numbers " + format_numbers(*nums) + " at node #" + current_ + ", which holds " + format_numbers(it->second.nums));
        count("state", *list == it->second.ops ? "" : "operations " + format_operations(*list) + " at node #" + current_);
    }

    void explore(std::string_view s) {
        const std::string kind = path_ ? "path" : at_root() ? "root expansion" : "operation";
        pending_.reset();
        const size_t sep = s.find(", Resulting Numbers: ");
        const auto op = sep == std::string_view::npos ? std::nullopt : parse_operation(s.substr(0, sep));
        const auto result = sep == std::string_view::npos ? std::nullopt : parse_numbers(s.substr(sep + 21));
        if (!op || !result) return count(kind, "unreadable \"" + std::string(s) + "\"");
        pending_ = Explored{*op, *result};
        const auto it = nodes_.find(current_);
        if (it == nodes_.end()) return count(kind, "");  // the move was wrong already
        Node & node = it->second;
        if (auto err = arithmetic_error(*op)) return count(kind, op->to_string() + ": " + *err);
        std::vector<int> left = node.nums;
        for (int operand : {op->lhs, op->rhs}) {
            const auto at = std::find(left.begin(), left.end(), operand);
            if (at == left.end()) return count(kind, op->to_string() + ": " + std::to_string(operand) + " is not in " + format_numbers(node.nums));
            left.erase(at);
        }
        left.push_back(op->result);
        if (sorted(left) != sorted(*result)) return count(kind, op->to_string() + " leaves " + format_numbers(left) + ", not " + format_numbers(*result));
        // An operation explores once per pair of numbers that gives it: twice for 72+11 in [72, 72, 11].
        const auto times = [&](int v) { return static_cast<int>(std::count(node.nums.begin(), node.nums.end(), v)); };
        const int pairs = op->lhs == op->rhs ? times(op->lhs) * (times(op->lhs) - 1) / 2 : times(op->lhs) * times(op->rhs);
        if (++node.explored[op->to_string()] > pairs && !path_) {
            return count(kind, op->to_string() + " explored more often than " + format_numbers(node.nums) + " allows at node #" + current_);
        }
        count(kind, "");
    }

    void generated(std::string_view s) {
        const std::string kind = path_ ? "path" : at_root() ? "root expansion" : "generated node";
        const size_t colon = s.find(": "), op_at = s.find(" Operation: ");
        if (colon == std::string_view::npos || op_at == std::string_view::npos || op_at < colon) return count(kind, "unreadable \"" + std::string(s) + "\"");
        const std::string id(s.substr(0, colon));
        const std::string_view body = s.substr(colon + 2, op_at - colon - 2);
        const size_t tcolon = body.find(':');
        const auto target = tcolon == std::string_view::npos ? std::nullopt : to_int(body.substr(0, tcolon));
        const auto nums = tcolon == std::string_view::npos ? std::nullopt : parse_numbers(body.substr(tcolon + 1));
        const auto op = parse_operation(s.substr(op_at + 12));
        if (!target || !nums || !op) return count(kind, "unreadable \"" + std::string(s) + "\"");
        const auto parent = nodes_.find(current_);
        if (parent == nodes_.end()) return count(kind, "");
        if (path_) {  // the clean path names nodes generated before
            const auto it = nodes_.find(id);
            if (it == nodes_.end()) return count(kind, "node #" + id + " on the path was never generated");
            return count(kind, sorted(it->second.nums) == sorted(*nums) ? "" : "node #" + id + " holds " + format_numbers(it->second.nums));
        }
        const std::string expected_id = current_ + "," + std::to_string(parent->second.generated);
        std::string wrong;
        if (!pending_) wrong = "no explored operation before it";
        else if (id != expected_id) wrong = "node #" + id + ", the next id is #" + expected_id;
        else if (*target != target_) wrong = "target " + std::to_string(*target);
        else if (sorted(*nums) != sorted(pending_->result)) wrong = "numbers " + format_numbers(*nums) + ", explored " + format_numbers(pending_->result);
        else if (!(*op == pending_->op)) wrong = "operation " + op->to_string() + ", explored " + pending_->op.to_string();
        if (pending_) {
            Node child;
            child.nums = *nums;
            child.ops = parent->second.ops;
            child.ops.push_back(*op);
            ++parent->second.generated;
            nodes_[id] = std::move(child);
        }
        pending_.reset();
        count(kind, wrong);
    }

    void equality(std::string_view pair, bool says_equal) {
        const size_t comma = pair.find(',');
        const auto x = comma == std::string_view::npos ? std::nullopt : to_int(pair.substr(0, comma));
        const auto t = comma == std::string_view::npos ? std::nullopt : to_int(pair.substr(comma + 1));
        const std::optional<Explored> explored = pending_;
        pending_.reset();
        if (!x || !t) return count("equality", "unreadable \"" + std::string(pair) + "\"");
        if (says_equal && *x == target_) path_ = true;  // the clean path follows
        if (*t != target_) return count("equality", "target " + std::to_string(*t) + ", not " + std::to_string(target_));
        if (!explored || explored->result.size() != 1) return count("equality", "no single explored result before it");
        if (explored->result[0] != *x) return count("equality", "result " + std::to_string(*x) + ", explored " + std::to_string(explored->result[0]));
        count("equality", says_equal == (*x == target_) ? "" : std::string(pair) + (says_equal ? " called equal" : " called unequal"));
    }

    int target_;
    int number_ = 0;
    std::map<std::string, Node> nodes_;
    std::string start_, current_;
    std::optional<Explored> pending_;
    bool defining_ = false;  // the prompt's state line comes next
    bool path_ = false;      // after a goal: the clean path
    bool in_join_ = false, after_join_ = false, join_goal_ = false;
    bool counting_ = true;
    LineCheck check_;
};

}  // namespace

int LineCheck::wrong() const {
    int n = 0;
    for (const auto & [kind, c] : by_kind) n += c.wrong;
    return n;
}

LineCheck check_trace_lines(std::string_view text, const Problem & problem) {
    Checker c(problem);
    int number = 0;
    for (size_t at = 0; at < text.size();) {
        const size_t end = text.find('\n', at);
        if (end == std::string_view::npos) break;  // cut mid-line (a window, a cancel): not a line yet
        c.line(text.substr(at, end - at), ++number);
        at = end + 1;
    }
    return c.result();
}

void add_counts(LineCheck & a, const LineCheck & b) {
    for (const auto & [kind, c] : b.by_kind) {
        a.by_kind[kind].lines += c.lines;
        a.by_kind[kind].wrong += c.wrong;
    }
    if (a.first_error.empty()) a.first_error = b.first_error;
}

}  // namespace forkjoin::countdown
