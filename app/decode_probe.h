// Raw batched decode on a LlamaBackend: the physical limit the benchmarks compare against.
// Shared by `bench backend` (forkjoin vs bare llama.cpp, KV layouts) and `bench countdown` (the
// end-to-end run vs raw decode at its own batch size and context).
#pragma once

#include "backends/llama/backend.h"

#include <cstdint>
#include <vector>

namespace forkjoin::app {

// Deterministic prompt of n tokens drawn from the vocabulary's ordinary pieces.
std::vector<llama::Token> prompt_tokens(const llama::Model & model, int n, uint64_t salt);

// Aggregate decode tokens/s of n_seq generating sequences that each start from `context` prompt
// tokens: prefill and the first sample happen before the clock starts; `steps` steps are timed.
// The backend must have room (sequences and cells); its sequences are closed again on return.
double decode_tokens_per_s(llama::LlamaBackend & backend, int n_seq, int steps, int context);

}  // namespace forkjoin::app
