// Countdown's parsers of untrusted text: a problem's JSON line (from a file or a request), and a
// model's search trace read back for its solution, then verified. They return results or throw
// forkjoin::Error; nothing else.
#include "base/error.h"
#include "tasks/countdown/problem.h"
#include "tasks/countdown/verifier.h"

#include <cstdint>
#include <string>

using namespace forkjoin;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    const std::string_view text(reinterpret_cast<const char *>(data), size);
    try {
        const auto p = countdown::parse_problem(text);
        (void)countdown::to_json_line(p);
    } catch (const Error &) {
    }
    const auto path = countdown::extract_subsearch_solution(text);
    if (path.error.empty()) {
        countdown::Problem p;
        p.nums = {1, 2, 3, 4};
        p.target = 10;
        (void)countdown::verify(p, path.steps);
    }
    return 0;
}
