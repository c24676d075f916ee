// The OpenAI-compatible surface: request bodies in, response objects out. No sockets here, so every
// rule (which field, which type, which range, which message) is testable without a server.
//
// Requests: POST /v1/completions and /v1/chat/completions bodies, as vLLM and llama-server read
// them: model, prompt | messages, max_tokens (max_completion_tokens), temperature, top_p, seed, stop,
// stream, stream_options.include_usage, user, n (1 only). Other standard fields are ignored, as
// OpenAI servers do. The extension object `forkjoin` picks the task, strategy, dialect, samples and
// limits; its unknown keys are errors (it is ours, a typo there would silently change a run).
//
// Errors: parse_request throws ApiError: the HTTP status, a message a person can act on, and the
// field (`param`) at fault, rendered by error_body() as OpenAI's {"error": {...}} object.
#pragma once

#include "runtime/limits.h"
#include "runtime/program.h"
#include "tasks/countdown/problem.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace forkjoin::server {

struct ApiError : std::runtime_error {
    ApiError(int status, std::string message, std::string param = "", std::string type = "invalid_request_error")
        : std::runtime_error(message), status(status), param(std::move(param)), type(std::move(type)) {}
    int status;
    std::string param;
    std::string type;
};

nlohmann::json error_body(const std::string & message, const std::string & type, const std::string & param = "");

struct ChatMessage {
    std::string role;
    std::string content;
};

// What the server knows when it reads a request.
struct ApiDefaults {
    std::string task = "text";             // "countdown" for the shipped model
    std::string dialect = "plain";         // native text strategy: the model's markup
    std::string controller = "default";    // controller policies of requests that name none
    float text_temperature = 1.0f;         // OpenAI's default
    float countdown_temperature = 0.0f;    // the shipped model is evaluated greedy
    runtime::Limits limits;                // a request narrows these, never widens max_threads
    int64_t max_prompt_tokens = 0;         // what one sequence holds (0: no check)
    // Renders chat messages into the model's prompt (its chat template); required for chat.
    std::function<std::string(const std::vector<ChatMessage> &)> render_chat;
    // Counts a prompt's tokens; throws forkjoin::Error(unknown_character) for text the model cannot encode.
    std::function<int64_t(const std::string &)> count_tokens;
};

struct ApiRequest {
    bool chat = false;
    std::string model;
    std::string prompt;                    // rendered (chat: through the template)
    std::string user;
    float temperature = 1.0f;
    float top_p = 1.0f;
    uint64_t seed = 0;
    std::vector<std::string> stop;
    bool stream = false;
    bool include_usage = false;
    // forkjoin
    std::string task;                      // text, countdown
    std::string strategy;                  // sequential, native, self-consistency, best-of-n, plan-execute
    std::string dialect;
    std::string controller;                // policies (runtime/policies.h)
    int samples = 4;
    int max_items = 6;                     // plan-execute
    runtime::Limits limits;
    double timeout_s = 0;
    bool include_text = false;             // the tree carries each thread's text
    std::optional<countdown::Problem> problem;  // task countdown
};

// Throws ApiError (400) naming the field. `body` is the raw request body.
ApiRequest parse_request(const std::string & body, bool chat, const ApiDefaults & defaults);

// The ordinary OpenAI object for a finished job (text_completion or chat.completion), with usage and
// the `forkjoin` extension.
nlohmann::json completion_body(const ApiRequest & req, const runtime::JobResult & result, const std::string & id,
                               const std::string & model, int64_t created, const std::string & text, const std::string & finish_reason);

// A streaming chunk: `content` as delta (chat) or text (completions); finish_reason null unless given;
// `extension` (when not null) as the chunk's `forkjoin` field.
nlohmann::json chunk_body(const ApiRequest & req, const std::string & id, const std::string & model, int64_t created,
                          const std::optional<std::string> & content, const std::optional<std::string> & finish_reason,
                          const nlohmann::json & extension = nullptr, bool role = false);

// The usage object: the root's prompt, every thread's generated tokens.
nlohmann::json usage_body(const runtime::JobResult & result);

// The `forkjoin` extension: strategy, answer, tokens, and the thread tree.
nlohmann::json forkjoin_body(const ApiRequest & req, const runtime::JobResult & result);

// Cuts `text` at the first stop string; true when one was found.
bool cut_at_stop(std::string & text, const std::vector<std::string> & stop);

}  // namespace forkjoin::server
