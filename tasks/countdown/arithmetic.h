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

// One step from a state and the numbers it leaves, as APR writes them: the other numbers in their
// order, the result last.
struct Successor {
    Operation op;
    std::vector<int> nums;
};

// Calls visit(op, next) for every step from `nums`, in APR's generation order: each pair i < j, each
// of combine's steps; `next` holds the numbers it leaves (valid during the call only). Stops at the
// first visit that returns true, and returns whether one did. The one enumeration the solver, the
// trace generator and re-exploration share, so their orders agree.
template <class Visit>
bool for_each_successor(const std::vector<int> & nums, Visit && visit) {
    std::vector<int> next;
    next.reserve(nums.size());
    for (size_t i = 0; i < nums.size(); ++i) {
        for (size_t j = i + 1; j < nums.size(); ++j) {
            for (const Operation & op : combine(nums[i], nums[j])) {
                next.clear();
                for (size_t k = 0; k < nums.size(); ++k) {
                    if (k != i && k != j) next.push_back(nums[k]);
                }
                next.push_back(op.result);
                if (visit(op, static_cast<const std::vector<int> &>(next))) return true;
            }
        }
    }
    return false;
}

// Every step from `nums` with the numbers it leaves, in for_each_successor's order.
std::vector<Successor> successors(const std::vector<int> & nums);

// Parses "25-5=20" (spaces around tokens allowed). Does not check the arithmetic.
std::optional<Operation> parse_operation(std::string_view text);

// Whether the step's arithmetic is right under the rules; if not, why.
std::optional<std::string> arithmetic_error(const Operation & op);

// Python-style list text as APR prints it: "[25, 5, 5]" and "['25-5=20', '5*5=25']".
std::string format_numbers(const std::vector<int> & nums);
std::string format_operations(const std::vector<Operation> & ops);

}  // namespace forkjoin::countdown
