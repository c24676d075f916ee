#include "backends/remote/completions.h"

#include "base/error.h"

#include <nlohmann/json.hpp>

#include <limits>

namespace forkjoin::remote {

using nlohmann::json;

std::string completion_request_json(const CompletionRequest & r) {
    json body = {
        {"model", r.model},
        {"prompt", r.prompt},
        {"max_tokens", r.max_tokens},
        {"temperature", r.sampling.temperature},
        {"top_p", r.sampling.top_p},
        {"seed", r.sampling.seed},
        {"stream", true},
        {"stream_options", {{"include_usage", true}}},
        {"logprobs", 1},
        {"return_tokens_as_token_ids", true},
        {"return_token_ids", true},
    };
    // Always sent: a server's own defaults would otherwise apply (llama-server's top_k 40, min_p 0.05).
    // -1 is "off" for all three (llama.cpp: k <= 0; vLLM and SGLang: -1).
    body["top_k"] = r.sampling.top_k > 0 ? r.sampling.top_k : -1;
    body["min_p"] = r.sampling.min_p;
    if (r.sampling.ignore_eos) body["ignore_eos"] = true;
    return body.dump();
}

namespace {

[[noreturn]] void malformed(const std::string & what, std::string_view data) {
    std::string shown(data.substr(0, 200));
    throw Error(ErrorCode::invalid_argument, "malformed completion chunk (" + what + "): " + shown);
}

// "token_id:123" (vLLM's return_tokens_as_token_ids) -> 123.
std::optional<Token> token_id_string(const json & j) {
    if (!j.is_string()) return std::nullopt;
    const std::string & s = j.get_ref<const std::string &>();
    if (s.rfind("token_id:", 0) != 0) return std::nullopt;
    try {
        size_t used = 0;
        const long v = std::stol(s.substr(9), &used);
        if (used != s.size() - 9) return std::nullopt;
        return static_cast<Token>(v);
    } catch (const std::exception &) {
        return std::nullopt;
    }
}

void read_logprobs(const json & lp, CompletionChunk & c, std::string_view data) {
    if (lp.is_null()) return;
    if (!lp.is_object()) malformed("logprobs is not an object", data);
    if (auto it = lp.find("content"); it != lp.end() && it->is_array()) {  // llama-server
        for (const auto & e : *it) {
            if (!e.is_object() || !e.contains("id") || !e["id"].is_number_integer()) malformed("logprobs.content without ids", data);
            c.tokens.push_back(e["id"].get<Token>());
            const auto l = e.find("logprob");
            c.logprobs.push_back(l != e.end() && l->is_number() ? l->get<float>() : std::numeric_limits<float>::quiet_NaN());
        }
        c.ids_known = !c.tokens.empty();
        return;
    }
    if (auto it = lp.find("tokens"); it != lp.end() && it->is_array()) {  // vLLM, SGLang (legacy completions shape)
        std::vector<Token> ids;
        for (const auto & t : *it) {
            auto id = token_id_string(t);
            if (!id) return;  // token strings, not ids: the caller tokenizes the text
            ids.push_back(*id);
        }
        c.tokens = std::move(ids);
        if (auto l = lp.find("token_logprobs"); l != lp.end() && l->is_array() && l->size() == c.tokens.size()) {
            for (const auto & v : *l) c.logprobs.push_back(v.is_number() ? v.get<float>() : std::numeric_limits<float>::quiet_NaN());
        }
        c.ids_known = !c.tokens.empty();
    }
}

}  // namespace

CompletionChunk parse_completion_chunk(std::string_view data) {
    CompletionChunk c;
    if (data == "[DONE]") {
        c.done = true;
        return c;
    }
    json j;
    try {
        j = json::parse(data);
    } catch (const json::exception &) {  // allow_exceptions=false still throws out_of_range for 1e999
        malformed("not JSON", data);
    }
    if (!j.is_object()) malformed("not a JSON object", data);
    if (auto e = j.find("error"); e != j.end()) {
        if (e->is_object() && e->contains("message") && (*e)["message"].is_string()) {
            c.error = (*e)["message"].get<std::string>();
        } else {
            c.error = e->dump();
        }
        return c;
    }
    if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
        if (auto p = u->find("prompt_tokens"); p != u->end() && p->is_number_integer()) c.prompt_tokens = p->get<int64_t>();
        if (auto d = u->find("prompt_tokens_details"); d != u->end() && d->is_object()) {
            if (auto k = d->find("cached_tokens"); k != d->end() && k->is_number_integer()) c.cached_prompt_tokens = k->get<int64_t>();
        }
    }
    if (c.cached_prompt_tokens < 0) {  // llama-server's timings: cache_n prompt tokens reused
        if (auto t = j.find("timings"); t != j.end() && t->is_object()) {
            if (auto k = t->find("cache_n"); k != t->end() && k->is_number_integer()) c.cached_prompt_tokens = k->get<int64_t>();
        }
    }
    const auto choices = j.find("choices");
    if (choices == j.end()) {
        if (c.prompt_tokens >= 0) return c;  // the usage chunk of stream_options.include_usage
        malformed("no choices", data);
    }
    if (!choices->is_array()) malformed("choices is not an array", data);
    if (choices->empty()) return c;  // vLLM's usage chunk has "choices": []
    const json & ch = (*choices)[0];
    if (!ch.is_object()) malformed("a choice is not an object", data);
    if (auto t = ch.find("text"); t != ch.end()) {
        if (!t->is_string()) malformed("text is not a string", data);
        c.text = t->get<std::string>();
    }
    if (auto f = ch.find("finish_reason"); f != ch.end() && !f->is_null()) {
        if (!f->is_string()) malformed("finish_reason is not a string", data);
        c.finish_reason = f->get<std::string>();
    }
    if (auto lp = ch.find("logprobs"); lp != ch.end()) read_logprobs(*lp, c, data);
    if (auto ids = ch.find("token_ids"); ids != ch.end() && ids->is_array() && !ids->empty()) {  // vLLM, SGLang
        std::vector<Token> tokens;
        for (const auto & t : *ids) {
            if (!t.is_number_integer()) malformed("token_ids holds a non-integer", data);
            tokens.push_back(t.get<Token>());
        }
        if (c.logprobs.size() != tokens.size()) c.logprobs.assign(tokens.size(), std::numeric_limits<float>::quiet_NaN());
        c.tokens = std::move(tokens);
        c.ids_known = true;
    }
    return c;
}

}  // namespace forkjoin::remote
