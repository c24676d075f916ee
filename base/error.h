// forkjoin errors.
//
// Contract: every failure that a caller can cause or recover from (bad input, a missing model,
// a full KV cache, a dead server) is reported as forkjoin::Error with a code a program can act on
// and a message a person can act on. Programming errors inside forkjoin (broken invariants) may
// still assert. Nothing here allocates on the success path.
#pragma once

#include <stdexcept>
#include <string>

namespace forkjoin {

enum class ErrorCode {
    invalid_argument,   // the caller passed something malformed or out of range
    model_load,         // a GGUF file is missing, unreadable or not a model llama.cpp can load
    unknown_character,  // text holds a character the model's vocabulary cannot encode
    context_overflow,   // a sequence would grow past the context window
    kv_cache_full,      // no free KV cells: close sequences or wait (backpressure)
    sequence_limit,     // no free sequence slot (n_seq_max reached)
    decode_failed,      // llama_decode reported an error that is not a full cache
    io,                 // a file could not be written or read
    overloaded,         // the engine holds as many requests as it may: retry later
    remote_failed,      // a remote server could not be reached or did not serve a request (after retries)
};

const char * error_code_name(ErrorCode code);

class Error : public std::runtime_error {
public:
    Error(ErrorCode code, const std::string & message)
        : std::runtime_error(message), code_(code) {}

    ErrorCode code() const { return code_; }

private:
    ErrorCode code_;
};

}  // namespace forkjoin
