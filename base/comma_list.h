// Comma-separated lists on the command line and in requests ("native,sequential",
// "adaptive-width,early-stop", "512,1024").
//
// Contract:
// - split_comma_list() returns every item between commas, in order, empty items included ("a,,b"
//   gives "a", "", "b"; "" gives one empty item), without trimming: each caller decides whether an
//   empty item is an error (a sweep's numbers) or is skipped (policy names).
// - Pure; thread-safe.
#pragma once

#include <string>
#include <vector>

namespace forkjoin {

std::vector<std::string> split_comma_list(const std::string & list);

}  // namespace forkjoin
