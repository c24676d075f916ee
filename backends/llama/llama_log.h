// Routes llama.cpp's process-wide log into forkjoin.
//
// llama.cpp reports why a load or decode failed only through its log callback. install_llama_log()
// captures warnings and errors so that forkjoin's own errors can quote the cause
// (last_llama_error()); everything below WARN is dropped unless FORKJOIN_LLAMA_LOG=1, in which
// case all of it goes to stderr. Thread-safe; the capture is process-wide like llama.cpp's log.
#pragma once

#include <string>

namespace forkjoin::llama {

// Idempotent. Also calls llama_backend_init() once.
void install_llama_log();

// The most recent WARN/ERROR lines llama.cpp logged (joined, trailing newline removed), or "".
std::string last_llama_error();

// Forget captured lines, so the next failure quotes only its own cause.
void clear_llama_error();

}  // namespace forkjoin::llama
