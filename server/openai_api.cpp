#include "server/openai_api.h"

#include "base/error.h"
#include "dialects/dialect.h"
#include "runtime/policies.h"
#include "runtime/thread.h"
#include "trace/thread_tree.h"

#include <cmath>
#include <set>

namespace forkjoin::server {

using nlohmann::json;

json error_body(const std::string & message, const std::string & type, const std::string & param) {
    return {{"error", {{"message", message}, {"type", type}, {"param", param.empty() ? json(nullptr) : json(param)}, {"code", nullptr}}}};
}

namespace {

ApiError bad(const std::string & param, const std::string & message) { return ApiError(400, "'" + param + "': " + message, param); }

const json * field(const json & o, const char * name) {
    auto it = o.find(name);
    return it == o.end() || it->is_null() ? nullptr : &*it;
}

std::string get_string(const json & o, const char * name, const std::string & param) {
    const json * v = field(o, name);
    if (!v->is_string()) throw bad(param, "must be a string");
    return v->get<std::string>();
}

bool get_bool(const json & v, const std::string & param) {
    if (!v.is_boolean()) throw bad(param, "must be true or false");
    return v.get<bool>();
}

double get_number(const json & v, const std::string & param, double lo, double hi) {
    if (!v.is_number()) throw bad(param, "must be a number");
    const double x = v.get<double>();
    if (!std::isfinite(x) || x < lo || x > hi) {
        throw bad(param, "must be between " + json(lo).dump() + " and " + json(hi).dump() + ", got " + v.dump());
    }
    return x;
}

int64_t get_int(const json & v, const std::string & param, int64_t lo, int64_t hi) {
    if (!v.is_number_integer()) throw bad(param, "must be an integer");
    const int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : v.get<int64_t>();
    if (x < lo || x > hi) throw bad(param, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " + v.dump());
    return x;
}

std::string message_text(const json & content, const std::string & param) {
    if (content.is_string()) return content.get<std::string>();
    if (!content.is_array()) throw bad(param, "must be a string or an array of text parts");
    std::string text;
    for (size_t i = 0; i < content.size(); ++i) {
        const json & part = content[i];
        const std::string p = param + "[" + std::to_string(i) + "]";
        if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") || !part["text"].is_string()) {
            throw bad(p, "only {\"type\": \"text\", \"text\": ...} parts are supported");
        }
        text += part["text"].get<std::string>();
    }
    return text;
}

// A string field whose value names something `make` knows (it throws forkjoin::Error otherwise).
template <typename Make>
std::string named(const json & v, const std::string & param, const char * what, Make make) {
    if (!v.is_string()) throw bad(param, what);
    try {
        make(v.get<std::string>());
    } catch (const Error & e) {
        throw bad(param, e.what());
    }
    return v.get<std::string>();
}

const std::set<std::string> kStrategies = {"sequential", "native", "self-consistency", "best-of-n", "plan-execute"};

void read_forkjoin(const json & f, ApiRequest & r) {
    if (!f.is_object()) throw bad("forkjoin", "must be an object");
    for (auto it = f.begin(); it != f.end(); ++it) {
        const std::string & k = it.key();
        const json & v = it.value();
        const std::string p = "forkjoin." + k;
        if (v.is_null()) continue;
        if (k == "strategy") {
            if (!v.is_string() || !kStrategies.count(v.get<std::string>())) {
                throw bad(p, "must be one of sequential, native, self-consistency, best-of-n, plan-execute; got " + v.dump());
            }
            r.strategy = v.get<std::string>();
        } else if (k == "dialect") {
            r.dialect = named(v, p, "must be a dialect's name", [](const std::string & n) { dialects::make_dialect(n); });
        } else if (k == "controller") {
            r.controller = named(v, p, "must be a string of policies, e.g. \"early-stop,adaptive-width\"",
                                 [](const std::string & n) { runtime::make_controller(n); });
        } else if (k == "task") {
            if (!v.is_string() || (v != "text" && v != "countdown")) throw bad(p, "must be \"text\" or \"countdown\", got " + v.dump());
            r.task = v.get<std::string>();
        } else if (k == "samples") {
            r.samples = static_cast<int>(get_int(v, p, 1, 64));
        } else if (k == "max_items") {
            r.max_items = static_cast<int>(get_int(v, p, 1, 32));
        } else if (k == "max_threads") {
            r.limits.max_threads_per_request = static_cast<int>(get_int(v, p, 1, 256));
        } else if (k == "max_children") {
            r.limits.max_children = static_cast<int>(get_int(v, p, 0, 64));
        } else if (k == "max_depth") {
            r.limits.max_depth = static_cast<int>(get_int(v, p, 0, 16));
        } else if (k == "max_tokens_per_thread") {
            r.limits.thread_token_budget = static_cast<int>(get_int(v, p, 1, 1 << 20));
        } else if (k == "max_total_tokens") {
            r.limits.total_token_budget = get_int(v, p, 1, int64_t{1} << 40);
        } else if (k == "max_context") {
            r.limits.max_context = static_cast<int>(get_int(v, p, 0, 1 << 24));
        } else if (k == "timeout") {
            r.timeout_s = get_number(v, p, 0, 86400);
        } else if (k == "include_text") {
            r.include_text = get_bool(v, p);
        } else {
            throw bad(p, "unknown field (strategy, dialect, controller, task, samples, max_items, max_threads, max_children, max_depth, "
                         "max_tokens_per_thread, max_total_tokens, max_context, timeout, include_text)");
        }
    }
}

}  // namespace

ApiRequest parse_request(const std::string & body, bool chat, const ApiDefaults & d) {
    json j;
    try {
        j = json::parse(body);
    } catch (const json::exception & e) {  // parse_error, and out_of_range for a number past a double's range
        throw ApiError(400, std::string("the body is not valid JSON: ") + e.what());
    }
    if (!j.is_object()) throw ApiError(400, "the body must be a JSON object");
    ApiRequest r;
    r.chat = chat;
    r.limits = d.limits;
    r.task = d.task;
    r.dialect = d.dialect;
    r.controller = d.controller;
    if (field(j, "model")) r.model = get_string(j, "model", "model");
    if (field(j, "user")) r.user = get_string(j, "user", "user");
    if (const json * n = field(j, "n"); n && get_int(*n, "n", 1, 128) != 1) throw bad("n", "only n = 1 is supported");
    if (const json * f = field(j, "forkjoin")) read_forkjoin(*f, r);

    // The prompt.
    if (chat) {
        const json * m = field(j, "messages");
        if (!m) throw bad("messages", "is required");
        if (!m->is_array() || m->empty()) throw bad("messages", "must be a non-empty array");
        std::vector<ChatMessage> messages;
        for (size_t i = 0; i < m->size(); ++i) {
            const json & msg = (*m)[i];
            const std::string p = "messages[" + std::to_string(i) + "]";
            if (!msg.is_object()) throw bad(p, "must be an object");
            if (!field(msg, "role") || !msg["role"].is_string()) throw bad(p + ".role", "must be a string");
            if (!field(msg, "content")) throw bad(p + ".content", "is required");
            messages.push_back({msg["role"].get<std::string>(), message_text(msg["content"], p + ".content")});
        }
        if (r.task == "countdown") {
            // The problem is the last user message.
            for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
                if (it->role == "user") {
                    r.prompt = it->content;
                    break;
                }
            }
        } else {
            r.prompt = d.render_chat(messages);
        }
    } else {
        const json * p = field(j, "prompt");
        if (!p) throw bad("prompt", "is required");
        if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) {
            r.prompt = (*p)[0].get<std::string>();
        } else if (p->is_string()) {
            r.prompt = p->get<std::string>();
        } else {
            throw bad("prompt", "must be a string (or an array of one string; token ids are not supported)");
        }
    }
    const std::string prompt_field = chat ? "messages" : "prompt";
    if (r.prompt.empty()) throw bad(prompt_field, "is empty");

    // Sampling and limits.
    r.temperature = r.task == "countdown" ? d.countdown_temperature : d.text_temperature;
    if (const json * v = field(j, "temperature")) r.temperature = static_cast<float>(get_number(*v, "temperature", 0, 2));
    if (const json * v = field(j, "top_p")) {
        r.top_p = static_cast<float>(get_number(*v, "top_p", 0, 1));
        if (r.top_p <= 0) throw bad("top_p", "must be greater than 0");
    }
    if (const json * v = field(j, "seed")) r.seed = static_cast<uint64_t>(get_int(*v, "seed", INT64_MIN, INT64_MAX));
    const char * max_name = chat && field(j, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (const json * v = field(j, max_name)) r.limits.thread_token_budget = static_cast<int>(get_int(*v, max_name, 1, 1 << 20));
    if (const json * v = field(j, "stop")) {
        if (v->is_string()) {
            r.stop = {v->get<std::string>()};
        } else if (v->is_array() && v->size() <= 4) {
            for (size_t i = 0; i < v->size(); ++i) {
                if (!(*v)[i].is_string()) throw bad("stop[" + std::to_string(i) + "]", "must be a string");
                r.stop.push_back((*v)[i].get<std::string>());
            }
        } else {
            throw bad("stop", "must be a string or an array of at most 4 strings");
        }
        for (const auto & s : r.stop) {
            if (s.empty()) throw bad("stop", "must not hold an empty string");
        }
    }
    if (const json * v = field(j, "stream")) r.stream = get_bool(*v, "stream");
    if (const json * v = field(j, "stream_options")) {
        if (!v->is_object()) throw bad("stream_options", "must be an object");
        if (!r.stream) throw bad("stream_options", "is only allowed when stream is true");
        if (const json * u = field(*v, "include_usage")) r.include_usage = get_bool(*u, "stream_options.include_usage");
    }

    // Strategy and task fit together.
    if (r.strategy.empty()) r.strategy = "native";
    if (r.task == "countdown" && r.strategy == "plan-execute") throw bad("forkjoin.strategy", "plan-execute is a text strategy (task text)");
    if (r.task == "text" && r.strategy == "best-of-n") throw bad("forkjoin.strategy", "best-of-n needs a verifier: countdown only");
    if ((r.strategy == "self-consistency" || r.strategy == "best-of-n") && r.temperature == 0.0f) {
        throw bad("temperature", r.strategy + " needs sampling: set temperature > 0");
    }
    if (r.limits.max_threads_per_request > d.limits.max_threads) r.limits.max_threads_per_request = d.limits.max_threads;

    if (r.task == "countdown") {
        try {
            r.problem = countdown::parse_problem(r.prompt);
        } catch (const Error & e) {
            throw bad(prompt_field, std::string("a countdown problem is {\"nums\": [...], \"target\": N}: ") + e.what());
        }
    } else if (d.count_tokens) {
        int64_t n = 0;
        try {
            n = d.count_tokens(r.prompt);
        } catch (const Error & e) {
            throw bad(prompt_field, e.what());
        }
        if (d.max_prompt_tokens > 0 && n >= d.max_prompt_tokens) {
            throw bad(prompt_field, "the prompt is " + std::to_string(n) + " tokens; one thread's context here holds " +
                                        std::to_string(d.max_prompt_tokens));
        }
        if (r.limits.max_context > 0 && n >= r.limits.max_context) {
            throw bad(prompt_field, "the prompt is " + std::to_string(n) + " tokens, past forkjoin.max_context " +
                                        std::to_string(r.limits.max_context));
        }
    }
    return r;
}

json usage_body(const runtime::JobResult & result) {
    const int64_t prompt = result.metrics.prompt_tokens, completion = result.metrics.generated_tokens;
    return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

json forkjoin_body(const ApiRequest & req, const runtime::JobResult & r) {
    const json tree = trace::thread_tree_json(r.threads, req.include_text);
    json out = {{"task", req.task},
                {"strategy", r.strategy.empty() ? req.strategy : r.strategy},
                {"controller", req.controller},
                {"ok", r.ok},
                {"answer", r.answer.empty() ? json(nullptr) : json(r.answer)},
                {"error", r.error.empty() ? json(nullptr) : json(r.error)},
                {"sequential_tokens", r.metrics.sequential_tokens},
                {"total_tokens", r.metrics.total_tokens},
                {"generated_tokens", r.metrics.generated_tokens},
                {"max_context_tokens", r.metrics.max_context_tokens},
                {"threads", static_cast<int64_t>(r.threads.size())},
                {"decode_steps", r.metrics.decode_steps},
                {"mean_batch", r.metrics.mean_batch},
                {"wall_s", r.metrics.wall_s},
                {"tree", tree}};
    if (req.task == "text" && req.strategy == "native") out["dialect"] = req.dialect;
    if (!r.notes.empty()) out["notes"] = r.notes;
    return out;
}

json completion_body(const ApiRequest & req, const runtime::JobResult & result, const std::string & id, const std::string & model,
                     int64_t created, const std::string & text, const std::string & finish_reason) {
    json choice = {{"index", 0}, {"finish_reason", finish_reason}, {"logprobs", nullptr}};
    if (req.chat) {
        choice["message"] = {{"role", "assistant"}, {"content", text}};
    } else {
        choice["text"] = text;
    }
    return {{"id", id},
            {"object", req.chat ? "chat.completion" : "text_completion"},
            {"created", created},
            {"model", model},
            {"choices", json::array({choice})},
            {"usage", usage_body(result)},
            {"forkjoin", forkjoin_body(req, result)}};
}

json chunk_body(const ApiRequest & req, const std::string & id, const std::string & model, int64_t created,
                const std::optional<std::string> & content, const std::optional<std::string> & finish_reason,
                const json & extension, bool role) {
    json choice = {{"index", 0}, {"finish_reason", finish_reason ? json(*finish_reason) : json(nullptr)}, {"logprobs", nullptr}};
    if (req.chat) {
        json delta = json::object();
        if (role) delta["role"] = "assistant";
        if (content) delta["content"] = *content;
        choice["delta"] = delta;
    } else {
        choice["text"] = content.value_or("");
    }
    json out = {{"id", id},
                {"object", req.chat ? "chat.completion.chunk" : "text_completion"},
                {"created", created},
                {"model", model},
                {"choices", json::array({choice})}};
    if (!extension.is_null()) out["forkjoin"] = extension;
    return out;
}

bool cut_at_stop(std::string & text, const std::vector<std::string> & stop) {
    size_t first = std::string::npos;
    for (const auto & s : stop) first = std::min(first, text.find(s));
    if (first == std::string::npos) return false;
    text.resize(first);
    return true;
}

}  // namespace forkjoin::server
