// Countdown arithmetic in APR's conventions.
//
// A step combines two available numbers a and b into one: a+b, a*b, the larger minus the smaller
// (never negative), and the larger divided by the smaller when it divides exactly. Steps are
// written as APR writes them: "25-5=20", "12/4=3" (larger operand first for - and /).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace forkjoin::countdown {

struct Operation {
    int lhs = 0;
    char op = '+';  // one of + - * /
    int rhs = 0;
    int result = 0;

    std::string to_string() const;  // "lhs<op>rhs=result"
    bool operator==(const Operation &) const = default;
};

// The steps that combine a and b, in APR's order (combine_nums): +, *, then - and / with the
// larger operand first; / only when exact and the divisor is not 0.
std::vector<Operation> combine(int a, int b);

// Parses "25-5=20" (spaces around tokens allowed). Does not check the arithmetic.
std::optional<Operation> parse_operation(std::string_view text);

// Whether the step's arithmetic is right under the rules; if not, why.
std::optional<std::string> arithmetic_error(const Operation & op);

// Python-style list text as APR prints it: "[25, 5, 5]" and "['25-5=20', '5*5=25']".
std::string format_numbers(const std::vector<int> & nums);
std::string format_operations(const std::vector<Operation> & ops);

}  // namespace forkjoin::countdown
