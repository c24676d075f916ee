#include "strategies/countdown.h"

#include "dialects/apr.h"
#include "tasks/countdown/verifier.h"

#include <deque>

namespace forkjoin::strategies {

CountdownStrategy parse_countdown_strategy(const std::string & name) {
    if (name == "sequential") return CountdownStrategy::sequential;
    if (name == "native") return CountdownStrategy::native;
    throw Error(ErrorCode::invalid_argument, "unknown strategy '" + name + "' for countdown (sequential, native)");
}

std::vector<CountdownOutcome> run_countdown(llama::LlamaBackend & backend, const std::vector<countdown::Problem> & problems,
                                            const CountdownOptions & o) {
    const bool parallel = o.strategy == CountdownStrategy::native;
    dialects::AprOptions apr;
    apr.child_prefix = countdown::child_context_prefix(o.style);
    const auto dialect = dialects::make_apr_dialect(apr);
    runtime::Limits limits = o.limits;
    if (!parallel) limits.max_depth = 0;
    runtime::Runtime rt(backend, *dialect, limits);
    runtime::RequestOptions request;
    request.sampling = o.sampling;

    std::vector<CountdownOutcome> out(problems.size());
    std::deque<std::pair<runtime::RequestId, size_t>> in_flight;
    size_t next = 0;
    auto collect = [&](runtime::RequestId id, size_t i) {
        CountdownOutcome & c = out[i];
        c.problem = problems[i];
        c.run = rt.result(id);
        const auto path = countdown::extract_solution(c.run.text);
        if (!path.error.empty()) {
            c.reason = c.run.ok ? path.error : c.run.end_reason + "; " + path.error;
            return;
        }
        const auto verdict = countdown::verify(problems[i], path.steps);
        c.solved = verdict.ok;
        c.reason = verdict.reason;
        if (c.solved) c.expression = countdown::to_expression(problems[i], path.steps);
    };
    while (next < problems.size() || !in_flight.empty()) {
        while (next < problems.size() && static_cast<int>(in_flight.size()) < o.concurrent_requests) {
            in_flight.emplace_back(rt.submit(countdown::root_context(problems[next], parallel, o.style), request), next);
            ++next;
        }
        rt.step();
        for (auto it = in_flight.begin(); it != in_flight.end();) {
            if (rt.finished(it->first)) {
                collect(it->first, it->second);
                it = in_flight.erase(it);
            } else {
                ++it;
            }
        }
    }
    return out;
}

}  // namespace forkjoin::strategies
