#include "strategies/countdown_traces.h"

#include "base/error.h"
#include "tasks/countdown/search_trace.h"
#include "tasks/countdown/solver.h"
#include "tasks/countdown/sub_problem.h"
#include "tasks/countdown/trace_check.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <optional>

namespace forkjoin::strategies {
namespace {

constexpr std::string_view kGoal = " equal: Goal Reached";

bool starts_line(std::string_view text, size_t pos) { return pos == 0 || text[pos - 1] == '\n'; }

// The lines of `text` (each without its newline), in order.
std::vector<std::string_view> lines_of(std::string_view text) {
    std::vector<std::string_view> lines;
    for (size_t at = 0; at < text.size();) {
        const size_t end = text.find('\n', at);
        lines.push_back(text.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at));
        at = end == std::string_view::npos ? text.size() : end + 1;
    }
    return lines;
}

// The spawn block a join answers, in APR's form: one "<Start Sub Search i at level L> Moving to Node
// #id" line per "<Goal Reached in Sub Search i at level L at Node #id>" or "<No Solution in ...>" line
// of the join. Empty when a result line is not in that form.
std::string spawn_block_of(std::string_view join) {
    std::string block = "<Calling Sub Searches>\n";
    int children = 0;
    for (const std::string_view line : lines_of(join)) {
        for (std::string_view head : {std::string_view("<Goal Reached in Sub Search "), std::string_view("<No Solution in Sub Search ")}) {
            if (!line.starts_with(head)) continue;
            const size_t node = line.find(" at Node #");
            if (node == std::string_view::npos || !line.ends_with(">")) return {};
            // "i at level L" and "id".
            const std::string_view index_level = line.substr(head.size(), node - head.size());
            const std::string_view id = line.substr(node + 10, line.size() - 1 - node - 10);
            if (index_level.find(" at level ") == std::string_view::npos || id.empty()) return {};
            block += "<Start Sub Search " + std::string(index_level) + "> Moving to Node #" + std::string(id) + "\n";
            ++children;
        }
    }
    if (children == 0) return {};
    return block + "<End Calling Sub Searches>\n";
}

// The root's examples: one per context it wrote into. False when its text is not in the form
// (prompt, then searches separated by joins).
bool root_examples(const runtime::ThreadRecord & root, const std::string & head, bool parallel, TrainingTrace base,
                   std::vector<TrainingTrace> & out) {
    const std::string & text = root.text;
    if (!text.starts_with(head)) return false;
    size_t written_from = head.size();
    for (size_t join = text.find(kJoinBegin, written_from); join != std::string::npos; join = text.find(kJoinBegin, written_from)) {
        if (!parallel || !starts_line(text, join)) return false;
        const size_t end = text.find(kJoinEnd, join);
        if (end == std::string::npos) return false;
        const std::string block = spawn_block_of(std::string_view(text).substr(join, end - join));
        if (block.empty()) return false;
        TrainingTrace t = base;
        t.parts = {{text.substr(0, written_from), false}, {text.substr(written_from, join - written_from) + block, true}};
        out.push_back(std::move(t));
        written_from = end + kJoinEnd.size();
    }
    TrainingTrace last = base;
    last.parts = {{text.substr(0, written_from), false}, {text.substr(written_from), true}};
    if (last.parts[1].text.empty()) return false;
    out.push_back(std::move(last));
    return true;
}

// The root's first context after its first join, continued as the symbolic writer would from that
// join (expert_continuation), as an example; nullopt when the root has no join, no goal path in it
// verifies, or the continuation would not be a verified answer with every line right.
std::optional<TrainingTrace> corrected_join(const runtime::ThreadRecord & root, const std::string & head, TrainingTrace base) {
    const std::string & text = root.text;
    if (!text.starts_with(head)) return std::nullopt;
    const size_t join = text.find(kJoinBegin, head.size());
    if (join == std::string::npos || !starts_line(text, join)) return std::nullopt;
    const size_t end = text.find(kJoinEnd, join);
    if (end == std::string::npos) return std::nullopt;
    const std::string context = text.substr(0, end + kJoinEnd.size());
    const std::string continuation = expert_continuation(std::string_view(text).substr(join, end - join), base.problem);
    if (continuation.empty()) return std::nullopt;
    const std::string whole = context + continuation;
    const countdown::ExtractedPath answer = countdown::extract_solution(whole);
    if (!answer.error.empty() || !countdown::verify(base.problem, answer.steps).ok) return std::nullopt;
    // The model's own lines before the spawn may be wrong (not in the loss); the continuation adds none.
    if (countdown::check_trace_lines(whole, base.problem).wrong() != countdown::check_trace_lines(context, base.problem).wrong()) {
        return std::nullopt;
    }
    base.parts = {{context, false}, {continuation, true}};
    return base;
}

// Whether a finished child's verdict is right (see the header).
bool child_verdict_right(const countdown::Problem & root_problem, const std::string & own) {
    if (own.find(kGoal) != std::string::npos) {
        const countdown::ExtractedPath path = countdown::extract_subsearch_solution(own);
        return path.error.empty() && countdown::verify(root_problem, path.steps).ok;
    }
    const auto node = countdown::node_problem(own);
    return node && !countdown::solve(node->problem);
}

}  // namespace

std::string expert_continuation(std::string_view join, const countdown::Problem & problem) {
    const std::vector<std::string_view> lines = lines_of(join);
    const std::string target = std::to_string(problem.target);
    for (size_t i = 0; i < lines.size(); ++i) {
        if (!lines[i].starts_with("<Goal Reached in Sub Search ")) continue;
        std::string path;  // the child's path: its lines up to the next result line
        for (size_t k = i + 1; k < lines.size() && !lines[k].starts_with("<"); ++k) path += std::string(lines[k]) + "\n";
        if (!path.starts_with("Moving to Node #") || path.find(kGoal) == std::string::npos) continue;
        const countdown::ExtractedPath steps = countdown::extract_subsearch_solution(path);
        if (!steps.error.empty() || !countdown::verify(problem, steps.steps).ok) continue;
        // The child's node (a child of node #0: one operation) and its state, as its path states it.
        const std::vector<std::string_view> own = lines_of(path);
        const std::string_view move = own[0];
        const std::string id(move.substr(std::string_view("Moving to Node #").size()));
        const std::string state_head = "Current State: " + target + ":";
        if (own.size() < 2 || !own[1].starts_with(state_head) || !id.starts_with("0,") ||
            id.find(',', id.find(',') + 1) != std::string::npos) {
            continue;
        }
        const std::string_view state = own[1].substr(state_head.size());
        const size_t ops_at = state.find(", Operations: ['");
        if (ops_at == std::string_view::npos || !state.ends_with("']")) continue;
        const std::string numbers(state.substr(0, ops_at));
        const std::string op(state.substr(ops_at + 16, state.size() - 2 - ops_at - 16));
        if (op.find('\'') != std::string::npos) continue;  // more than one operation: not a child of the root
        return target + "," + target + std::string(kGoal) + "\n" + countdown::root_prompt(problem) + "Exploring Operation: " + op +
               ", Resulting Numbers: " + numbers + "\nGenerated Node #" + id + ": " + target + ":" + numbers + " Operation: " + op +
               "\n" + path;
    }
    return {};
}

std::string TrainingTrace::text() const {
    std::string all;
    for (const auto & p : parts) all += p.text;
    return all;
}

std::vector<TrainingTrace> training_traces(const CountdownOutcome & outcome, CountdownStrategy strategy, TraceYield & yield,
                                           bool correct_joins) {
    if (strategy != CountdownStrategy::sequential && strategy != CountdownStrategy::native) {
        throw Error(ErrorCode::invalid_argument,
                    std::string("training traces come from sequential or native runs, not ") + countdown_strategy_name(strategy));
    }
    const bool parallel = strategy == CountdownStrategy::native;
    std::vector<TrainingTrace> out;
    TrainingTrace base;
    base.problem = outcome.problem;
    base.mode = parallel ? "parallel" : "sequential";
    const runtime::ThreadRecord * root = nullptr;
    for (const auto & t : outcome.threads) {
        if (t.parent < 0) root = &t;
    }
    const std::string head = std::string(parallel ? countdown::kParallelTag : countdown::kSequentialTag) +
                             countdown::root_prompt(outcome.problem);
    bool root_kept = false;
    if (root && outcome.solved && root->state == runtime::ThreadState::done) {
        TrainingTrace r = base;
        r.thread = "root";
        std::vector<TrainingTrace> calls;
        if (!root_examples(*root, head, parallel, r, calls)) {
            ++yield.roots_unreadable;
        } else if (countdown::check_trace_lines(root->text, outcome.problem).wrong() > 0) {
            ++yield.roots_wrong_lines;
        } else {
            ++yield.roots_kept;
            root_kept = true;
            out.insert(out.end(), calls.begin(), calls.end());
        }
    } else {
        ++yield.roots_unsolved;
    }
    if (!parallel) return out;
    if (root && !root_kept && correct_joins) {
        TrainingTrace j = base;
        j.thread = "join";
        if (auto corrected = corrected_join(*root, head, j)) {
            out.push_back(std::move(*corrected));
            ++yield.joins_corrected;
        }
    }
    for (const auto & t : outcome.threads) {
        if (t.parent < 0) continue;
        // A child's context: the tag, its two first lines (node and state), then its search.
        const std::string_view tag = countdown::kSequentialTag;
        const size_t first = t.text.starts_with(tag) ? t.text.find('\n', tag.size()) : std::string::npos;
        const size_t second = first == std::string::npos ? first : t.text.find('\n', first + 1);
        if (t.state != runtime::ThreadState::done || t.nested || second == std::string::npos || second + 1 >= t.text.size()) {
            ++yield.children_unfinished;
            continue;
        }
        const std::string own = t.text.substr(tag.size());
        if (!child_verdict_right(outcome.problem, own)) {
            ++yield.children_wrong;
            continue;
        }
        if (countdown::check_trace_lines(t.text, outcome.problem).wrong() > 0) {
            ++yield.children_wrong_lines;
            continue;
        }
        TrainingTrace c = base;
        c.thread = "child";
        c.label = t.label;
        c.parts = {{t.text.substr(0, second + 1), false}, {t.text.substr(second + 1), true}};
        out.push_back(std::move(c));
        ++yield.children_kept;
    }
    return out;
}

std::string to_json_line(const TrainingTrace & trace) {
    nlohmann::json parts = nlohmann::json::array();
    for (const auto & p : trace.parts) parts.push_back({{"text", p.text}, {"loss", p.loss}});
    nlohmann::json j = {{"problem", {{"nums", trace.problem.nums}, {"target", trace.problem.target}}},
                        {"mode", trace.mode},
                        {"thread", trace.thread},
                        {"label", trace.label},
                        {"parts", parts}};
    return j.dump();
}

TrainingTrace parse_training_trace(std::string_view json_line, const std::string & where) {
    auto fail = [&](const std::string & what) { return Error(ErrorCode::invalid_argument, where + ": " + what); };
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(json_line);
    } catch (const nlohmann::json::exception & e) {
        throw fail(std::string("not JSON: ") + e.what());
    }
    if (!j.is_object()) throw fail("not a JSON object");
    TrainingTrace t;
    try {
        t.problem = countdown::parse_problem(j.at("problem").dump());
        t.mode = j.at("mode").get<std::string>();
        t.thread = j.at("thread").get<std::string>();
        t.label = j.value("label", "");
        for (const auto & p : j.at("parts")) t.parts.push_back({p.at("text").get<std::string>(), p.at("loss").get<bool>()});
    } catch (const nlohmann::json::exception & e) {
        throw fail(std::string("not a training trace (problem, mode, thread, parts of text and loss): ") + e.what());
    } catch (const Error & e) {
        throw fail(e.what());
    }
    if (t.mode != "sequential" && t.mode != "parallel") throw fail("mode is sequential or parallel, not '" + t.mode + "'");
    if (t.thread != "root" && t.thread != "child" && t.thread != "join") {
        throw fail("thread is root, child or join, not '" + t.thread + "'");
    }
    bool learns = false;
    for (const auto & p : t.parts) learns = learns || (p.loss && !p.text.empty());
    if (!learns) throw fail("no part is in the loss: nothing to learn from");
    return t;
}

std::vector<TrainingTrace> read_training_traces(const std::string & path) {
    std::ifstream in(path);
    if (!in) throw Error(ErrorCode::invalid_argument, "cannot read " + path);
    std::vector<TrainingTrace> out;
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        out.push_back(parse_training_trace(line, path + ":" + std::to_string(n)));
    }
    return out;
}

}  // namespace forkjoin::strategies
