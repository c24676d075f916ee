#include "strategies/countdown.h"

#include "dialects/apr.h"
#include "tasks/countdown/verifier.h"

#include <algorithm>
#include <deque>

namespace forkjoin::strategies {

CountdownStrategy parse_countdown_strategy(const std::string & name) {
    if (name == "sequential") return CountdownStrategy::sequential;
    if (name == "native") return CountdownStrategy::native;
    if (name == "self-consistency") return CountdownStrategy::self_consistency;
    throw Error(ErrorCode::invalid_argument,
                "unknown strategy '" + name + "' for countdown (sequential, native, self-consistency)");
}

llama::BackendOptions countdown_backend_options(const CountdownOptions & o) {
    llama::BackendOptions b;
    b.kv_layout = llama::KvLayout::per_sequence;
    const int per_request = o.strategy == CountdownStrategy::self_consistency ? std::max(1, o.samples)
                            : o.strategy == CountdownStrategy::native   ? 1 + std::max(0, o.limits.max_children)
                                                                         : 1;
    b.n_seq_max = static_cast<uint32_t>(std::clamp(o.concurrent_requests * per_request, 1, 256));
    const int64_t window = o.limits.max_context > 0 ? o.limits.max_context : int64_t{o.limits.thread_token_budget} + 512;
    b.n_ctx = static_cast<uint32_t>(int64_t{b.n_seq_max} * window);
    return b;
}

std::vector<CountdownOutcome> run_countdown(Backend & backend, const std::vector<countdown::Problem> & problems,
                                            const CountdownOptions & o) {
    const bool parallel = o.strategy == CountdownStrategy::native;
    dialects::AprOptions apr;
    apr.child_prefix = countdown::child_context_prefix(o.style);
    const auto dialect = dialects::make_apr_dialect(apr);
    runtime::Limits limits = o.limits;
    if (!parallel) limits.max_depth = 0;
    runtime::Runtime rt(backend, *dialect, limits);
    const int samples = o.strategy == CountdownStrategy::self_consistency ? std::max(1, o.samples) : 1;
    if (o.strategy == CountdownStrategy::self_consistency && o.sampling.temperature == 0.0f) {
        throw Error(ErrorCode::invalid_argument, "self-consistency needs sampling (temperature > 0)");
    }

    std::vector<CountdownOutcome> out(problems.size());
    std::vector<int> pending(problems.size(), samples);
    struct Job { runtime::RequestId id; size_t problem; };
    std::deque<Job> in_flight;
    size_t next_problem = 0;
    int next_sample = 0;
    auto collect = [&](const Job & job) {
        CountdownOutcome & c = out[job.problem];
        const runtime::RequestResult & run = rt.result(job.id);
        c.problem = problems[job.problem];
        c.metrics.total_tokens += run.metrics.total_tokens;
        c.metrics.generated_tokens += run.metrics.generated_tokens;
        c.metrics.sequential_tokens = std::max(c.metrics.sequential_tokens, run.metrics.sequential_tokens);
        c.metrics.max_context_tokens = std::max(c.metrics.max_context_tokens, run.metrics.max_context_tokens);
        c.metrics.wall_s = std::max(c.metrics.wall_s, run.metrics.wall_s);
        c.metrics.threads += run.metrics.threads;
        c.metrics.decode_steps = std::max(c.metrics.decode_steps, run.metrics.decode_steps);
        if (c.solved) return;
        c.run = run;
        const auto path = countdown::extract_solution(run.text);
        if (!path.error.empty()) {
            c.reason = run.ok ? path.error : run.end_reason + "; " + path.error;
            return;
        }
        const auto verdict = countdown::verify(problems[job.problem], path.steps);
        c.solved = verdict.ok;
        c.reason = verdict.reason;
        if (c.solved) c.expression = countdown::to_expression(problems[job.problem], path.steps);
    };
    while (next_problem < problems.size() || !in_flight.empty()) {
        while (next_problem < problems.size() && static_cast<int>(in_flight.size()) < o.concurrent_requests) {
            runtime::RequestOptions request;
            request.sampling = o.sampling;
            request.sampling.seed = o.sampling.seed * 1000003ull + static_cast<uint64_t>(next_sample) * 7919ull;
            in_flight.push_back({rt.submit(countdown::root_context(problems[next_problem], parallel, o.style), request),
                                 next_problem});
            if (++next_sample == samples) {
                next_sample = 0;
                ++next_problem;
            }
        }
        rt.step();
        for (auto it = in_flight.begin(); it != in_flight.end();) {
            if (rt.finished(it->id)) {
                collect(*it);
                rt.forget(it->id);
                it = in_flight.erase(it);
            } else {
                ++it;
            }
        }
    }
    return out;
}

}  // namespace forkjoin::strategies
