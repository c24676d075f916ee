// Answer extraction from free text, for strategies that merge samples by vote.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace forkjoin::tasks {

// The answer a text gives, normalised for comparison: the content of the last \boxed{...}; else
// what follows the last "answer:" / "answer is" (case-insensitive) up to the line's end; else the
// last number. Trailing periods and surrounding spaces are dropped. "" when there is none.
std::string extract_answer(std::string_view text);

// The most frequent non-empty answer (ties: the one that reached that count first); "" when none.
std::string majority_vote(const std::vector<std::string> & answers);

struct Vote {
    std::string answer;   // "" when no sample gave one
    double weight = 0;    // its total weight
    double share = 0;     // of the weight of every non-empty answer (0..1)
    int count = 0;        // samples that gave it
};
// The non-empty answer with the most weight; weights[i] (>= 0) is answers[i]'s, all 1 when weights is
// empty (then it is majority_vote). Ties: the answer that reached the winning weight first. Throws
// Error(invalid_argument) when the sizes differ.
Vote weighted_vote(const std::vector<std::string> & answers, const std::vector<double> & weights = {});

}  // namespace forkjoin::tasks
