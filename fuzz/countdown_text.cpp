// Countdown's parsers of untrusted text: a problem's JSON line (from a file or a request), and a
// model's search trace read back for its solution, then verified, and checked line by line (the
// failure analysis and the training-data filter read every thread the model writes). They return
// results or throw forkjoin::Error; nothing else.
#include "base/error.h"
#include "tasks/countdown/problem.h"
#include "tasks/countdown/trace_check.h"
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
    const countdown::LineCheck check = countdown::check_trace_lines(text, countdown::Problem{{1, 2, 3, 4}, 10});
    for (const auto & [kind, n] : check.by_kind) {
        if (n.wrong < 0 || n.wrong > n.lines) __builtin_trap();  // a kind never has more wrong lines than lines
    }
    if (check.wrong() > 0 && check.first_error.empty()) __builtin_trap();  // a wrong line is always named
    return 0;
}
