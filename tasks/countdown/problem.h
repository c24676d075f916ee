// A Countdown problem and its JSON Lines form.
//
// One problem a line: {"nums": [3, 7, 9, 5], "target": 24} (the field names of public Countdown
// datasets; other fields are ignored). Parsing errors name the line and what is wrong.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace forkjoin::countdown {

struct Problem {
    std::vector<int> nums;
    int target = 0;
    bool operator==(const Problem &) const = default;
};

// A problem as a set member: its numbers as a multiset (sorted), and its target. The order of the
// numbers does not make another problem, so held-out checks and training exclusions compare these.
using ProblemKey = std::pair<std::vector<int>, int>;
ProblemKey key_of(const Problem & p);

// Throws forkjoin::Error(invalid_argument) naming the problem with the line.
Problem parse_problem(std::string_view json_line);
std::string to_json_line(const Problem & p);

// Reads every non-blank line of a JSONL file; errors say "FILE:LINE: ...".
std::vector<Problem> load_problems(const std::string & path);
void save_problems(const std::string & path, const std::vector<Problem> & problems);

}  // namespace forkjoin::countdown
