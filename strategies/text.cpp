#include "strategies/text.h"

#include "dialects/dialect.h"
#include "tasks/answer.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <fstream>

namespace forkjoin::strategies {
namespace {

std::string fill(std::string t, const std::vector<std::pair<std::string, std::string>> & values) {
    for (const auto & [key, value] : values) {
        const std::string tag = "{" + key + "}";
        for (size_t at = t.find(tag); at != std::string::npos; at = t.find(tag, at + value.size())) t.replace(at, tag.size(), value);
    }
    return t;
}

std::string generation(const runtime::RequestResult & r, const std::string & prompt) {
    return r.text.size() >= prompt.size() ? r.text.substr(prompt.size()) : r.text;
}

}  // namespace

PlanExecuteTemplates load_templates(const std::string & path) {
    std::ifstream in(path);
    if (!in) throw Error(ErrorCode::io, "cannot read templates '" + path + "'");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception & e) {  // parse_error; out_of_range for a number like 1e999
        throw Error(ErrorCode::invalid_argument, path + ": not valid JSON: " + e.what());
    }
    PlanExecuteTemplates t;
    for (auto it = j.begin(); it != j.end(); ++it) {
        if (!it.value().is_string()) throw Error(ErrorCode::invalid_argument, path + ": \"" + it.key() + "\" must be a string");
        const std::string v = it.value().get<std::string>();
        if (it.key() == "plan") t.plan = v;
        else if (it.key() == "work") t.work = v;
        else if (it.key() == "result_item") t.result_item = v;
        else if (it.key() == "summarize") t.summarize = v;
        else if (it.key() == "validate") t.validate = v;
        else throw Error(ErrorCode::invalid_argument, path + ": unknown template \"" + it.key() + "\" (plan, work, result_item, summarize, validate)");
    }
    return t;
}

namespace {
const char * phase_name(int phase) {
    static const char * names[] = {"sample", "plan", "work", "summarize", "validate"};
    return names[phase];
}
std::string trimmed(std::string s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\n')) s.erase(0, 1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
    return s;
}
}  // namespace

TextProgram::TextProgram(std::string question, TextOptions options)
    : question_(std::move(question)),
      o_(std::move(options)),
      confident_(o_.strategy == "self-consistency" ? o_.controller : "default", o_.strategy == "self-consistency" ? o_.samples : 1) {
    if (o_.strategy != "sequential" && o_.strategy != "native" && o_.strategy != "self-consistency" && o_.strategy != "plan-execute") {
        throw Error(ErrorCode::invalid_argument, "unknown strategy '" + o_.strategy + "' (sequential, native, self-consistency, plan-execute)");
    }
    dialect_ = dialects::make_dialect(o_.strategy == "native" ? o_.dialect : "plain");
    controller_ = runtime::make_controller(o_.controller, {}, o_.policies);
    validating_ = o_.strategy == "plan-execute" && runtime::has_policy(o_.controller, "validate");
    if (o_.strategy == "self-consistency" && o_.sampling.temperature == 0.0f) {
        throw Error(ErrorCode::invalid_argument, "self-consistency needs temperature > 0");
    }
}

runtime::RequestId TextProgram::call(runtime::ProgramContext & ctx, const std::string & prompt, Phase phase, int index, int parent,
                                     bool answering, float temperature) {
    runtime::RequestOptions ro;
    ro.sampling = o_.sampling;
    ro.sampling.seed = o_.sampling.seed + 1000 * static_cast<uint64_t>(index);
    if (temperature >= 0) {
        ro.sampling.temperature = temperature;
        ro.sampling.seed = ro.sampling.seed * 1000003ull + 7919ull * static_cast<uint64_t>(validate_rounds_);  // a new seed per round
    }
    ro.limits = o_.limits;
    ro.dialect = dialect_;
    ro.controller = controller_;
    if (o_.strategy != "native") ro.limits->max_depth = 0;  // only the model's own markup spawns
    if (o_.script) {
        const auto & script = o_.script;
        const std::string name = phase_name(static_cast<int>(phase));
        ro.script = [script, name, index](const runtime::ThreadRecord & t) { return script(name, index, t); };
    }
    const runtime::RequestId id = ctx.call(prompt, ro, parent, answering);
    index_of_[id] = index;
    ++pending_;
    return id;
}

void TextProgram::start(runtime::ProgramContext & ctx) {
    if (o_.strategy == "plan-execute") {
        phase_ = Phase::plan;
        prompts_ = {fill(o_.templates.plan, {{"question", question_}, {"max_items", std::to_string(o_.max_items)}})};
    } else {
        phase_ = Phase::sample;
        prompts_.assign(static_cast<size_t>(confident_.samples()), question_);
    }
    results_.assign(prompts_.size(), {});
    // Self-consistency under the confidence policy starts its warm-up samples first.
    const size_t first = phase_ == Phase::sample ? static_cast<size_t>(confident_.first()) : prompts_.size();
    for (size_t i = 0; i < first; ++i) call(ctx, prompts_[i], phase_, static_cast<int>(i), -1, i == 0 && phase_ == Phase::sample);
    started_ = static_cast<int>(first);
}

void TextProgram::on_sample(runtime::ProgramContext & ctx, int index, const runtime::RequestResult & r) {
    results_[static_cast<size_t>(index)] = r;
    --pending_;
    ++ended_;
    std::vector<std::string> answers, outputs;
    std::vector<double> weights;
    for (const auto & x : results_) {
        outputs.push_back(x.finished ? generation(x, question_) : std::string());
        answers.push_back(x.finished ? tasks::extract_answer(outputs.back()) : std::string());
        weights.push_back(x.finished ? confident_.weight(x) : 0.0);
    }
    const tasks::Vote vote = tasks::weighted_vote(answers, weights);
    std::string why;
    const bool settled = confident_.settled(vote, ended_, why);
    if (!settled && pending_ > 0) return;
    if (!settled && started_ < confident_.samples()) {
        // The warm-up (or the last wave) ended: the next wave starts.
        for (int n = confident_.next(started_); n > 0; --n, ++started_) {
            call(ctx, prompts_[static_cast<size_t>(started_)], phase_, started_, -1, false);
        }
        return;
    }
    int64_t longest = 0;
    int stopped = 0;
    for (const auto & x : results_) {
        longest = std::max(longest, x.metrics.sequential_tokens);
        stopped += ConfidentSampling::stopped(x);
    }
    sequential_ += longest;
    for (auto & note : confident_.notes(stopped, ended_, why)) out_.notes.push_back(std::move(note));
    out_.outputs = outputs;
    out_.answer = vote.answer;
    out_.ok = !out_.answer.empty();
    if (!out_.ok) out_.error = "no sample gave an answer";
    for (size_t i = 0; i < answers.size(); ++i) {
        if (!vote.answer.empty() && answers[i] == vote.answer) {
            out_.text = outputs[i];
            break;
        }
    }
    finish(ctx);
}

void TextProgram::on_finished(runtime::ProgramContext & ctx, runtime::RequestId id, const runtime::RequestResult & r) {
    if (phase_ == Phase::work) {
        --pending_;
        on_worker(ctx, index_of_.at(id), r);
        return;
    }
    if (phase_ == Phase::validate) {
        --pending_;
        on_verdict(ctx, r);
        return;
    }
    if (phase_ == Phase::sample && o_.strategy == "self-consistency") {
        on_sample(ctx, index_of_.at(id), r);
        return;
    }
    results_[static_cast<size_t>(index_of_.at(id))] = r;
    if (phase_ == Phase::plan) planner_ = ctx.root_of(id);
    if (--pending_ > 0) return;
    int64_t longest = 0;
    for (const auto & x : results_) longest = std::max(longest, x.metrics.sequential_tokens);
    sequential_ += longest;
    if (phase_ == Phase::plan) {
        const auto & plan = results_[0];
        // The plan template may end inside the first item ("1."): parse the outline with it.
        const std::string & plan_prompt = prompts_[0];
        const std::string tail = plan_prompt.substr(plan_prompt.rfind('\n') + 1);
        out_.items = parse_outline(tail + generation(plan, plan_prompt), o_.max_items);
        if (out_.items.empty()) {
            out_.error = "the plan has no numbered items" + (plan.ok ? std::string() : " (" + plan.end_reason + ")");
            finish(ctx);
            return;
        }
        graph_ = make_plan_graph(out_.items);
        out_.items = graph_.items;
        if (!graph_.error.empty()) out_.notes.push_back(graph_.error + ": the items run in order");
        std::string outline;
        for (size_t i = 0; i < out_.items.size(); ++i) outline += std::to_string(i + 1) + ". " + out_.items[i] + "\n";
        outline_ = outline;
        phase_ = Phase::work;
        const size_t n = out_.items.size();
        item_state_.assign(n, ItemState::waiting);
        merged_into_.assign(n, -1);
        requeued_.assign(n, false);
        item_prompt_.assign(n, "");
        item_tokens_.assign(n, 0);
        item_chain_.assign(n, 0);
        redone_.assign(n, 0);
        out_.outputs.assign(n, "");
        start_ready(ctx);
        return;
    }
    if (phase_ == Phase::summarize) {
        const auto & summary = results_[0];
        out_.text = generation(summary, prompts_[0]);
        out_.answer = tasks::extract_answer(out_.text);
        if (out_.answer.empty()) out_.answer = out_.text;
        out_.ok = summary.ok;
        out_.error = summary.end_reason;
        finish_reason_ = runtime::finish_reason(summary);
        finish(ctx);
        return;
    }
    // One sample (sequential, native); self-consistency ends in on_sample.
    out_.text = generation(results_[0], question_);
    out_.answer = tasks::extract_answer(out_.text);
    out_.ok = results_[0].ok;
    out_.error = results_[0].end_reason;
    finish_reason_ = runtime::finish_reason(results_[0]);
    finish(ctx);
}

void TextProgram::start_ready(runtime::ProgramContext & ctx) {
    const auto & t = o_.templates;
    auto done = [&](int k) {
        while (item_state_[static_cast<size_t>(k)] == ItemState::merged) k = merged_into_[static_cast<size_t>(k)];
        return item_state_[static_cast<size_t>(k)] == ItemState::done;
    };
    for (size_t i = 0; i < item_state_.size(); ++i) {
        if (item_state_[i] != ItemState::waiting) continue;
        bool ready = true;
        for (int k : graph_.needs[i]) ready &= done(k);
        if (!ready) continue;
        std::string needed;
        for (int k : graph_.needs[i]) {
            int at = k;
            while (item_state_[static_cast<size_t>(at)] == ItemState::merged) at = merged_into_[static_cast<size_t>(at)];
            needed += fill(t.result_item, {{"index", std::to_string(k + 1)}, {"item", out_.items[static_cast<size_t>(k)]},
                                           {"result", trimmed(out_.outputs[static_cast<size_t>(at)])}});
        }
        if (!needed.empty()) needed = "Results it needs:\n" + needed;
        item_prompt_[i] = fill(t.work, {{"question", question_}, {"outline", outline_}, {"needed", needed},
                                        {"index", std::to_string(i + 1)}, {"item", out_.items[i]}});
        item_state_[i] = ItemState::running;
        // Re-run by the validator: sampled, with a new seed.
        call(ctx, item_prompt_[i], Phase::work, static_cast<int>(i), planner_, false, redone_[i] > 0 ? 0.7f : -1.0f);
    }
    bool all = true;
    for (auto st : item_state_) all &= st == ItemState::done || st == ItemState::merged;
    if (all && pending_ == 0) {
        if (validating_ && validate_rounds_ < kMaxValidateRounds) {
            validate(ctx);
        } else {
            summarize(ctx);
        }
    }
}

std::string TextProgram::results_text() {
    std::string results;
    for (size_t i = 0; i < item_state_.size(); ++i) {
        size_t at = i;
        while (item_state_[at] == ItemState::merged) at = static_cast<size_t>(merged_into_[at]);
        const std::string result = at != i ? "(merged into sub-task " + std::to_string(at + 1) + ") " + trimmed(out_.outputs[at]) : trimmed(out_.outputs[i]);
        results += fill(o_.templates.result_item, {{"index", std::to_string(i + 1)}, {"item", out_.items[i]}, {"result", result}});
    }
    return results;
}

void TextProgram::validate(runtime::ProgramContext & ctx) {
    ++validate_rounds_;
    phase_ = Phase::validate;
    prompts_ = {fill(o_.templates.validate, {{"question", question_}, {"results", results_text()}, {"outline", outline_}})};
    call(ctx, prompts_[0], phase_, 0, planner_, false);
}

void TextProgram::on_verdict(runtime::ProgramContext & ctx, const runtime::RequestResult & r) {
    const std::string verdict = generation(r, prompts_[0]);
    sequential_ += r.metrics.sequential_tokens;  // the validator runs after every worker, before the summary
    const Verdict v = read_verdict(verdict, static_cast<int>(item_state_.size()));
    const std::string round = " (round " + std::to_string(validate_rounds_) + " of " + std::to_string(kMaxValidateRounds) + ")";
    std::string unknown;
    for (int k : v.unknown) unknown += (unknown.empty() ? "" : ", ") + std::to_string(k);
    if (!unknown.empty()) out_.notes.push_back("validator named items the plan does not have: " + unknown + round);
    // Merged items are redone through the item they were merged into.
    std::vector<int> redo;
    for (int k : v.redo) {
        while (item_state_[static_cast<size_t>(k)] == ItemState::merged) k = merged_into_[static_cast<size_t>(k)];
        if (std::find(redo.begin(), redo.end(), k) == redo.end()) redo.push_back(k);
    }
    phase_ = Phase::work;
    if (!v.read || redo.empty()) {
        out_.notes.push_back(v.read ? "validator: the results hold" + round
                                    : "validator: no verdict (neither OK nor REDO:): " + trimmed(verdict.substr(0, 80)) + round);
        summarize(ctx);
        return;
    }
    std::string names;
    for (int k : redo) names += (names.empty() ? "" : ", ") + std::to_string(k + 1);
    out_.notes.push_back("validator: redo item" + std::string(redo.size() > 1 ? "s " : " ") + names + round + ", sampled at 0.7 with new seeds");
    for (int k : redo) {
        const size_t i = static_cast<size_t>(k);
        item_state_[i] = ItemState::waiting;
        redone_[i] = validate_rounds_;
    }
    start_ready(ctx);
}

void TextProgram::on_worker(runtime::ProgramContext & ctx, int item, const runtime::RequestResult & r) {
    const size_t i = static_cast<size_t>(item);
    const std::string output = generation(r, item_prompt_[i]);
    item_tokens_[i] += r.metrics.sequential_tokens;
    const auto k = needs_marker(output);
    const int n = static_cast<int>(item_state_.size());
    if (k && *k >= 0 && *k < n && *k != item && !requeued_[i] && item_state_[static_cast<size_t>(*k)] != ItemState::merged) {
        requeued_[i] = true;
        const size_t needed = static_cast<size_t>(*k);
        if (item_state_[needed] == ItemState::waiting) {
            // Item k has not started: it takes this item on (merge).
            out_.items[needed] += "; then: " + out_.items[i];
            item_state_[i] = ItemState::merged;
            merged_into_[i] = *k;
            out_.notes.push_back("item " + std::to_string(item + 1) + " needs item " + std::to_string(*k + 1) +
                                 ", which had not started: merged into it");
        } else {
            // Run it again once item k is done, with k's result in its context (reorder).
            graph_.needs[i].push_back(*k);
            item_state_[i] = ItemState::waiting;
            out_.notes.push_back("item " + std::to_string(item + 1) + " needs item " + std::to_string(*k + 1) +
                                 "'s result: re-queued after it");
        }
    } else {
        item_state_[i] = ItemState::done;
        out_.outputs[i] = output;
        int64_t before = 0;
        for (int d : graph_.needs[i]) before = std::max(before, item_chain_[static_cast<size_t>(d)]);
        item_chain_[i] = before + item_tokens_[i];
    }
    start_ready(ctx);
}

void TextProgram::summarize(runtime::ProgramContext & ctx) {
    const auto & t = o_.templates;
    const std::string results = results_text();
    int64_t longest = 0;
    for (size_t i = 0; i < item_state_.size(); ++i) {
        size_t at = i;
        while (item_state_[at] == ItemState::merged) at = static_cast<size_t>(merged_into_[at]);
        if (at != i) out_.outputs[i] = "(merged into sub-task " + std::to_string(at + 1) + ") " + trimmed(out_.outputs[at]);
        longest = std::max(longest, item_chain_[at]);
    }
    sequential_ += longest;
    phase_ = Phase::summarize;
    prompts_ = {fill(t.summarize, {{"question", question_}, {"results", results}, {"outline", outline_}})};
    results_.assign(1, {});
    call(ctx, prompts_[0], phase_, 0, planner_, true);
}

void TextProgram::finish(runtime::ProgramContext & ctx) {
    out_.metrics.sequential_tokens = sequential_;
    runtime::JobResult job;
    job.ok = out_.ok;
    job.text = out_.text;
    job.answer = out_.answer;
    job.error = out_.error;
    job.strategy = o_.strategy;
    job.finish_reason = finish_reason_;
    job.metrics.sequential_tokens = sequential_;
    job.notes = out_.notes;
    ctx.finish(std::move(job));
}

TextResult run_text(runtime::Engine & engine, const std::string & question, const TextOptions & options) {
    auto program = std::make_shared<TextProgram>(question, options);
    const runtime::JobResult job = engine.run(program);
    TextResult out = program->result();
    out.metrics = job.metrics;
    if (!job.ok && out.error.empty()) out.error = job.error;
    return out;
}

TextResult run_text(Backend & backend, const std::string & question, const TextOptions & o) {
    runtime::EngineOptions eo;
    eo.limits = o.limits;
    runtime::Engine engine(backend, eo);
    return run_text(engine, question, o);
}

}  // namespace forkjoin::strategies
