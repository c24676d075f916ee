#include "strategies/countdown.h"

#include "dialects/apr.h"
#include "strategies/countdown_traces.h"
#include "tasks/countdown/re_exploration.h"
#include "tasks/countdown/search_trace.h"
#include "tasks/countdown/sub_problem.h"
#include "tasks/countdown/verifier.h"
#include "tasks/answer.h"

#include <algorithm>
#include <cstdio>
#include <condition_variable>
#include <map>
#include <mutex>

namespace forkjoin::strategies {

CountdownStrategy parse_countdown_strategy(const std::string & name) {
    if (name == "sequential") return CountdownStrategy::sequential;
    if (name == "native") return CountdownStrategy::native;
    if (name == "self-consistency") return CountdownStrategy::self_consistency;
    if (name == "best-of-n") return CountdownStrategy::best_of_n;
    throw Error(ErrorCode::invalid_argument,
                "unknown strategy '" + name + "' for countdown (sequential, native, self-consistency, best-of-n)");
}

const char * countdown_strategy_name(CountdownStrategy s) {
    switch (s) {
        case CountdownStrategy::sequential: return "sequential";
        case CountdownStrategy::native: return "native";
        case CountdownStrategy::self_consistency: return "self-consistency";
        case CountdownStrategy::best_of_n: return "best-of-n";
    }
    return "?";
}

namespace {
bool sampled(CountdownStrategy s) { return s == CountdownStrategy::self_consistency || s == CountdownStrategy::best_of_n; }
}  // namespace

llama::BackendOptions countdown_backend_options(const CountdownOptions & o) {
    llama::BackendOptions b;
    b.kv_layout = llama::KvLayout::per_sequence;
    // The split policy nests a search in each child, whose children need sequences of their own.
    const int children = std::max(0, o.limits.max_children);
    const bool nests = runtime::has_policy(o.controller, "split");
    const int native = 1 + children + (nests ? children * children : 0);
    const int per_request = sampled(o.strategy)                   ? std::max(1, o.samples) * (o.native_samples ? native : 1)
                            : o.strategy == CountdownStrategy::native ? native
                                                                       : 1;
    b.n_seq_max = static_cast<uint32_t>(std::clamp(o.concurrent_requests * per_request, 1, 256));
    const int64_t window = o.limits.max_context > 0 ? o.limits.max_context : int64_t{o.limits.thread_token_budget} + 512;
    b.n_ctx = static_cast<uint32_t>(int64_t{b.n_seq_max} * window);
    return b;
}

std::string countdown_distractors(const Vocabulary & vocabulary, int tokens) {
    if (tokens <= 0) return {};
    constexpr uint64_t kSeed = 20261202;  // problems no eval set draws (their seeds are 4242 and up)
    for (size_t chars = static_cast<size_t>(tokens) * 4;; chars *= 2) {
        const std::string traces = countdown::distractor_traces(kSeed, chars);
        const std::vector<Token> all = vocabulary.tokenize(traces);
        if (all.size() < static_cast<size_t>(tokens)) continue;
        std::string text = vocabulary.detokenize(std::span<const Token>(all.data(), static_cast<size_t>(tokens)));
        text.resize(text.rfind('\n') + 1);  // whole lines
        return text;
    }
}

runtime::TaskHooks countdown_hooks(const countdown::Problem & problem, countdown::PromptStyle style) {
    runtime::TaskHooks h;
    const int target = problem.target;
    h.child_score = [target](const dialects::ChildRequest & child) {
        const std::vector<int> nums = countdown::state_numbers(child.prompt);
        return nums.empty() ? 1e18 : countdown::mult_heuristic(nums, target);
    };
    h.settles = [problem](const runtime::ThreadRecord & child) -> std::optional<std::string> {
        // Under a nested search the child's text counts from its sub-problem: read back, it counts from the problem's.
        const auto path = countdown::extract_subsearch_solution(child.in_request_terms());
        if (!path.error.empty() || !countdown::verify(problem, path.steps).ok) return std::nullopt;
        return "thread " + std::to_string(child.id) + " reached the target: " + countdown::to_expression(problem, path.steps) + " verified";
    };
    h.split = [style](const dialects::ChildRequest & child) -> std::optional<runtime::NestedChild> {
        auto node = countdown::node_problem(child.prompt);
        // Two numbers leave one operation to try per pair: nothing to split.
        if (!node || node->problem.nums.size() < 3) return std::nullopt;
        runtime::NestedChild n;
        n.prompt = countdown::root_context(node->problem, /*parallel=*/true, style);
        n.read_back = [node = *node](const std::string & text) { return countdown::read_back(text, node); };
        return n;
    };
    // The probe restates the thread's own state: a root's is the problem's (distractor traces before
    // it hold other problems' states), a child's is the first in its context.
    const std::string root_state = [&] {
        const std::string prompt = countdown::root_prompt(problem);
        const size_t at = prompt.find("Current State: ");
        return prompt.substr(at, prompt.find('\n', at) - at);
    }();
    h.probe_text = [root_state](const std::string & context) {
        size_t at = context.find(root_state);
        if (at == std::string::npos) at = context.find("Current State: ");
        if (at == std::string::npos) return std::string();
        const size_t end = context.find('\n', at);
        std::string probe = "\n";  // (appending, not "\n" + substr: GCC 12 warns falsely on that form)
        probe += context.substr(at, end == std::string::npos ? std::string::npos : end - at);
        return probe;
    };
    // A root's clean context is its own root context, without what came before it (distractors).
    auto own_root = [problem, style](const std::string & context) -> std::optional<size_t> {
        for (const bool parallel : {false, true}) {
            const std::string own = countdown::root_context(problem, parallel, style);
            const size_t at = context.rfind(own);
            if (at != std::string::npos) return at;
        }
        return std::nullopt;
    };
    h.probe_reference = [own_root](const std::string & context) {
        const auto at = own_root(context);
        return at && *at > 0 ? context.substr(*at) : std::string();
    };
    // Compaction: the thread restarts from its current node's state line, as an APR child starts there
    // (a root still at node #0 restarts as its own root context), dropping what came before its own
    // start and the dead ends it explored since.
    h.compact = [own_root, style](const std::string & text) -> std::optional<std::string> {
        const size_t start = own_root(text).value_or(0);
        const size_t move = text.rfind("Moving to Node #");
        if (move == std::string::npos || move < start) return std::nullopt;
        const size_t state = text.find("\nCurrent State: ", move);
        if (state == std::string::npos) return std::nullopt;
        const size_t state_end = text.find('\n', state + 1);
        if (state_end == std::string::npos) return std::nullopt;  // the state line is not written yet
        const std::string node = text.substr(move, state_end - move);  // "Moving to Node #..\nCurrent State: .."
        std::string compacted = node.starts_with("Moving to Node #0\n") ? text.substr(start, move - start) : countdown::child_context_prefix(style);
        compacted += node;
        if (style != countdown::PromptStyle::apr) compacted += "\n";  // APR's contexts end before the state line's newline
        if (compacted.size() >= text.size()) return std::nullopt;  // nothing to drop
        return compacted;
    };
    return h;
}

CountdownProgram::CountdownProgram(countdown::Problem problem, CountdownOptions options)
    : problem_(std::move(problem)),
      options_(std::move(options)),
      confident_(options_.strategy == CountdownStrategy::self_consistency ? options_.controller : "default",
                 sampled(options_.strategy) ? options_.samples : 1) {
    if (sampled(options_.strategy) && options_.sampling.temperature == 0.0f) {
        throw Error(ErrorCode::invalid_argument,
                    std::string(countdown_strategy_name(options_.strategy)) + " needs sampling (temperature > 0)");
    }
    dialects::AprOptions apr;
    apr.child_prefix = countdown::child_context_prefix(options_.style);
    apr.state_line_newline = options_.style != countdown::PromptStyle::apr;
    dialect_ = dialects::make_apr_dialect(apr);
    prompt_ = options_.distractors + countdown::root_context(problem_, spawns(), options_.style);
    controller_ = runtime::make_controller(options_.controller, countdown_hooks(problem_, options_.style), options_.policies);
    expected_ = sampled(options_.strategy) ? std::max(1, options_.samples) : 1;
    validate_answer_ = options_.strategy == CountdownStrategy::native && runtime::has_policy(options_.controller, "validate");
    outcome_.problem = problem_;
}

bool CountdownProgram::spawns() const {
    return options_.strategy == CountdownStrategy::native || (sampled(options_.strategy) && options_.native_samples);
}

int64_t CountdownProgram::generated_so_far() const {
    int64_t spent = 0;
    for (const auto & s : samples_) spent += s.metrics.generated_tokens;
    return spent;
}

double CountdownProgram::elapsed_so_far() const {
    double spent = 0;  // the calls ran one after another
    for (const auto & s : samples_) spent += s.metrics.wall_s;
    return spent;
}

bool CountdownProgram::may_follow_up(const runtime::RequestResult & root, std::string & why_not) {
    // A root that ended by itself or at its context window (a follow-up has the same window); one
    // stopped by its token budget, the request's or its time would be given more than its limits
    // allowed.
    const bool at_window = root.limit && *root.limit == runtime::LimitKind::context_window;
    if ((root.limit && !at_window) || (!root.ok && !at_window)) {
        why_not = "it ended at a limit or failed: " + root.end_reason;
        return false;
    }
    // A root the monitor compacted is read from its node (claimed_path), and no longer holds the
    // expansion it searched: a follow-up of it would not be.
    if (!root.threads.empty() && root.threads[0].compactions > 0) {
        why_not = "it was compacted";
        return false;
    }
    return true;
}

std::optional<std::string> CountdownProgram::rewrite_prefix(const runtime::RequestResult & root, std::string & why_not) const {
    // What the root wrote after its last join is what is re-sampled.
    if (!may_follow_up(root, why_not)) return std::nullopt;
    const size_t end = root.text.rfind(kJoinEnd);
    const size_t join = end == std::string::npos ? std::string::npos : root.text.rfind(kJoinBegin, end);
    if (join == std::string::npos) {
        why_not = "no join to continue from";
        return std::nullopt;
    }
    // The join must hold the answer: a sub search's goal path that verifies from the root's numbers
    // (what the symbolic writer would continue with). Then the root failed to write it back.
    if (expert_continuation(std::string_view(root.text).substr(join, end - join), problem_).empty()) {
        why_not = "no sub search in its join reached the target by a path that verifies";
        return std::nullopt;
    }
    return root.text.substr(0, end + kJoinEnd.size());
}

runtime::RequestOptions CountdownProgram::followup_request(uint64_t salt) const {
    runtime::RequestOptions request;
    request.sampling = options_.sampling;
    request.sampling.seed = options_.sampling.seed * 1000003ull + salt;
    request.dialect = dialect_;
    // The request's limits, less what the job spent: total tokens and wall time. The thread's own
    // budget and window apply afresh (a rewrite's context, the prefix included, still within the window).
    runtime::Limits limits = options_.limits;
    limits.total_token_budget = options_.limits.total_token_budget - generated_so_far();
    if (options_.limits.timeout_s > 0) limits.timeout_s = options_.limits.timeout_s - elapsed_so_far();
    request.limits = limits;
    request.controller = controller_;
    return request;
}

void CountdownProgram::start_rewrite(runtime::ProgramContext & ctx) {
    const int round = outcome_.rewrites + 1;
    runtime::RequestOptions request = followup_request(104729ull * static_cast<uint64_t>(round));
    request.sampling.temperature = kRewriteTemperature;
    request.limits->max_depth = 0;  // the join is done: what is left is the path
    // The runtime's own controller: no policy of the request's applies to a thread that spawns
    // nothing, and the context-rot monitor must not compact away the join it is to read.
    request.controller = nullptr;
    char note[256];
    std::snprintf(note, sizeof note,
                  "validate: the root's answer failed the verifier while a sub search in its join reached the target; its "
                  "continuation after the join re-sampled at %.1f (round %d of %d, %lld tokens spent)",
                  static_cast<double>(kRewriteTemperature), round, runtime::Validate::kMaxRounds,
                  static_cast<long long>(generated_so_far()));
    notes_.push_back(note);
    ++outcome_.rewrites;
    ctx.call(rewrite_from_, request, -1, false);
}

std::optional<CountdownProgram::Reexploration> CountdownProgram::reexploration_prompt(const runtime::RequestResult & root, std::string & why_not) {
    if (!may_follow_up(root, why_not)) return std::nullopt;
    const auto states = countdown::expanded_states(own_text(root));
    explored_.insert(explored_.end(), states.begin(), states.end());
    // As wide as the root chose to expand (APR's beam), at least the 2 a spawn needs.
    const int width = std::max(2, static_cast<int>(states.size()));
    const std::string expansion = countdown::reexpansion(problem_, explored_, width);
    if (expansion.empty()) {
        why_not = "fewer than 2 first steps are left unexplored";
        return std::nullopt;
    }
    std::string prompt = options_.distractors + countdown::root_context(problem_, /*parallel=*/true, options_.style);
    if (options_.style == countdown::PromptStyle::apr) prompt += "\n";  // APR's root context ends before its state line's newline
    return Reexploration{prompt + expansion, countdown::expanded_states(expansion).size()};
}

void CountdownProgram::start_reexploration(runtime::ProgramContext & ctx, Reexploration next, const std::string & why) {
    const int round = outcome_.reexplorations + 1;
    // The request's own sampling and policies: the new root spawns, its children are validated as
    // the first root's were.
    const runtime::RequestOptions request = followup_request(7727ull * static_cast<uint64_t>(round));
    notes_.push_back("validate: the root's answer failed the verifier and " + why + "; the root re-explored from its state with the " +
                     std::to_string(next.steps) + " first steps no root of this job expanded, best by APR's heuristic, as its expansion (round " +
                     std::to_string(round) + " of " + std::to_string(runtime::Validate::kMaxRounds) + ", " +
                     std::to_string(generated_so_far()) + " tokens spent)");
    ++outcome_.reexplorations;
    ctx.call(next.prompt, request, -1, false);
}

countdown::ExtractedPath CountdownProgram::claimed_path(const runtime::RequestResult & sample) const {
    const std::string text = own_text(sample);
    countdown::ExtractedPath path = countdown::extract_solution(text);
    // A root the monitor compacted to a deeper node searches from there, as a sub search does: its
    // path starts with that node's operations.
    if (!path.error.empty() && !sample.threads.empty() && sample.threads[0].compactions > 0) {
        countdown::ExtractedPath from_node = countdown::extract_subsearch_solution(text);
        if (from_node.error.empty()) return from_node;
    }
    return path;
}

std::string CountdownProgram::own_text(const runtime::RequestResult & sample) const {
    // (A compacted root no longer starts with the distractors.)
    return sample.text.starts_with(options_.distractors) ? sample.text.substr(options_.distractors.size()) : sample.text;
}

void CountdownProgram::start(runtime::ProgramContext & ctx) {
    for (int i = 0; i < confident_.first() && i < expected_; ++i) start_sample(ctx, i);
}

void CountdownProgram::start_sample(runtime::ProgramContext & ctx, int i) {
    runtime::Limits limits = options_.limits;
    if (!spawns()) limits.max_depth = 0;
    runtime::RequestOptions request;
    request.sampling = options_.sampling;
    request.sampling.seed = options_.sampling.seed * 1000003ull + static_cast<uint64_t>(i) * 7919ull;
    request.dialect = dialect_;
    request.limits = limits;
    request.controller = controller_;
    // The first sample streams; the answer may come from another one (see conclude()).
    ctx.call(prompt_, request, -1, i == 0);
    ++started_;
}

void CountdownProgram::on_finished(runtime::ProgramContext & ctx, runtime::RequestId, const runtime::RequestResult & result) {
    samples_.push_back(result);
    if (validate_answer_) {
        // The root first, then one follow-up at a time until an answer verifies or the rounds, the
        // budget or the time are spent: a rewrite where a join holds the answer its root failed to
        // write, else a re-exploration of the nodes no root of this job expanded.
        const countdown::ExtractedPath path = claimed_path(result);
        if (path.error.empty() && countdown::verify(problem_, path.steps).ok) {
            conclude(ctx);
            return;
        }
        const bool time_left = options_.limits.timeout_s <= 0 || elapsed_so_far() < options_.limits.timeout_s;
        const bool room = generated_so_far() < options_.limits.total_token_budget && time_left;
        std::string why_not;
        if (rewrite_from_.empty()) {
            if (auto prefix = rewrite_prefix(result, why_not)) rewrite_from_ = std::move(*prefix);
        }
        if (!rewrite_from_.empty()) {
            if (outcome_.rewrites < runtime::Validate::kMaxRounds && room) {
                start_rewrite(ctx);
                return;
            }
        } else if (outcome_.reexplorations < runtime::Validate::kMaxRounds && room) {
            std::string why_not_again;
            if (auto next = reexploration_prompt(result, why_not_again)) {
                start_reexploration(ctx, std::move(*next), why_not);
                return;
            }
            if (why_not_again != why_not) why_not += "; not re-explored: " + why_not_again;
        }
        if (outcome_.rewrites + outcome_.reexplorations == 0 && !why_not.empty()) {
            notes_.push_back("validate: the root's answer failed the verifier; " + why_not);
        }
        conclude(ctx);
        return;
    }
    const int ended = static_cast<int>(samples_.size());
    if (ended == expected_) {
        conclude(ctx);
        return;
    }
    if (options_.strategy == CountdownStrategy::self_consistency && confident_.on()) {
        std::vector<std::string> answers;
        std::string why;
        if (confident_.settled(vote(answers), ended, why)) {
            conclude(ctx, why);
            return;
        }
    }
    // The warm-up (or the last wave) ended: the next wave starts.
    if (ended == started_) {
        for (int n = confident_.next(started_); n > 0; --n) start_sample(ctx, started_);
    }
}

tasks::Vote CountdownProgram::vote(std::vector<std::string> & answers) const {
    answers.clear();
    std::vector<double> weights;
    for (const auto & s : samples_) {
        const auto path = claimed_path(s);
        answers.push_back(path.error.empty() ? countdown::to_expression(problem_, path.steps) : std::string());
        weights.push_back(confident_.weight(s));
    }
    return tasks::weighted_vote(answers, weights);
}

void CountdownProgram::conclude(runtime::ProgramContext & ctx, std::string note) {
    struct Claim {
        size_t sample;
        countdown::ExtractedPath path;
    };
    std::vector<Claim> claims;
    std::string why_none;
    for (size_t i = 0; i < samples_.size(); ++i) {
        auto path = claimed_path(samples_[i]);
        if (path.error.empty()) {
            claims.push_back({i, std::move(path)});
        } else if (why_none.empty()) {
            why_none = samples_[i].ok ? path.error : samples_[i].end_reason + "; " + path.error;
        }
    }
    // Which sample answers: the only one; the verifier's pick (best-of-n); the majority (self-consistency).
    std::optional<size_t> chosen;
    if (options_.strategy == CountdownStrategy::best_of_n) {
        for (const auto & c : claims) {
            if (countdown::verify(problem_, c.path.steps).ok) {
                chosen = c.sample;
                break;
            }
        }
        if (!chosen && !claims.empty()) chosen = claims.front().sample;
    } else if (options_.strategy == CountdownStrategy::self_consistency) {
        // Weighed by confidence under the confidence policy, else one vote each; ties: the answer
        // that reached the winning weight first. The first sample that gave it answers.
        std::vector<std::string> answers;
        const tasks::Vote v = vote(answers);
        for (size_t k = 0; k < answers.size() && !v.answer.empty(); ++k) {
            if (answers[k] == v.answer) {
                chosen = k;
                break;
            }
        }
        outcome_.votes = v.count;
    } else if (!claims.empty()) {
        // The root's, unless validation followed it up (re-sampled its continuation or re-explored
        // it): then the first the verifier accepts (the follow-ups ran because the root's did not verify).
        chosen = claims.front().sample;
        for (const auto & c : claims) {
            if (followups() > 0 && countdown::verify(problem_, c.path.steps).ok) {
                chosen = c.sample;
                break;
            }
        }
    }
    runtime::JobResult job;
    job.strategy = countdown_strategy_name(options_.strategy);
    const size_t answering = chosen.value_or(samples_.size() - 1);
    outcome_.run = samples_[answering];
    if (!chosen) {
        outcome_.reason = why_none;
    } else {
        const auto & steps = std::find_if(claims.begin(), claims.end(), [&](const Claim & c) { return c.sample == *chosen; })->path.steps;
        const auto verdict = countdown::verify(problem_, steps);
        outcome_.solved = verdict.ok;
        outcome_.reason = verdict.reason;
        if (outcome_.solved) outcome_.expression = countdown::to_expression(problem_, steps);
    }
    job.ok = outcome_.solved;
    job.answer = outcome_.solved ? outcome_.expression : std::string();
    job.error = outcome_.solved ? std::string() : outcome_.reason;
    job.text = outcome_.run.text.starts_with(prompt_) ? outcome_.run.text.substr(prompt_.size()) : outcome_.run.text;
    job.finish_reason = runtime::finish_reason(outcome_.run);
    if (followups() > 0) {
        // The follow-ups run one after another, after the root: one chain.
        for (const auto & s : samples_) job.metrics.sequential_tokens += s.metrics.sequential_tokens;
    } else {
        for (const auto & s : samples_) job.metrics.sequential_tokens = std::max(job.metrics.sequential_tokens, s.metrics.sequential_tokens);
    }
    for (const auto & s : samples_) outcome_.stopped += ConfidentSampling::stopped(s);
    outcome_.not_needed = expected_ - (static_cast<int>(samples_.size()) - followups());
    job.notes = confident_.notes(outcome_.stopped, static_cast<int>(samples_.size()), note);
    job.notes.insert(job.notes.end(), notes_.begin(), notes_.end());
    ctx.finish(std::move(job));
}

std::vector<CountdownOutcome> run_countdown(runtime::Engine & engine, const std::vector<countdown::Problem> & problems,
                                            const CountdownOptions & o) {
    std::vector<CountdownOutcome> out(problems.size());
    std::vector<std::shared_ptr<CountdownProgram>> programs(problems.size());
    std::mutex mu;
    std::condition_variable cv;
    size_t in_flight = 0, done = 0;
    std::map<runtime::JobId, size_t> index;
    const size_t window = static_cast<size_t>(std::max(1, o.concurrent_requests));
    auto sink = [&](const runtime::JobEvent & e) {
        if (!e.done) return;
        std::lock_guard<std::mutex> lock(mu);
        const size_t i = index.at(e.job);
        out[i] = programs[i]->outcome();
        out[i].metrics = e.result->metrics;
        out[i].threads = e.result->threads;
        --in_flight;
        ++done;
        cv.notify_all();
    };
    for (size_t i = 0; i < problems.size(); ++i) {
        programs[i] = std::make_shared<CountdownProgram>(problems[i], o);
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return in_flight < window; });
        ++in_flight;
        runtime::JobOptions jo;
        jo.events = sink;
        index[engine.submit(programs[i], jo)] = i;
    }
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done == problems.size(); });
    return out;
}

std::vector<CountdownOutcome> run_countdown(Backend & backend, const std::vector<countdown::Problem> & problems,
                                            const CountdownOptions & o) {
    runtime::EngineOptions eo;
    eo.limits = o.limits;
    runtime::Engine engine(backend, eo);
    return run_countdown(engine, problems, o);
}

}  // namespace forkjoin::strategies
