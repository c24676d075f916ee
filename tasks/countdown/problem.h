// A Countdown problem and its JSON Lines form.
//
// One problem a line: {"nums": [3, 7, 9, 5], "target": 24} (the field names of public Countdown
// datasets; other fields are ignored). Parsing errors name the line and what is wrong.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace forkjoin::countdown {

struct Problem {
    std::vector<int> nums;
    int target = 0;
    bool operator==(const Problem &) const = default;
};

// Throws forkjoin::Error(invalid_argument) naming the problem with the line.
Problem parse_problem(std::string_view json_line);
std::string to_json_line(const Problem & p);

// Reads every non-blank line of a JSONL file; errors say "FILE:LINE: ...".
std::vector<Problem> load_problems(const std::string & path);
void save_problems(const std::string & path, const std::vector<Problem> & problems);

}  // namespace forkjoin::countdown
