#include "base/error.h"

namespace forkjoin {

const char * error_code_name(ErrorCode code) {
    switch (code) {
        case ErrorCode::invalid_argument:  return "invalid_argument";
        case ErrorCode::model_load:        return "model_load";
        case ErrorCode::unknown_character: return "unknown_character";
        case ErrorCode::context_overflow:  return "context_overflow";
        case ErrorCode::kv_cache_full:     return "kv_cache_full";
        case ErrorCode::sequence_limit:    return "sequence_limit";
        case ErrorCode::decode_failed:     return "decode_failed";
        case ErrorCode::io:                return "io";
        case ErrorCode::overloaded:        return "overloaded";
        case ErrorCode::remote_failed:     return "remote_failed";
    }
    return "unknown";
}

}  // namespace forkjoin
