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

}  // namespace forkjoin::tasks
