// One streamed completion of an OpenAI-compatible server (llama-server, vLLM, SGLang): the request
// body forkjoin sends and the chunks it reads back.
//
// The request uses only fields the three servers all accept (README, "Remote backend"): model,
// prompt as token ids (the context is then exactly the tokens the runtime holds: no re-tokenization of
// text on the server), max_tokens, temperature, top_p, seed, stream, stream_options.include_usage,
// logprobs: 1 (the generated token ids ride on it), top_k (-1: off) and min_p always (else a server's
// own defaults apply: llama-server's are top_k 40, min_p 0.05), ignore_eos when set. Two fields only some servers know carry the generated token ids where logprobs do not:
// return_token_ids (vLLM >= 0.10.2, recent SGLang: choices[].token_ids) and return_tokens_as_token_ids
// (older vLLM: "token_id:N" in the logprobs); llama-server and SGLang ignore unknown fields, vLLM >= 0.6.5
// logs and ignores them (vLLM <= 0.6.4 refused unknown fields with a 400: not supported).
// No `stop`: the runtime stops a thread at its spawn point itself and cancels the stream there, while
// an OpenAI `stop` would drop the matched tag from the text and each server names the matched stop in
// its own field.
//
// parse_completion_chunk() reads one SSE event's data. Token ids come from choices[].token_ids, else
// llama-server's logprobs.content[].id, else vLLM's logprobs.tokens ("token_id:N"); a chunk with text but no ids has
// `ids_known` false and the caller tokenizes its text. Throws Error(invalid_argument) with a message
// naming what is wrong for data that is not a completion chunk (not JSON, no choices, wrong types).
#pragma once

#include "backends/backend.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace forkjoin::remote {

struct CompletionRequest {
    std::string model;          // the served model's id ("model" field; vLLM and SGLang check it)
    std::vector<Token> prompt;  // the whole context so far
    int32_t max_tokens = 0;     // > 0
    Sampling sampling;
};

std::string completion_request_json(const CompletionRequest & request);

struct CompletionChunk {
    bool done = false;                 // the "[DONE]" sentinel
    std::string text;                  // text of the tokens in this chunk
    std::vector<Token> tokens;         // their ids, when the server reported them
    std::vector<float> logprobs;       // one per token, when reported
    bool ids_known = false;            // tokens are the server's own ids for `text`
    std::optional<std::string> finish_reason;  // "stop", "length", ...; absent while streaming
    int64_t prompt_tokens = -1;        // usage, when this chunk carries it
    int64_t cached_prompt_tokens = -1; // prompt tokens the server took from its prefix cache
    std::optional<std::string> error;  // the server reported an error inside the stream
};

CompletionChunk parse_completion_chunk(std::string_view data);

}  // namespace forkjoin::remote
