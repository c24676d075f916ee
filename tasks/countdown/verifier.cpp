#include "tasks/countdown/verifier.h"

#include <algorithm>
#include <map>

namespace forkjoin::countdown {

Verdict verify(const Problem & p, const std::vector<Operation> & steps) {
    std::vector<int> have = p.nums;
    for (size_t i = 0; i < steps.size(); ++i) {
        const Operation & s = steps[i];
        const std::string where = "step " + std::to_string(i + 1) + " (" + s.to_string() + ")";
        if (auto err = arithmetic_error(s)) return {false, "step " + std::to_string(i + 1) + ": " + *err};
        auto take = [&](int v) {
            auto it = std::find(have.begin(), have.end(), v);
            if (it == have.end()) return false;
            have.erase(it);
            return true;
        };
        if (!take(s.lhs)) return {false, where + ": " + std::to_string(s.lhs) + " is not available in " + format_numbers(have)};
        if (!take(s.rhs)) return {false, where + ": " + std::to_string(s.rhs) + " is not available in " + format_numbers(have)};
        have.push_back(s.result);
    }
    if (have.size() != 1) {
        return {false, "not every number was used: " + std::to_string(have.size()) + " numbers left " + format_numbers(have)};
    }
    if (have[0] != p.target) {
        return {false, "the result " + std::to_string(have[0]) + " is not the target " + std::to_string(p.target)};
    }
    return {true, ""};
}

namespace {
constexpr std::string_view kExploring = "Exploring Operation: ";

// The operation of the "Exploring Operation: a+b=c, ..." line at `pos`; sets `error` when unreadable.
std::optional<Operation> read_step(std::string_view trace, size_t pos, std::string & error) {
    const size_t from = pos + kExploring.size();
    const size_t comma = trace.find(',', from);
    if (comma == std::string_view::npos) {
        error = "unreadable step at byte " + std::to_string(pos);
        return std::nullopt;
    }
    auto op = parse_operation(trace.substr(from, comma - from));
    if (!op) error = "unreadable step \"" + std::string(trace.substr(from, comma - from)) + "\"";
    return op;
}
}  // namespace

ExtractedPath extract_solution(std::string_view trace) {
    const std::string_view root = "Moving to Node #0\n";
    const std::string_view goal = " equal: Goal Reached";
    size_t start = std::string_view::npos;
    for (size_t pos = trace.find(root); pos != std::string_view::npos; pos = trace.find(root, pos + 1)) {
        if (pos == 0 || trace[pos - 1] == '\n') start = pos;
    }
    if (start == std::string_view::npos) return {{}, "no clean path: the trace has no \"Moving to Node #0\" line"};
    const size_t end = trace.find(goal, start);
    if (end == std::string_view::npos) return {{}, "no goal: the final path does not end in \"Goal Reached\""};
    ExtractedPath out;
    for (size_t pos = trace.find(kExploring, start); pos != std::string_view::npos && pos < end; pos = trace.find(kExploring, pos + 1)) {
        std::string error;
        auto op = read_step(trace, pos, error);
        if (!op) return {{}, error};
        out.steps.push_back(*op);
    }
    if (out.steps.empty()) out.error = "the final path has no steps";
    return out;
}

ExtractedPath extract_subsearch_solution(std::string_view trace) {
    const std::string_view goal = " equal: Goal Reached";
    const std::string_view state = "Current State: ";
    const std::string_view ops_key = "Operations: [";
    const size_t end = trace.find(goal);
    if (end == std::string_view::npos) return {{}, "no goal: the sub search does not reach \"Goal Reached\""};
    const size_t at = trace.rfind(state, end);
    if (at == std::string_view::npos) return {{}, "no state line before the goal"};
    const size_t line_end = trace.find('\n', at);
    const size_t ops = trace.find(ops_key, at);
    if (ops == std::string_view::npos || ops > line_end) return {{}, "the state line has no Operations list"};
    ExtractedPath out;
    // ['4+2=6', '6*2=12']
    const size_t close = trace.find(']', ops + ops_key.size());
    if (close == std::string_view::npos || close > line_end) return {{}, "unterminated Operations list"};
    std::string_view list = trace.substr(ops + ops_key.size(), close - ops - ops_key.size());
    for (size_t q = list.find('\''); q != std::string_view::npos; q = list.find('\'', q + 1)) {
        const size_t e = list.find('\'', q + 1);
        if (e == std::string_view::npos) return {{}, "unterminated operation in the Operations list"};
        auto op = parse_operation(list.substr(q + 1, e - q - 1));
        if (!op) return {{}, "unreadable operation \"" + std::string(list.substr(q + 1, e - q - 1)) + "\""};
        out.steps.push_back(*op);
        q = e;
    }
    // The goal is reached by the last operation explored at that node (earlier ones failed).
    const size_t pos = trace.rfind(kExploring, end);
    if (pos == std::string_view::npos || pos < line_end) return {{}, "no operation reaches the goal"};
    std::string error;
    auto op = read_step(trace, pos, error);
    if (!op) return {{}, error};
    out.steps.push_back(*op);
    return out;
}

std::vector<int> bracket_numbers(std::string_view text) {
    const size_t open = text.find('[');
    const size_t close = text.find(']');
    if (open == std::string_view::npos || close == std::string_view::npos || close < open) return {};
    std::vector<int> nums;
    int value = 0;
    bool in_number = false;
    for (size_t i = open + 1; i < close; ++i) {
        const char ch = text[i];
        if (ch >= '0' && ch <= '9') {
            value = value * 10 + (ch - '0');
            in_number = true;
        } else if (in_number) {
            nums.push_back(value);
            value = 0;
            in_number = false;
        }
    }
    if (in_number) nums.push_back(value);
    return nums;
}

std::vector<int> state_numbers(std::string_view text) {
    const size_t at = text.find("Current State: ");
    return at == std::string_view::npos ? std::vector<int>{} : bracket_numbers(text.substr(at));
}

std::string to_expression(const Problem & p, const std::vector<Operation> & steps) {
    // Each available value maps to the expressions that produce it (numbers may repeat).
    std::multimap<int, std::string> exprs;
    for (int n : p.nums) exprs.emplace(n, std::to_string(n));
    auto take = [&](int v) {
        auto it = exprs.find(v);
        if (it == exprs.end()) return std::to_string(v);
        std::string e = it->second;
        exprs.erase(it);
        return e;
    };
    std::string last;
    for (size_t i = 0; i < steps.size(); ++i) {
        const auto & s = steps[i];
        const std::string a = take(s.lhs), b = take(s.rhs);
        last = "(" + a + s.op + b + ")";
        exprs.emplace(s.result, last);
    }
    if (last.size() >= 2 && last.front() == '(') last = last.substr(1, last.size() - 2);
    return last;
}

}  // namespace forkjoin::countdown
