#include "tasks/countdown/arithmetic.h"

#include <charconv>
#include <cstdlib>

namespace forkjoin::countdown {

std::string Operation::to_string() const {
    std::string s = std::to_string(lhs);
    s.push_back(op);
    s.append(std::to_string(rhs)).push_back('=');
    return s.append(std::to_string(result));
}

std::vector<Operation> combine(int a, int b) {
    std::vector<Operation> out = {{a, '+', b, a + b}, {a, '*', b, a * b}};
    const int hi = a <= b ? b : a, lo = a <= b ? a : b;
    out.push_back({hi, '-', lo, hi - lo});
    if (lo != 0 && hi % lo == 0) out.push_back({hi, '/', lo, hi / lo});
    return out;
}

std::vector<Successor> successors(const std::vector<int> & nums) {
    std::vector<Successor> out;
    for_each_successor(nums, [&](const Operation & op, const std::vector<int> & next) {
        out.push_back({op, next});
        return false;
    });
    return out;
}

namespace {
void skip_spaces(std::string_view & s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
}
bool read_int(std::string_view & s, int & out) {
    skip_spaces(s);
    const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (ec != std::errc() || ptr == s.data()) return false;
    s.remove_prefix(static_cast<size_t>(ptr - s.data()));
    skip_spaces(s);
    return true;
}
}  // namespace

std::optional<Operation> parse_operation(std::string_view s) {
    Operation op;
    if (!read_int(s, op.lhs) || s.empty()) return std::nullopt;
    op.op = s.front();
    if (op.op != '+' && op.op != '-' && op.op != '*' && op.op != '/') return std::nullopt;
    s.remove_prefix(1);
    if (!read_int(s, op.rhs) || s.empty() || s.front() != '=') return std::nullopt;
    s.remove_prefix(1);
    if (!read_int(s, op.result) || !s.empty()) return std::nullopt;
    return op;
}

std::optional<std::string> arithmetic_error(const Operation & o) {
    const std::string text = o.to_string();
    long long expected = 0;
    switch (o.op) {
        case '+': expected = static_cast<long long>(o.lhs) + o.rhs; break;
        case '*': expected = static_cast<long long>(o.lhs) * o.rhs; break;
        case '-':
            if (o.lhs < o.rhs) return text + ": subtraction would be negative";
            expected = static_cast<long long>(o.lhs) - o.rhs;
            break;
        case '/':
            if (o.rhs == 0) return text + ": division by zero";
            if (o.lhs % o.rhs != 0) return text + ": division is not exact";
            expected = o.lhs / o.rhs;
            break;
        default: return text + ": unknown operator";
    }
    if (expected != o.result) {
        return text + ": wrong result (" + text.substr(0, text.find('=')) + " is " + std::to_string(expected) + ")";
    }
    return std::nullopt;
}

std::string format_numbers(const std::vector<int> & nums) {
    std::string s = "[";
    for (size_t i = 0; i < nums.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(nums[i]);
    }
    return s + "]";
}

std::string format_operations(const std::vector<Operation> & ops) {
    std::string s = "[";
    for (size_t i = 0; i < ops.size(); ++i) {
        if (i) s += ", ";
        s.append("'").append(ops[i].to_string()).append("'");
    }
    return s + "]";
}

}  // namespace forkjoin::countdown
