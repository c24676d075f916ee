// KvLedger: how many KV cells the live sequences hold, kept in step with llama.cpp's unified cache.
//
// In a unified KV cache one cell holds one token's keys/values and carries the set of sequences
// that see it; it is freed when that set becomes empty. A fork shares every cell of the parent
// (seq_cp), so N forks of a P-token prefix hold P + N x (own tokens) cells, not N x P. llama.cpp
// does not expose its cell count, so the backend mirrors each cache operation here and uses the
// count to apply backpressure before a decode could fail.
//
// Model: a sequence is an ordered list of chunks (runs of cells at consecutive positions); a chunk
// counts the sequences that reference it. Chunks split when an operation cuts through them.
// Not thread-safe (owned by one backend).
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace forkjoin::llama {

class KvLedger {
public:
    explicit KvLedger(uint32_t capacity) : capacity_(capacity) {}

    uint32_t capacity() const { return capacity_; }
    uint32_t used() const { return used_; }
    uint32_t free() const { return capacity_ > used_ ? capacity_ - used_ : 0; }
    // Number of positions the sequence references (its decoded length).
    uint32_t length(int32_t seq) const;

    // seq decoded n new tokens at its end: n new cells.
    void append(int32_t seq, uint32_t n);
    // dst (empty) references the cells of src's first n positions (a fork when n = length(src)).
    void share_prefix(int32_t src, int32_t dst, uint32_t n);
    // parent references child's cells at positions >= from, after its own (a KV join).
    void adopt_suffix(int32_t parent, int32_t child, uint32_t from);
    // seq drops its cells at positions >= n_keep.
    void truncate(int32_t seq, uint32_t n_keep);
    // seq drops all its cells.
    void release(int32_t seq);

private:
    struct Chunk {
        uint32_t size = 0;
        uint32_t refs = 0;
    };
    uint32_t new_chunk(uint32_t size, uint32_t refs);
    void unref(uint32_t chunk);
    // Makes a chunk boundary at position pos of seq; returns the index in seq's list of the first
    // chunk at or after pos.
    std::size_t split_at(int32_t seq, uint32_t pos);

    uint32_t capacity_;
    uint32_t used_ = 0;
    std::vector<Chunk> chunks_;
    std::vector<uint32_t> free_chunks_;
    std::unordered_map<int32_t, std::vector<uint32_t>> seqs_;
};

}  // namespace forkjoin::llama
