// Exhaustive Countdown solver and the seeded problem generator.
#pragma once

#include "base/random.h"
#include "tasks/countdown/arithmetic.h"
#include "tasks/countdown/problem.h"

#include <cstdint>
#include <optional>
#include <vector>

namespace forkjoin::countdown {

// A solution using every number exactly once (n - 1 steps), found by depth-first search over
// pairs in APR's order; nullopt if there is none.
std::optional<std::vector<Operation>> solve(const Problem & p);

struct GeneratorOptions {
    int count = 3;        // numbers per problem
    int min_number = 1;
    int max_number = 99;
    int min_target = 10;
    int max_target = 100;
};

// Deterministic for a seed on every platform (splitmix64, no <random> distributions). Draws a
// target, then numbers until the problem is solvable, like APR's generator.
class ProblemGenerator {
public:
    ProblemGenerator(uint64_t seed, const GeneratorOptions & options);
    Problem next();

private:
    SplitMix64 rng_;
    GeneratorOptions options_;
};

}  // namespace forkjoin::countdown
