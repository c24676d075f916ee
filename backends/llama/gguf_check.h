// forkjoin's own reading of a GGUF file's structure, before llama.cpp parses it.
//
// What it checks (GGUF v2 and v3, as ggml's gguf reader and llama.cpp's loader at the pinned commit
// accept them): the magic and version; the counts of metadata pairs and tensors; every key (non-empty,
// unique), value type, string and array (lengths within the file); general.alignment (a uint32 power
// of two); every tensor's name (under 64 bytes, unique), dimensions (at most 4, none negative, the
// element count and byte size representable), ggml type (defined, not removed; rows a whole number
// of blocks) and data offset (tensors laid out one after another, each padded to the alignment, as
// ggml requires); and that every tensor's data lies inside the file, so a truncated download is named
// as one.
//
// Why, when llama.cpp checks too: its reasons go to its log, one line among many, and some files
// (a truncated download) fail deep in the loader; this names the first thing wrong, the byte it is at,
// and what to do. The counts are also bounded (kMaxKeyValues, kMaxTensors): ggml checks for duplicate
// keys and names pairwise, so a file that declares millions of them would stall the load for hours.
//
// Nothing here calls llama.cpp; the fuzz target links it alone. Thread-safe (no shared state).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace forkjoin::llama {

// Limits on what a file may declare. Real models hold tens of pairs and at most a few thousand
// tensors (a 671B MoE: ~1,100).
inline constexpr int64_t kMaxKeyValues = 1 << 16;
inline constexpr int64_t kMaxTensors = 1 << 16;

enum class GgufProblem {
    none,
    structure,       // the header, the metadata or the tensor table is malformed (or cut short)
    limit,           // well formed, but past kMaxKeyValues / kMaxTensors
    truncated_data,  // well formed, but a tensor's data ends past the end of the file
};

struct GgufLayout {
    uint32_t version = 0;
    int64_t n_key_values = 0;
    int64_t n_tensors = 0;
    uint32_t alignment = 32;
    uint64_t data_offset = 0;  // where the data section starts (after the tensor table, aligned)
    uint64_t data_bytes = 0;   // the data section's size, every tensor padded to the alignment
    uint64_t file_bytes = 0;
    std::string architecture;  // general.architecture when it is a string, else empty
};

struct GgufCheck {
    GgufProblem problem = GgufProblem::none;
    std::string message;  // the first thing wrong, for a person; empty when none
    uint64_t at = 0;      // the byte offset it was found at
    GgufLayout layout;    // as far as it was read
    bool ok() const { return problem == GgufProblem::none; }
};

// ggml's tensor types at the pinned commit, indexed by ggml_type: name, elements per block, bytes per
// block; a removed type has a block of 0 elements, as ggml reports it. A test compares them with
// ggml's own, so a new pin that changes them fails there first.
struct GgmlTypeTraits {
    const char * name;
    int64_t block;
    uint64_t bytes;
};
std::span<const GgmlTypeTraits> ggml_types();

// Reads a GGUF held in memory. Never throws (a std::bad_alloc aside); reads nothing outside bytes.
GgufCheck inspect_gguf(std::span<const uint8_t> bytes);
// Reads a file's header, metadata and tensor table (not its tensor data). Never throws; a file that
// cannot be opened or read is a structure problem whose message says so.
GgufCheck inspect_gguf_file(const std::string & path);

}  // namespace forkjoin::llama
