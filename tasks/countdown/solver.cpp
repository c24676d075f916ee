#include "tasks/countdown/solver.h"

#include "base/error.h"

namespace forkjoin::countdown {
namespace {

bool search(const std::vector<int> & nums, int target, std::vector<Operation> & path) {
    if (nums.size() == 1) return nums[0] == target;
    return for_each_successor(nums, [&](const Operation & op, const std::vector<int> & next) {
        path.push_back(op);
        if (search(next, target, path)) return true;
        path.pop_back();
        return false;
    });
}

}  // namespace

std::optional<std::vector<Operation>> solve(const Problem & p) {
    std::vector<Operation> path;
    if (search(p.nums, p.target, path)) return path;
    return std::nullopt;
}

ProblemGenerator::ProblemGenerator(uint64_t seed, const GeneratorOptions & options)
    : rng_(seed * 0xD1B54A32D192ED03ull + 0x9E3779B97F4A7C15ull), options_(options) {
    if (options.count < 2 || options.count > 6 || options.min_number < 1 || options.min_number > options.max_number ||
        options.min_target > options.max_target || options.min_target < 0) {
        throw Error(ErrorCode::invalid_argument, "generator options out of range (2..6 numbers, 1 <= min <= max)");
    }
}

Problem ProblemGenerator::next() {
    Problem p;
    p.target = rng_.uniform_int(options_.min_target, options_.max_target);
    for (int attempt = 0;; ++attempt) {
        p.nums.clear();
        for (int i = 0; i < options_.count; ++i) p.nums.push_back(rng_.uniform_int(options_.min_number, options_.max_number));
        if (solve(p)) return p;
        if (attempt % 64 == 63) p.target = rng_.uniform_int(options_.min_target, options_.max_target);  // a hard target: move on
    }
}

}  // namespace forkjoin::countdown
