// The backend seam: what the runtime needs from whatever turns contexts into tokens.
//
// The runtime (runtime/) talks to this interface only; `llama` (backends/llama, in-process) is one
// implementation, a remote OpenAI-compatible fleet is meant to be another. Nothing here includes
// llama.cpp.
//
// Model of a backend: numbered sequences (KV-cache streams for llama, request streams for a remote
// engine). A sequence has decoded tokens and pending input; step() advances every sequence with
// pending input at once and samples the generating ones that finished their input. What a backend
// cannot do it says in capabilities(), and the runtime falls back:
//   - no KV splice: the parent re-reads its children's tokens (a text join of the same tokens);
//   - no zero-copy fork: fork() still works, by copying the parent's state or re-sending its text.
//
// Errors: every call that a caller can get wrong throws forkjoin::Error (invalid_argument for a dead
// sequence or bad token, context_overflow for input that can never fit, sequence_limit when no
// sequence is free, decode_failed when the engine fails). step() reports sequences that cannot
// advance in StepResult::blocked (their input kept) instead of throwing: kv_cache_full (waiting may
// help), context_overflow (it cannot), decode_failed (the engine failed on this sequence alone:
// close it). step() throws only when it cannot tell which sequences a failure belongs to.
//
// Threading: a backend is driven by one thread (the runtime's loop); it is not thread-safe.
#pragma once

#include "base/error.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace forkjoin {

using Token = int32_t;   // a vocabulary id
using SeqId = int32_t;   // a backend's sequence number, reused after close()

struct Sampling {
    float temperature = 0.0f;  // 0: greedy; > 0: sample from the tempered distribution
    int32_t top_k = 0;         // keep the k most likely tokens; 0: off
    float top_p = 1.0f;        // nucleus; 1: off
    float min_p = 0.0f;        // drop tokens below min_p x p(max); 0: off
    uint64_t seed = 0;         // the sequence's RNG seed
    bool logprobs = false;     // report the sampled token's log-probability
    int32_t top_logprobs = 0;  // also report the k most likely tokens (implies logprobs)
    bool ignore_eos = false;   // never sample an end-of-generation token (llama-server's and vLLM's ignore_eos)
};

struct TokenLogprob {
    Token token;
    float logprob;
};

struct SampledToken {
    SeqId seq;
    Token token;
    float logprob;                   // NaN unless Sampling::logprobs or top_logprobs
    std::vector<TokenLogprob> top;   // empty unless Sampling::top_logprobs > 0
};

struct BlockedSequence {
    SeqId seq;
    ErrorCode reason;     // kv_cache_full (waiting may help) or context_overflow (it cannot)
    std::string message;
};

struct StepResult {
    std::vector<SampledToken> sampled;     // generating sequences that finished their input
    std::vector<BlockedSequence> blocked;  // sequences that could not advance this step
    int32_t n_decoded = 0;                 // tokens decoded (all sequences)
    int32_t n_sequences = 0;               // sequences that advanced
    int32_t n_decode_calls = 0;            // engine calls (1 unless a batch was split)
};

// Room in the backend. For llama: KV cells; a backend without cells reports what bounds it the same way.
struct KvUsage {
    uint32_t cells_total = 0;
    uint32_t cells_used = 0;
    uint32_t pending_tokens = 0;  // queued input of all sequences, not yet decoded
    uint32_t live_sequences = 0;
};

// Cumulative decode work since the backend was made (benchmarks: batch size and context per token).
struct DecodeStats {
    int64_t steps = 0;          // step() calls that decoded something
    int64_t tokens = 0;         // tokens decoded, every path (step, a splice's flush; not score/logits)
    int64_t position_sum = 0;   // sum of the decoded tokens' positions: / tokens = mean context
    int64_t position_shifts = 0;  // cell ranges a splice moved to new positions; llama.cpp applies each
                                  // as a K-shift (a RoPE rotation of every cell's keys) at the next decode
};

// Where a KV join puts the children's cells in the parent's positions.
enum class JoinLayout {
    // Child B after child A, at consecutive positions: B's cells are moved (a position shift), as if
    // the parent had decoded A then B. Siblings still never attended to each other.
    consecutive,
    // Every child keeps the positions it was decoded at: all start at the fork point, and the parent
    // goes on after the longest (Multiverse, NPR and Parallel-R1 train and serve their paths this
    // way). Nothing moves, so no K-shift. A sequence then holds several cells at one position; the
    // parent's next token needs new input (append it) because no single cell is "its last".
    shared_start,
};

struct BackendCapabilities {
    bool zero_copy_fork = false;  // a fork shares the parent's state instead of copying or re-sending it
    bool kv_splice = false;       // splice() joins children without recompute
    bool score = false;           // score() and logits() are available
    bool token_ids = true;        // sampled tokens are the model's ids (a text-only remote engine: false)
};

// Text <-> tokens for the model behind a backend. Immutable; safe to share between threads.
class Vocabulary {
public:
    virtual ~Vocabulary() = default;
    // Throws Error(unknown_character) naming the first character it cannot encode.
    // parse_special: recognise control tokens written as text (a chat template's "<|im_start|>"). The
    // runtime reads prompts so, as llama-server and vLLM do; off, such text is spelled out.
    virtual std::vector<Token> tokenize(std::string_view text, bool add_bos = false, bool parse_special = false) const = 0;
    virtual std::string detokenize(std::span<const Token> tokens, bool render_special = true) const = 0;
    // The text of one token as it appears in generated output.
    virtual const std::string & piece(Token token) const = 0;
    virtual bool is_end_of_generation(Token token) const = 0;
    virtual int32_t n_vocab() const = 0;  // valid tokens are [0, n_vocab)
    // The token a fresh context starts with when the model asks for one (GGUF
    // tokenizer.ggml.add_bos_token: Llama's <s>), as llama-server starts every prompt; nullopt when
    // it does not (Qwen, the shipped Countdown model).
    virtual std::optional<Token> start_token() const = 0;
};

class Backend {
public:
    virtual ~Backend() = default;

    virtual BackendCapabilities capabilities() const = 0;
    virtual const Vocabulary & vocabulary() const = 0;
    // Most sequences live at once (score()'s throwaway sequences included).
    virtual uint32_t max_sequences() const = 0;

    // A new sequence whose input is `prompt` (non-empty); generating unless told otherwise.
    virtual SeqId open(std::span<const Token> prompt, const Sampling & sampling = {}, bool generating = true) = 0;
    // A child that starts with all of the parent's tokens (decoded and pending), with its own sampler.
    virtual SeqId fork(SeqId parent, const Sampling & sampling = {}, bool generating = true) = 0;
    // Queue tokens as the sequence's next input.
    virtual void append(SeqId seq, std::span<const Token> tokens) = 0;
    virtual void set_generating(SeqId seq, bool generating) = 0;
    // Drop everything at positions >= n_keep.
    virtual void truncate(SeqId seq, int32_t n_keep) = 0;
    virtual void close(SeqId seq) = 0;

    // Advance every sequence with pending input. The result is valid until the next call.
    virtual const StepResult & step() = 0;

    // KV join (capabilities().kv_splice): append each child's own tokens to the parent, in order,
    // without recompute, placed as `layout` says; the children are closed. skip (empty, or one per
    // child): leave out that many of the child's first own tokens (a header the upstream engine does
    // not keep); the rest keep what they attended to. Throws invalid_argument where unsupported.
    virtual void splice(SeqId parent, std::span<const SeqId> children, JoinLayout layout = JoinLayout::consecutive,
                        std::span<const int32_t> skip = {}) = 0;
    // Log-probabilities of `continuation` after seq's tokens (capabilities().score); seq is unchanged.
    virtual std::vector<float> score(SeqId seq, std::span<const Token> continuation) = 0;

    virtual bool live(SeqId seq) const = 0;
    virtual int32_t length(SeqId seq) const = 0;  // decoded + pending
    virtual int32_t n_pending(SeqId seq) const = 0;
    virtual const std::vector<Token> & tokens(SeqId seq) const = 0;  // all of seq's tokens, by position
    virtual bool has_pending() const = 0;
    virtual KvUsage usage() const = 0;
    virtual const DecodeStats & stats() const = 0;

    bool can_splice() const { return capabilities().kv_splice; }
    bool zero_copy_fork() const { return capabilities().zero_copy_fork; }
};

}  // namespace forkjoin
