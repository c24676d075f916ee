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

void add(runtime::Metrics & into, const runtime::Metrics & m) {
    into.total_tokens += m.total_tokens;
    into.generated_tokens += m.generated_tokens;
    into.max_context_tokens = std::max(into.max_context_tokens, m.max_context_tokens);
    into.threads += m.threads;
}

// Runs the prompts as concurrent requests; returns their results in order.
std::vector<runtime::RequestResult> run_all(Backend & backend, const std::vector<std::string> & prompts,
                                            const TextOptions & o, const std::string & phase) {
    const auto plain = dialects::make_plain_dialect();
    runtime::Runtime rt(backend, *plain, o.limits);
    std::vector<runtime::RequestId> ids;
    for (size_t i = 0; i < prompts.size(); ++i) {
        runtime::RequestOptions ro;
        ro.sampling = o.sampling;
        ro.sampling.seed = o.sampling.seed + 1000 * i;
        if (o.script) {
            ro.script = [&o, phase, i](const runtime::ThreadRecord & t) { return o.script(phase, static_cast<int>(i), t); };
        }
        ids.push_back(rt.submit(prompts[i], ro));
    }
    rt.run();
    std::vector<runtime::RequestResult> out;
    for (auto id : ids) out.push_back(rt.result(id));
    return out;
}

}  // namespace

PlanExecuteTemplates load_templates(const std::string & path) {
    std::ifstream in(path);
    if (!in) throw Error(ErrorCode::io, "cannot read templates '" + path + "'");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error & e) {
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
        else throw Error(ErrorCode::invalid_argument, path + ": unknown template \"" + it.key() + "\" (plan, work, result_item, summarize)");
    }
    return t;
}

std::vector<std::string> parse_outline(const std::string & text, int max_items) {
    std::vector<std::string> items;
    size_t start = 0;
    while (start < text.size() && static_cast<int>(items.size()) < max_items) {
        size_t nl = text.find('\n', start);
        if (nl == std::string::npos) nl = text.size();
        std::string line = text.substr(start, nl - start);
        start = nl + 1;
        size_t i = 0;
        while (i < line.size() && line[i] == ' ') ++i;
        const size_t digits = i;
        while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
        if (i == digits || i >= line.size() || (line[i] != '.' && line[i] != ')' && line[i] != ':')) continue;
        std::string item = line.substr(i + 1);
        while (!item.empty() && item.front() == ' ') item.erase(0, 1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\r')) item.pop_back();
        if (!item.empty()) items.push_back(item);
    }
    return items;
}

TextResult run_text(Backend & backend, const std::string & question, const TextOptions & o) {
    TextResult out;
    if (o.strategy == "sequential") {
        const auto r = run_all(backend, {question}, o, "sample").at(0);
        out.text = generation(r, question);
        out.answer = tasks::extract_answer(out.text);
        out.ok = r.ok;
        out.error = r.end_reason;
        out.metrics = r.metrics;
        return out;
    }
    if (o.strategy == "self-consistency") {
        if (o.sampling.temperature == 0.0f) throw Error(ErrorCode::invalid_argument, "self-consistency needs temperature > 0");
        const auto runs = run_all(backend, std::vector<std::string>(static_cast<size_t>(std::max(1, o.samples)), question), o, "sample");
        std::vector<std::string> answers;
        for (const auto & r : runs) {
            out.outputs.push_back(generation(r, question));
            answers.push_back(tasks::extract_answer(out.outputs.back()));
            add(out.metrics, r.metrics);
            out.metrics.sequential_tokens = std::max(out.metrics.sequential_tokens, r.metrics.sequential_tokens);
        }
        out.answer = tasks::majority_vote(answers);
        out.ok = !out.answer.empty();
        if (!out.ok) out.error = "no sample gave an answer";
        return out;
    }
    if (o.strategy != "plan-execute") {
        throw Error(ErrorCode::invalid_argument, "unknown strategy '" + o.strategy + "' (sequential, self-consistency, plan-execute)");
    }
    const auto & t = o.templates;
    const std::string plan_prompt = fill(t.plan, {{"question", question}, {"max_items", std::to_string(o.max_items)}});
    const auto plan = run_all(backend, {plan_prompt}, o, "plan").at(0);
    add(out.metrics, plan.metrics);
    // The plan template may end inside the first item ("1."): parse the outline with it.
    const std::string tail = plan_prompt.substr(plan_prompt.rfind('\n') + 1);
    out.items = parse_outline(tail + generation(plan, plan_prompt), o.max_items);
    if (out.items.empty()) {
        out.error = "the plan has no numbered items" + (plan.ok ? std::string() : " (" + plan.end_reason + ")");
        out.metrics.sequential_tokens = plan.metrics.sequential_tokens;
        return out;
    }
    std::string outline;
    for (size_t i = 0; i < out.items.size(); ++i) outline += std::to_string(i + 1) + ". " + out.items[i] + "\n";
    std::vector<std::string> prompts;
    for (size_t i = 0; i < out.items.size(); ++i) {
        prompts.push_back(fill(t.work, {{"question", question}, {"outline", outline}, {"index", std::to_string(i + 1)}, {"item", out.items[i]}}));
    }
    const auto workers = run_all(backend, prompts, o, "work");
    int64_t longest = 0;
    std::string results;
    for (size_t i = 0; i < workers.size(); ++i) {
        out.outputs.push_back(generation(workers[i], prompts[i]));
        add(out.metrics, workers[i].metrics);
        longest = std::max(longest, workers[i].metrics.sequential_tokens);
        std::string result = out.outputs.back();
        while (!result.empty() && (result.front() == ' ' || result.front() == '\n')) result.erase(0, 1);
        while (!result.empty() && (result.back() == ' ' || result.back() == '\n')) result.pop_back();
        results += fill(t.result_item, {{"index", std::to_string(i + 1)}, {"item", out.items[i]}, {"result", result}});
    }
    const std::string summary_prompt = fill(t.summarize, {{"question", question}, {"results", results}, {"outline", outline}});
    const auto summary = run_all(backend, {summary_prompt}, o, "summarize").at(0);
    add(out.metrics, summary.metrics);
    out.metrics.sequential_tokens = plan.metrics.sequential_tokens + longest + summary.metrics.sequential_tokens;
    out.text = generation(summary, summary_prompt);
    out.answer = tasks::extract_answer(out.text);
    if (out.answer.empty()) out.answer = out.text;
    out.ok = summary.ok;
    out.error = summary.end_reason;
    return out;
}

}  // namespace forkjoin::strategies
