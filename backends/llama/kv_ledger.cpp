#include "backends/llama/kv_ledger.h"

#include <cassert>

namespace forkjoin::llama {

uint32_t KvLedger::new_chunk(uint32_t size, uint32_t refs) {
    uint32_t id;
    if (!free_chunks_.empty()) {
        id = free_chunks_.back();
        free_chunks_.pop_back();
    } else {
        id = static_cast<uint32_t>(chunks_.size());
        chunks_.emplace_back();
    }
    chunks_[id] = Chunk{size, refs};
    return id;
}

void KvLedger::unref(uint32_t chunk) {
    Chunk & c = chunks_[chunk];
    assert(c.refs > 0);
    if (--c.refs == 0) {
        used_ -= c.size;
        c.size = 0;
        free_chunks_.push_back(chunk);
    }
}

uint32_t KvLedger::length(int32_t seq) const {
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) return 0;
    uint32_t n = 0;
    for (uint32_t c : it->second) n += chunks_[c].size;
    return n;
}

void KvLedger::append(int32_t seq, uint32_t n) {
    if (n == 0) return;
    auto & list = seqs_[seq];
    // A chunk only this sequence references, at its end, can simply grow.
    if (!list.empty() && chunks_[list.back()].refs == 1) {
        chunks_[list.back()].size += n;
    } else {
        list.push_back(new_chunk(n, 1));
    }
    used_ += n;
}

std::size_t KvLedger::split_at(int32_t seq, uint32_t pos) {
    auto & list = seqs_[seq];
    uint32_t start = 0;
    for (std::size_t i = 0; i < list.size(); ++i) {
        const uint32_t id = list[i];
        const uint32_t size = chunks_[id].size;
        if (pos == start) return i;
        if (pos < start + size) {
            // Cut chunk id at offset (pos - start); every holder of it now holds both halves.
            const uint32_t head = pos - start;
            const uint32_t tail = new_chunk(size - head, chunks_[id].refs);
            chunks_[id].size = head;
            for (auto & [other, other_list] : seqs_) {
                for (std::size_t j = 0; j < other_list.size(); ++j) {
                    if (other_list[j] == id) {
                        other_list.insert(other_list.begin() + static_cast<std::ptrdiff_t>(j) + 1, tail);
                        break;
                    }
                }
            }
            return i + 1;
        }
        start += size;
    }
    return list.size();
}

void KvLedger::share_prefix(int32_t src, int32_t dst, uint32_t n) {
    assert(seqs_[dst].empty());
    const std::size_t end = split_at(src, n);
    const auto & from = seqs_[src];
    std::vector<uint32_t> shared(from.begin(), from.begin() + static_cast<std::ptrdiff_t>(end));
    for (uint32_t c : shared) ++chunks_[c].refs;
    seqs_[dst] = std::move(shared);
}

void KvLedger::adopt_suffix(int32_t parent, int32_t child, uint32_t from) {
    const std::size_t begin = split_at(child, from);
    const auto & list = seqs_[child];
    std::vector<uint32_t> adopted(list.begin() + static_cast<std::ptrdiff_t>(begin), list.end());
    auto & target = seqs_[parent];
    for (uint32_t c : adopted) {
        ++chunks_[c].refs;
        target.push_back(c);
    }
}

void KvLedger::truncate(int32_t seq, uint32_t n_keep) {
    const std::size_t keep = split_at(seq, n_keep);
    auto & list = seqs_[seq];
    for (std::size_t i = keep; i < list.size(); ++i) unref(list[i]);
    list.resize(keep);
}

void KvLedger::release(int32_t seq) {
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) return;
    for (uint32_t c : it->second) unref(c);
    seqs_.erase(it);
}

}  // namespace forkjoin::llama
