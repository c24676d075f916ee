// LlamaBackend: many sequences on one model and one llama_context, advanced together.
//
// This is forkjoin's in-process backend. Every live sequence is one llama.cpp sequence id in a
// single *unified* KV cache (kv_unified = true), which is what makes zero-copy forks and range
// copies possible: a cell carries the set of sequences that see it.
//
// Lifecycle of a sequence:
//   open(prompt) or fork(parent) -> [append(tokens)] -> step() ... -> close()
// A sequence has decoded tokens (in the KV cache) and pending tokens (queued, not yet decoded).
// step() decodes pending tokens of all sequences in one llama_decode: each generating sequence's
// next token plus chunks of pending prefill, up to n_batch tokens (continuous batching). When a
// generating sequence has no pending input left, it is sampled; the sampled token is returned and
// queued as its next pending token, so the following step() decodes it (the usual generation loop).
// Callers stop a sequence with set_generating(false), truncate() or close().
//
// Fork: the child references every decoded cell of the parent (llama_memory_seq_cp): no copy, cost
// independent of the parent's length. The parent's pending tokens are copied to the child's queue.
//
// Splice (KV join): the children's own cells become part of the parent's sequence without
// recompute (llama_memory_seq_cp). Attention semantics after a splice of children A, B onto prefix P:
//   - A's cells were computed attending to P and A only; B's to P and B only: siblings never see
//     each other (Multiverse / NPR "parallel paths");
//   - the parent's next tokens attend to P, A and B;
//   - JoinLayout::consecutive: B is moved after A (llama_memory_seq_add: a RoPE rotation of every
//     cell's keys, the K-shift, at the next decode); with a single child the result is exactly the
//     parent having decoded the child's tokens;
//   - JoinLayout::shared_start: A and B keep the positions they were decoded at (both start where P
//     ends; llama.cpp lets a sequence hold several cells at one position) and the parent continues
//     after the longer: the layout Multiverse, NPR and Parallel-R1 train on. Nothing is shifted.
//
// Layout (BackendOptions::kv_layout): everything above describes the `shared` layout, one unified
// cell pool. Its price is attention: a batch's every token scans the cells of every sequence (the
// mask hides the others' cells, but the kernels still walk them), so a step costs O(batch x all
// cells in use), not O(batch x its own context). The `per_sequence` layout gives each sequence slot
// its own KV stream of n_ctx / n_seq_max cells (llama.cpp's non-unified cache, as llama-server
// runs its slots): attention walks only the sequence's own stream. Then a fork copies the parent's
// stream (a buffer copy at the next decode; for a 2.2M model ~4 KB a cell) instead of sharing it,
// and splice() is refused: children must be joined as text. Use it where nothing is shared (APR's
// fresh children) or where the copy is cheaper than what sharing costs every step; `forkjoin bench
// backend` measures both at 1..128 sequences.
//
// Capacity: the cache has n_ctx cells shared by all sequences (per_sequence: each sequence has
// sequence_capacity() cells of its own, and a sequence that would outgrow them is blocked with
// ErrorCode::context_overflow, which waiting cannot fix). KvLedger mirrors llama.cpp's cell
// use. A sequence whose next tokens do not fit is reported in StepResult::blocked with
// ErrorCode::kv_cache_full and keeps its pending input: nothing is lost, it resumes when cells are
// freed (backpressure). Other sequences keep advancing.
//
// Threading: not thread-safe; one thread (the scheduler) drives a backend.
#pragma once

#include "backends/backend.h"
#include "backends/llama/kv_ledger.h"
#include "backends/llama/model.h"
#include "backends/llama/sampling.h"
#include "base/cpu_share.h"
#include "base/error.h"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <functional>
#include <utility>
#include <vector>

struct llama_context;

namespace forkjoin::llama {

using forkjoin::SeqId;

enum class FlashAttention { automatic, on, off };

// How sequences hold the KV cache (see the header comment).
enum class KvLayout {
    shared,        // one unified cell pool: zero-copy fork, KV splice; attention scans every used cell
    per_sequence,  // one stream per sequence slot: attention scans its own cells; fork copies; no splice
};

struct BackendOptions {
    uint32_t n_ctx = 4096;     // KV cells shared by all sequences
    uint32_t n_seq_max = 64;   // live sequences at once, score()'s throwaway forks included (<= 256)
    uint32_t n_batch = 512;    // most tokens one step() decodes
    uint32_t n_ubatch = 512;   // llama.cpp's physical batch
    int32_t n_threads = 0;     // CPU threads per decode; 0: FORKJOIN_THREADS if set, else adapt to the
                               // free cores each step (base/cpu_share.h). Logits may differ in the last
                               // bits between thread counts (ggml splits some reductions by thread), so
                               // a run that must be bit-reproducible sets this
    FlashAttention flash_attention = FlashAttention::automatic;  // automatic = on for CPU
    bool kv_f32 = false;       // keep K/V in F32 instead of F16: exact comparisons, twice the memory
    KvLayout kv_layout = KvLayout::shared;
};

// The seam's types (backends/backend.h), under the names this backend's callers have used.
using forkjoin::BlockedSequence;
using forkjoin::DecodeStats;
using forkjoin::KvUsage;
using forkjoin::SampledToken;
using forkjoin::StepResult;

class LlamaBackend final : public Backend {
public:
    LlamaBackend(std::shared_ptr<const Model> model, const BackendOptions & options = {});
    ~LlamaBackend();
    LlamaBackend(const LlamaBackend &) = delete;
    LlamaBackend & operator=(const LlamaBackend &) = delete;

    // A new sequence whose input is `prompt` (non-empty). Generating unless told otherwise.
    // Throws sequence_limit when n_seq_max sequences are live, invalid_argument on bad tokens.
    SeqId open(std::span<const Token> prompt, const Sampling & sampling = {}, bool generating = true) override;
    // A child sharing the parent's cells; generating with its own sampler.
    SeqId fork(SeqId parent, const Sampling & sampling = {}, bool generating = true) override;
    // Queue tokens as input of seq (prefilled by later steps). Throws context_overflow when the
    // sequence would outgrow the whole cache.
    void append(SeqId seq, std::span<const Token> tokens) override;
    void set_generating(SeqId seq, bool generating) override;
    // Drop everything at positions >= n_keep (decoded cells and pending input).
    void truncate(SeqId seq, int32_t n_keep) override;
    // Free the sequence's slot and its cells (cells shared with others stay).
    void close(SeqId seq) override;

    // One decode for every sequence with pending input. The result is valid until the next call.
    // When llama_decode fails, each sequence of the batch is decoded alone: the ones that fail again
    // come back in StepResult::blocked with decode_failed (their input kept; close them), the others
    // are served as if nothing happened.
    const StepResult & step() override;

    // Tests: a decode whose batch holds a sequence for which `fault` returns true is aborted through
    // llama.cpp's abort callback (the path a failed compute takes: llama_decode returns 2 and drops
    // the micro-batch's cells). Empty: no fault.
    void set_decode_fault(std::function<bool(SeqId)> fault);

    // KV join (shared layout only; per_sequence throws invalid_argument): append each child's own
    // tokens (those after its fork point) to the parent as cache cells, in the given order, without
    // recompute; the children are closed. Every child must have been forked from `parent` while the
    // parent had its present length. Pending input of the parent and children is decoded first.
    // consecutive: each child's cells move up past the ones before (one position shift per child
    // after the first). shared_start: no cell moves; the parent's next position is past the longest
    // child, and it needs input (append) before it can generate, score or fork a generating child
    // (those throw invalid_argument until then), and truncate() refuses to cut inside the join.
    void splice(SeqId parent, std::span<const SeqId> children, JoinLayout layout = JoinLayout::consecutive,
                std::span<const int32_t> skip = {}) override;

    // Log-probabilities of `continuation` following seq's tokens (decoded and pending), one per
    // continuation token, computed on a throwaway fork; seq is unchanged.
    std::vector<float> score(SeqId seq, std::span<const Token> continuation) override;

    // Logits after seq's last token, computed on a throwaway fork (tests, diagnostics).
    std::vector<float> logits(SeqId seq);

    // Inspection.
    bool live(SeqId seq) const override;
    int32_t length(SeqId seq) const override;  // decoded + pending
    int32_t n_decoded(SeqId seq) const;
    int32_t n_pending(SeqId seq) const override;
    bool generating(SeqId seq) const;
    const std::vector<Token> & tokens(SeqId seq) const override;  // all of seq's tokens, in text order
    // Each token's position (its index, except after a shared-start splice, whose paths overlap).
    const std::vector<int32_t> & positions(SeqId seq) const;
    bool has_pending() const override;
    KvUsage usage() const override;
    const DecodeStats & stats() const override { return stats_; }
    const BackendOptions & options() const { return options_; }
    // What this backend can do: everything in the shared layout; per_sequence forks by copy, no splice.
    BackendCapabilities capabilities() const override;
    const Vocabulary & vocabulary() const override { return *model_; }
    uint32_t max_sequences() const override { return options_.n_seq_max; }
    // Most tokens one sequence can hold: n_ctx (shared) or its own stream's cells (per_sequence).
    uint32_t sequence_capacity() const { return seq_capacity_; }
    const Model & model() const { return *model_; }
    int32_t threads() const { return threads_; }  // CPU threads the last decode used
    llama_context * context() const { return ctx_; }

private:
    struct Sequence;
    struct BatchEntry;  // one sequence's slice of the batch being built

    Sequence & get(SeqId seq);
    const Sequence & get(SeqId seq) const;
    SeqId acquire_slot();
    // Throws invalid_argument when seq, generating, would have nothing to sample after (it ends with
    // a shared-start join and has no input).
    void check_can_generate(SeqId seq, bool generating) const;
    // A generating sequence with no pending input: its last token goes back to pending (decoded again).
    void requeue_last_if_idle(SeqId seq, bool generating);
    void check_tokens(std::span<const Token> tokens) const;
    // A sequence longer than the whole cache could never be decoded: context_overflow.
    void check_fits(size_t length) const;
    // What bounds one sequence, for messages: "a KV cache of N cells" or "its KV stream of N cells ...".
    std::string capacity_text() const;
    // Decodes pending input of the given sequences (no sampling) until none is left.
    void flush(std::span<const SeqId> seqs);
    // Runs llama_decode over the built batch, splitting it when the cache has no slot. Throws
    // decode_failed when llama.cpp fails (sequence counts already in line with its cache).
    void decode_batch(bool sample);
    // After a failed step: decodes each planned sequence not yet served on its own.
    void isolate_failed_step(const std::string & cause);
    static bool abort_requested(void * self);
    // Evaluates `input` on a throwaway fork of seq's first n_shared positions and calls
    // on_logits(j, logits) for each input index j >= first_output.
    template <typename F>
    void evaluate_on_fork(SeqId seq, int32_t n_shared, std::span<const Token> input, size_t first_output,
                          F && on_logits);

    std::shared_ptr<const Model> model_;
    BackendOptions options_;
    llama_context * ctx_ = nullptr;
    int32_t n_vocab_ = 0;
    int32_t threads_ = 1;
    uint32_t seq_capacity_ = 0;
    std::unique_ptr<CpuShare> cpu_share_;  // set when the thread count adapts to the free cores
    void adapt_threads();
    KvLedger ledger_;
    std::vector<std::unique_ptr<Sequence>> slots_;  // indexed by SeqId; null when free
    std::vector<SeqId> live_;                       // live ids in opening order (batch order)
    size_t prefill_cursor_ = 0;                     // round-robin start for prefill chunks
    // Reused across steps so the hot loop does not allocate.
    struct Batch;
    std::unique_ptr<Batch> batch_;
    std::vector<std::pair<SeqId, int32_t>> plan_;  // this step's (sequence, tokens), before the batch is built
    std::vector<int32_t> plan_past_;               // each planned sequence's decoded length before the step
    std::function<bool(SeqId)> decode_fault_;      // tests: set_decode_fault
    bool abort_decode_ = false;                    // read by llama.cpp's abort callback during a decode
    StepResult result_;
    DecodeStats stats_;
};

}  // namespace forkjoin::llama
