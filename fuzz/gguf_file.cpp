// GGUF files, truncated and corrupted, as forkjoin loads them: its own structure check
// (backends/llama/gguf_check.h) reads any bytes without a fault, and a file it passes goes on to ggml's
// gguf reader (compiled here from the pinned llama.cpp with the same instrumentation), which must read
// it too and see the same layout. A file the check refuses never reaches ggml, in the fuzzer as in
// Model::load.
#include "backends/llama/gguf_check.h"

#include <gguf.h>

#include <cstdint>

using namespace forkjoin::llama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    const GgufCheck c = inspect_gguf({data, size});
    if (!c.ok()) {
        // A refusal names what and where: a byte inside the file, or where cut data should have been.
        if (c.message.empty() || (c.at > size && c.problem != GgufProblem::truncated_data)) __builtin_trap();
        return 0;
    }
    gguf_context * g = gguf_init_from_buffer(data, size, {.no_alloc = true, .ctx = nullptr});
    if (!g) __builtin_trap();  // the check passed what ggml refuses
    if (gguf_get_n_tensors(g) != c.layout.n_tensors || gguf_get_n_kv(g) != c.layout.n_key_values ||
        gguf_get_alignment(g) != c.layout.alignment || gguf_get_data_offset(g) != c.layout.data_offset) {
        __builtin_trap();
    }
    gguf_free(g);
    return 0;
}
