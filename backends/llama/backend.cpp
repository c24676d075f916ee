#include "backends/llama/backend.h"

#include "backends/llama/llama_log.h"

#include <llama.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

namespace forkjoin::llama {

struct LlamaBackend::Sequence {
    uint64_t uid = 0;               // never reused, unlike SeqId
    std::vector<Token> tokens;      // [0, n_past) decoded, [n_past, size) pending; in text order
    std::vector<int32_t> pos;       // each token's position: its index, until a shared-start splice
                                    // gives several tokens one position
    int32_t next_pos = 0;           // the next token's position: above every position held
    int32_t n_past = 0;
    bool generating = true;
    uint64_t parent_uid = 0;        // 0: opened, not forked
    int32_t fork_pos = -1;          // parent's length (tokens) when forked
    std::unique_ptr<Sampler> sampler;

    int32_t n_pending() const { return static_cast<int32_t>(tokens.size()) - n_past; }
    void push(Token t) {
        tokens.push_back(t);
        pos.push_back(next_pos++);
    }
    // The position where the tokens from index `at` on begin (next_pos at the end).
    int32_t position_at(size_t at) const { return at < pos.size() ? pos[at] : next_pos; }
    // True when every token before `at` sits at a lower position than every token from `at` on, so
    // "positions >= position_at(at)" names exactly the tokens from `at` on. Always true without a
    // shared-start splice; false inside one (its paths overlap) and at its end when nothing follows.
    bool clean_cut(size_t at) const {
        if (at == 0 || at >= pos.size()) return true;
        const int32_t before = *std::max_element(pos.begin(), pos.begin() + static_cast<std::ptrdiff_t>(at));
        const int32_t after = *std::min_element(pos.begin() + static_cast<std::ptrdiff_t>(at), pos.end());
        return before < after;
    }
};

struct LlamaBackend::BatchEntry {
    SeqId seq;
    int32_t begin;   // index of the entry's first token in the batch
    int32_t end;     // one past its last
    bool sample;     // sample from the last token's logits
};

struct LlamaBackend::Batch {
    llama_batch batch{};
    std::vector<BatchEntry> entries;
    explicit Batch(int32_t capacity) : batch(llama_batch_init(capacity, 0, 1)) {}
    ~Batch() { llama_batch_free(batch); }
    void clear() {
        batch.n_tokens = 0;
        entries.clear();
    }
    void add(Token token, llama_pos pos, SeqId seq, bool output) {
        const int32_t i = batch.n_tokens++;
        batch.token[i] = token;
        batch.pos[i] = pos;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = seq;
        batch.logits[i] = output;
    }
    // Adds the next n pending tokens of s as one entry; logits for the last one when `sample`.
    void add_pending(SeqId id, const Sequence & s, int32_t n, bool sample) {
        const int32_t begin = batch.n_tokens;
        for (int32_t j = 0; j < n; ++j) {
            const size_t at = static_cast<size_t>(s.n_past + j);
            add(s.tokens[at], s.pos[at], id, sample && j == n - 1);
        }
        entries.push_back({id, begin, batch.n_tokens, sample});
    }
};

namespace {
std::atomic<uint64_t> g_next_uid{1};  // shared by all backends of the process
// llama.cpp's LLAMA_MAX_SEQ (src/llama-cparams.h, not in its public header).
constexpr uint32_t kMaxSequences = 256;

llama_flash_attn_type to_llama(FlashAttention fa) {
    switch (fa) {
        case FlashAttention::on: return LLAMA_FLASH_ATTN_TYPE_ENABLED;
        case FlashAttention::off: return LLAMA_FLASH_ATTN_TYPE_DISABLED;
        case FlashAttention::automatic: break;
    }
    return LLAMA_FLASH_ATTN_TYPE_AUTO;
}
}  // namespace

LlamaBackend::LlamaBackend(std::shared_ptr<const Model> model, const BackendOptions & options)
    : model_(std::move(model)), options_(options), ledger_(0) {
    install_llama_log();
    if (options.n_seq_max == 0 || options.n_seq_max > kMaxSequences) {
        throw Error(ErrorCode::invalid_argument,
                    "n_seq_max must be in 1.." + std::to_string(kMaxSequences) + ", got " +
                        std::to_string(options.n_seq_max));
    }
    if (options.n_ctx == 0 || options.n_batch == 0 || options.n_ubatch == 0) {
        throw Error(ErrorCode::invalid_argument, "n_ctx, n_batch and n_ubatch must be positive");
    }
    llama_context_params params = llama_context_default_params();
    params.n_ctx = options.n_ctx;
    params.n_batch = options.n_batch;
    params.n_ubatch = std::min(options.n_ubatch, options.n_batch);
    params.n_seq_max = options.n_seq_max;
    // Zero-copy fork and range copies need one shared cell pool; per_sequence gives each slot a stream.
    params.kv_unified = options.kv_layout == KvLayout::shared;
    const int32_t fixed = requested_threads(options.n_threads);
    if (fixed <= 0) cpu_share_ = std::make_unique<CpuShare>();
    threads_ = fixed > 0 ? fixed : cpu_share_->max_threads();
    params.n_threads = threads_;
    params.n_threads_batch = threads_;
    params.flash_attn_type = to_llama(options.flash_attention);
    if (options.kv_f32) params.type_k = params.type_v = GGML_TYPE_F32;
    params.no_perf = true;
    clear_llama_error();
    ctx_ = llama_init_from_model(model_->get(), params);
    if (ctx_ == nullptr) {
        const std::string cause = last_llama_error();
        throw Error(ErrorCode::model_load, "cannot create a llama.cpp context for '" + model_->path() + "'" +
                                               (cause.empty() ? "" : ": " + cause));
    }
    options_.n_ctx = llama_n_ctx(ctx_);  // llama.cpp may round it up
    seq_capacity_ = llama_n_ctx_seq(ctx_);
    ledger_ = KvLedger(options_.n_ctx);
    n_vocab_ = model_->n_vocab();
    slots_.resize(options.n_seq_max);
    batch_ = std::make_unique<Batch>(static_cast<int32_t>(options.n_batch));
}

BackendCapabilities LlamaBackend::capabilities() const {
    const bool shared = options_.kv_layout == KvLayout::shared;
    return {.zero_copy_fork = shared, .kv_splice = shared, .score = true, .token_ids = true};
}

LlamaBackend::~LlamaBackend() {
    batch_.reset();
    slots_.clear();
    if (ctx_ != nullptr) llama_free(ctx_);
}

LlamaBackend::Sequence & LlamaBackend::get(SeqId seq) {
    if (seq < 0 || static_cast<size_t>(seq) >= slots_.size() || !slots_[static_cast<size_t>(seq)]) {
        throw Error(ErrorCode::invalid_argument, "no live sequence " + std::to_string(seq));
    }
    return *slots_[static_cast<size_t>(seq)];
}

const LlamaBackend::Sequence & LlamaBackend::get(SeqId seq) const {
    return const_cast<LlamaBackend *>(this)->get(seq);
}

bool LlamaBackend::live(SeqId seq) const {
    return seq >= 0 && static_cast<size_t>(seq) < slots_.size() && slots_[static_cast<size_t>(seq)];
}

SeqId LlamaBackend::acquire_slot() {
    for (size_t i = 0; i < slots_.size(); ++i) {
        if (!slots_[i]) {
            slots_[i] = std::make_unique<Sequence>();
            slots_[i]->uid = g_next_uid++;
            return static_cast<SeqId>(i);
        }
    }
    throw Error(ErrorCode::sequence_limit, "all " + std::to_string(slots_.size()) +
                                               " sequence slots are in use (n_seq_max); close a sequence first");
}

std::string LlamaBackend::capacity_text() const {
    return options_.kv_layout == KvLayout::shared
               ? "a KV cache of " + std::to_string(options_.n_ctx) + " cells"
               : "its KV stream of " + std::to_string(seq_capacity_) + " cells (n_ctx / n_seq_max)";
}

void LlamaBackend::check_fits(size_t length) const {
    if (length > seq_capacity_) {
        throw Error(ErrorCode::context_overflow,
                    "a sequence of " + std::to_string(length) + " tokens cannot fit in " + capacity_text());
    }
}

void LlamaBackend::check_tokens(std::span<const Token> tokens) const {
    for (Token t : tokens) {
        if (t < 0 || t >= n_vocab_) {
            throw Error(ErrorCode::invalid_argument, "token id " + std::to_string(t) +
                                                         " is outside the vocabulary (size " +
                                                         std::to_string(n_vocab_) + ")");
        }
    }
}

// A generating sequence needs pending input to sample after; if it has none, its last decoded
// token is taken back out of the cache and queued again (one token of recompute).
static bool needs_requeue(int32_t n_pending, int32_t n_past, bool generating) {
    return generating && n_pending == 0 && n_past > 0;
}

void LlamaBackend::check_can_generate(SeqId seq, bool generating) const {
    const Sequence & s = get(seq);
    // After a shared-start splice no single cell is the sequence's last: nothing to sample after.
    if (needs_requeue(s.n_pending(), s.n_past, generating) && !s.clean_cut(static_cast<size_t>(s.n_past - 1))) {
        throw Error(ErrorCode::invalid_argument,
                    "sequence " + std::to_string(seq) +
                        " ends with a shared-start join (its paths share positions, none is last): append its "
                        "next input before it generates");
    }
}

void LlamaBackend::requeue_last_if_idle(SeqId seq, bool generating) {
    Sequence & s = get(seq);
    if (!needs_requeue(s.n_pending(), s.n_past, generating)) return;
    check_can_generate(seq, generating);
    llama_memory_seq_rm(llama_get_memory(ctx_), seq, s.pos[static_cast<size_t>(s.n_past - 1)], -1);
    ledger_.truncate(seq, static_cast<uint32_t>(s.n_past - 1));
    --s.n_past;
}

SeqId LlamaBackend::open(std::span<const Token> prompt, const Sampling & sampling, bool generating) {
    if (prompt.empty()) throw Error(ErrorCode::invalid_argument, "a sequence needs a non-empty prompt");
    check_tokens(prompt);
    check_fits(prompt.size());
    auto sampler = std::make_unique<Sampler>(sampling, n_vocab_, model_->end_of_generation_tokens());
    const SeqId id = acquire_slot();
    Sequence & s = get(id);
    for (Token t : prompt) s.push(t);
    s.generating = generating;
    s.sampler = std::move(sampler);
    live_.push_back(id);
    return id;
}

SeqId LlamaBackend::fork(SeqId parent, const Sampling & sampling, bool generating) {
    const Sequence & p = get(parent);
    check_can_generate(parent, generating);  // the child would start where the parent cannot
    auto sampler = std::make_unique<Sampler>(sampling, n_vocab_, model_->end_of_generation_tokens());
    const SeqId id = acquire_slot();  // slots hold pointers: p stays valid
    Sequence & c = get(id);
    llama_memory_seq_cp(llama_get_memory(ctx_), parent, id, -1, -1);
    if (zero_copy_fork()) {
        ledger_.share_prefix(parent, id, static_cast<uint32_t>(p.n_past));
    } else {
        ledger_.append(id, static_cast<uint32_t>(p.n_past));  // llama.cpp copies the stream at the next decode
    }
    c.tokens = p.tokens;
    c.pos = p.pos;
    c.next_pos = p.next_pos;
    c.n_past = p.n_past;
    c.generating = generating;
    c.parent_uid = p.uid;
    c.fork_pos = static_cast<int32_t>(p.tokens.size());
    c.sampler = std::move(sampler);
    requeue_last_if_idle(id, c.generating);
    live_.push_back(id);
    return id;
}

void LlamaBackend::append(SeqId seq, std::span<const Token> tokens) {
    Sequence & s = get(seq);
    check_tokens(tokens);
    check_fits(s.tokens.size() + tokens.size());
    for (Token t : tokens) s.push(t);
}

void LlamaBackend::set_generating(SeqId seq, bool generating) {
    check_can_generate(seq, generating);
    Sequence & s = get(seq);
    s.generating = generating;
    requeue_last_if_idle(seq, s.generating);
}

void LlamaBackend::truncate(SeqId seq, int32_t n_keep) {
    Sequence & s = get(seq);
    if (n_keep < 0) throw Error(ErrorCode::invalid_argument, "truncate: n_keep must be >= 0");
    if (n_keep >= static_cast<int32_t>(s.tokens.size())) return;
    const size_t keep = static_cast<size_t>(n_keep);
    // llama.cpp removes cells by position: a cut through a shared-start join's paths (or at its end,
    // leaving the parent nothing to generate from) has no position range that names it.
    if (!s.clean_cut(keep) || (keep > 0 && s.generating && n_keep <= s.n_past && !s.clean_cut(keep - 1))) {
        throw Error(ErrorCode::invalid_argument,
                    "truncate: token " + std::to_string(n_keep) + " of sequence " + std::to_string(seq) +
                        " is inside a shared-start join, whose paths share positions; cut before the join or after it");
    }
    const int32_t cut = s.pos[keep];
    if (n_keep < s.n_past) {
        llama_memory_seq_rm(llama_get_memory(ctx_), seq, cut, -1);
        ledger_.truncate(seq, static_cast<uint32_t>(n_keep));
        s.n_past = n_keep;
    }
    s.tokens.resize(keep);
    s.pos.resize(keep);
    s.next_pos = cut;
    requeue_last_if_idle(seq, s.generating);
}

void LlamaBackend::close(SeqId seq) {
    get(seq);
    llama_memory_seq_rm(llama_get_memory(ctx_), seq, -1, -1);
    ledger_.release(seq);
    slots_[static_cast<size_t>(seq)].reset();
    live_.erase(std::remove(live_.begin(), live_.end(), seq), live_.end());
}

const StepResult & LlamaBackend::step() {
    result_.sampled.clear();
    result_.blocked.clear();
    result_.n_decoded = 0;
    result_.n_sequences = 0;
    result_.n_decode_calls = 0;
    Batch & b = *batch_;
    b.clear();
    int32_t budget = static_cast<int32_t>(options_.n_batch);
    int64_t cells = ledger_.free();

    plan_.clear();
    auto add_entry = [&](SeqId id, int32_t n) {
        plan_.push_back({id, n});
        budget -= n;
        cells -= n;
    };
    auto block = [&](SeqId id, const Sequence & s) {
        result_.blocked.push_back({id, ErrorCode::kv_cache_full,
                                   "KV cache full: sequence " + std::to_string(id) + " needs " +
                                       std::to_string(s.n_pending()) + " more cells, " +
                                       std::to_string(ledger_.used()) + " of " +
                                       std::to_string(ledger_.capacity()) + " are in use"});
    };
    // The sequence holds all the cells one sequence can (its own stream, or the whole shared cache):
    // no other sequence can free cells for it.
    auto room = [&](const Sequence & s) { return static_cast<int64_t>(seq_capacity_) - s.n_past; };
    auto block_full_stream = [&](SeqId id, const Sequence & s) {
        result_.blocked.push_back({id, ErrorCode::context_overflow,
                                   "sequence " + std::to_string(id) + " filled " +
                                       (options_.kv_layout == KvLayout::shared ? "the whole KV cache (" : "its KV stream (") +
                                       std::to_string(seq_capacity_) + " cells) with " +
                                       std::to_string(s.n_pending()) + " tokens still to decode"});
    };

    // Decode tokens first: a generating sequence's single next token never waits behind prefill.
    for (SeqId id : live_) {
        Sequence & s = *slots_[static_cast<size_t>(id)];
        if (!(s.generating && s.n_pending() == 1) || budget == 0) continue;
        if (room(s) < 1) {
            block_full_stream(id, s);
            continue;
        }
        if (cells < 1) {
            block(id, s);
            continue;
        }
        add_entry(id, 1);
    }
    // Then prefill chunks, round-robin so one long prompt cannot starve the others.
    const size_t n_live = live_.size();
    for (size_t k = 0; k < n_live && budget > 0; ++k) {
        const SeqId id = live_[(prefill_cursor_ + k) % n_live];
        Sequence & s = *slots_[static_cast<size_t>(id)];
        if (s.n_pending() == 0 || (s.generating && s.n_pending() == 1)) continue;
        if (room(s) < 1) {
            block_full_stream(id, s);
            continue;
        }
        const int32_t n = static_cast<int32_t>(std::min<int64_t>({s.n_pending(), budget, cells, room(s)}));
        if (n <= 0) {
            block(id, s);
            continue;
        }
        add_entry(id, n);
    }
    if (n_live > 0) prefill_cursor_ = (prefill_cursor_ + 1) % n_live;
    // llama.cpp splits a non-unified batch into micro-batches of consecutive, increasing sequence
    // ids (llama_batch_allocr::split_equal): in id order, one step stays one micro-batch.
    if (options_.kv_layout == KvLayout::per_sequence) {
        std::sort(plan_.begin(), plan_.end(), [](const auto & x, const auto & y) { return x.first < y.first; });
    }
    plan_past_.clear();
    for (const auto & [id, n] : plan_) {
        const Sequence & s = *slots_[static_cast<size_t>(id)];
        plan_past_.push_back(s.n_past);
        b.add_pending(id, s, n, s.generating && n == s.n_pending());
    }
    if (b.batch.n_tokens > 0) {
        ++stats_.steps;
        try {
            decode_batch(true);
        } catch (const Error & e) {
            if (e.code() != ErrorCode::decode_failed) throw;
            isolate_failed_step(e.what());
        }
    }
    return result_;
}

void LlamaBackend::isolate_failed_step(const std::string & cause) {
    // decode_batch brought every sequence's count in line with what llama.cpp kept (it drops the
    // failed micro-batch's cells). Each planned sequence not yet served is decoded alone, so a
    // failure that belongs to one sequence stays with it and the others lose nothing.
    Batch & b = *batch_;
    for (size_t k = 0; k < plan_.size(); ++k) {
        const auto [id, n] = plan_[k];
        if (!live(id)) continue;
        Sequence & s = *slots_[static_cast<size_t>(id)];
        const int32_t target = plan_past_[k] + n;
        const bool sample = s.generating && target == static_cast<int32_t>(s.tokens.size());
        const bool served = std::any_of(result_.sampled.begin(), result_.sampled.end(),
                                        [id](const SampledToken & t) { return t.seq == id; });
        if (served || (s.n_past >= target && !sample)) continue;
        if (s.n_past >= target) {
            // Its tokens are in the cache but their logits went with the failed call: decode the last again.
            requeue_last_if_idle(id, true);
        }
        b.clear();
        b.add_pending(id, s, target - s.n_past, sample);
        try {
            decode_batch(true);
        } catch (const Error & e) {
            if (e.code() != ErrorCode::decode_failed) throw;
            result_.blocked.push_back({id, ErrorCode::decode_failed,
                                       "sequence " + std::to_string(id) + ": " + e.what() + " (the batch failed first: " + cause + ")"});
        }
    }
}

void LlamaBackend::set_decode_fault(std::function<bool(SeqId)> fault) {
    decode_fault_ = std::move(fault);
    llama_set_abort_callback(ctx_, decode_fault_ ? &LlamaBackend::abort_requested : nullptr, this);
}

bool LlamaBackend::abort_requested(void * self) {
    return static_cast<LlamaBackend *>(self)->abort_decode_;
}

void LlamaBackend::adapt_threads() {
    if (!cpu_share_) return;
    const int32_t n = cpu_share_->threads();
    if (n == threads_) return;
    llama_set_n_threads(ctx_, n, n);
    threads_ = n;
}

void LlamaBackend::decode_batch(bool sample) {
    adapt_threads();
    Batch & b = *batch_;
    llama_memory_t mem = llama_get_memory(ctx_);
    const int32_t n_total = b.batch.n_tokens;
    size_t first_entry = 0;  // entries before it lie wholly before `start`
    int32_t start = 0;
    while (start < n_total) {
        int32_t n = n_total - start;
        int32_t ret;
        for (;;) {
            llama_batch view = {n, b.batch.token + start, nullptr, b.batch.pos + start,
                                b.batch.n_seq_id + start, b.batch.seq_id + start, b.batch.logits + start};
            clear_llama_error();
            abort_decode_ = false;
            if (decode_fault_) {
                for (int32_t i = 0; i < n && !abort_decode_; ++i) abort_decode_ = decode_fault_(view.seq_id[i][0]);
            }
            ret = llama_decode(ctx_, view);
            abort_decode_ = false;
            ++result_.n_decode_calls;
            if (ret == 1 && n > 1) {  // no KV slot for this many: try half (memory was restored)
                n /= 2;
                continue;
            }
            break;
        }
        if (ret == 1) {
            // Not even one token fits: block this entry's sequence, skip the rest of its entry.
            while (first_entry < b.entries.size() && b.entries[first_entry].end <= start) ++first_entry;
            const BatchEntry & e = b.entries[first_entry];
            const Sequence & s = *slots_[static_cast<size_t>(e.seq)];
            result_.blocked.push_back({e.seq, ErrorCode::kv_cache_full,
                                       "KV cache full: llama.cpp found no free cell for sequence " +
                                           std::to_string(e.seq) + " (" + std::to_string(s.n_pending()) +
                                           " tokens pending)"});
            start = e.end;
            continue;
        }
        if (ret != 0) {
            // Processed ubatches stay in the cache: bring every sequence's count in line, then report.
            for (const BatchEntry & e : b.entries) {
                Sequence & s = *slots_[static_cast<size_t>(e.seq)];
                // Pending tokens sit above every decoded position: those at or below the cache's
                // highest position for the sequence were decoded.
                const int32_t pos_max = llama_memory_seq_pos_max(mem, e.seq);
                int32_t in_cache = s.n_past;
                while (in_cache < static_cast<int32_t>(s.tokens.size()) && s.pos[static_cast<size_t>(in_cache)] <= pos_max) {
                    ++in_cache;
                }
                if (in_cache > s.n_past) {
                    ledger_.append(e.seq, static_cast<uint32_t>(in_cache - s.n_past));
                    s.n_past = in_cache;
                }
            }
            const std::string cause = last_llama_error();
            throw Error(ErrorCode::decode_failed, "llama_decode failed with status " + std::to_string(ret) +
                                                      (cause.empty() ? "" : ": " + cause));
        }
        const int32_t stop = start + n;
        for (size_t k = first_entry; k < b.entries.size() && b.entries[k].begin < stop; ++k) {
            const BatchEntry & e = b.entries[k];
            const int32_t lo = std::max(e.begin, start);
            const int32_t hi = std::min(e.end, stop);
            if (hi <= lo) continue;
            Sequence & s = *slots_[static_cast<size_t>(e.seq)];
            stats_.tokens += hi - lo;
            for (int32_t k = 0; k < hi - lo; ++k) stats_.position_sum += s.pos[static_cast<size_t>(s.n_past + k)];
            s.n_past += hi - lo;
            ledger_.append(e.seq, static_cast<uint32_t>(hi - lo));
            result_.n_decoded += hi - lo;
            if (hi == e.end) ++result_.n_sequences;
            if (!(sample && e.sample && hi == e.end)) continue;
            const int32_t idx = e.end - 1 - start;
            const Token token = s.sampler->sample(ctx_, idx);
            SampledToken out{e.seq, token, std::numeric_limits<float>::quiet_NaN(), {}};
            const Sampling & sp = s.sampler->params();
            if (sp.logprobs || sp.top_logprobs > 0) {
                const float * logits = llama_get_logits_ith(ctx_, idx);
                out.logprob = token_logprob(logits, n_vocab_, token);
                if (sp.top_logprobs > 0) top_logprobs(logits, n_vocab_, sp.top_logprobs, out.top);
            }
            s.push(token);
            result_.sampled.push_back(std::move(out));
        }
        while (first_entry < b.entries.size() && b.entries[first_entry].end <= stop) ++first_entry;
        start = stop;
    }
}

void LlamaBackend::flush(std::span<const SeqId> seqs) {
    Batch & b = *batch_;
    for (;;) {
        b.clear();
        int32_t budget = static_cast<int32_t>(options_.n_batch);
        int64_t cells = ledger_.free();
        for (SeqId id : seqs) {
            Sequence & s = get(id);
            const int32_t n = static_cast<int32_t>(std::min<int64_t>({s.n_pending(), budget, cells}));
            if (n <= 0) continue;
            b.add_pending(id, s, n, false);
            budget -= n;
            cells -= n;
        }
        if (b.batch.n_tokens == 0) break;
        result_.blocked.clear();
        decode_batch(false);
        if (!result_.blocked.empty()) {
            throw Error(ErrorCode::kv_cache_full, result_.blocked.front().message);
        }
    }
    for (SeqId id : seqs) {
        if (get(id).n_pending() > 0) {
            throw Error(ErrorCode::kv_cache_full, "KV cache full: cannot decode the pending input of sequence " +
                                                      std::to_string(id) + " (" +
                                                      std::to_string(ledger_.free()) + " cells free)");
        }
    }
}

void LlamaBackend::splice(SeqId parent, std::span<const SeqId> children, JoinLayout layout,
                          std::span<const int32_t> skip) {
    Sequence & p = get(parent);
    if (!skip.empty() && skip.size() != children.size()) {
        throw Error(ErrorCode::invalid_argument, "splice: " + std::to_string(skip.size()) + " skip counts for " +
                                                     std::to_string(children.size()) + " children");
    }
    for (size_t i = 0; i < children.size(); ++i) {
        const Sequence & c = get(children[i]);
        if (c.parent_uid != p.uid) {
            throw Error(ErrorCode::invalid_argument, "splice: sequence " + std::to_string(children[i]) +
                                                         " was not forked from sequence " + std::to_string(parent));
        }
        if (c.fork_pos != static_cast<int32_t>(p.tokens.size())) {
            throw Error(ErrorCode::invalid_argument,
                        "splice: sequence " + std::to_string(parent) + " changed length since child " +
                            std::to_string(children[i]) + " was forked (" + std::to_string(c.fork_pos) + " -> " +
                            std::to_string(p.tokens.size()) + ")");
        }
        if (!skip.empty() && (skip[i] < 0 || skip[i] > static_cast<int32_t>(c.tokens.size()) - c.fork_pos)) {
            throw Error(ErrorCode::invalid_argument, "splice: child " + std::to_string(children[i]) + " has " +
                                                         std::to_string(static_cast<int32_t>(c.tokens.size()) - c.fork_pos) +
                                                         " own tokens, cannot skip " + std::to_string(skip[i]));
        }
        for (size_t j = 0; j < i; ++j) {
            if (children[j] == children[i]) {
                throw Error(ErrorCode::invalid_argument, "splice: child " + std::to_string(children[i]) + " listed twice");
            }
        }
    }
    if (!can_splice()) {
        throw Error(ErrorCode::invalid_argument,
                    "splice: a KV join needs the shared KV layout (this backend gives each sequence its own KV "
                    "stream); join the children as text instead");
    }
    std::vector<SeqId> involved(children.begin(), children.end());
    involved.push_back(parent);
    flush(involved);

    llama_memory_t mem = llama_get_memory(ctx_);
    // Every child's own cells start at the parent's next position (the parent has not moved since
    // the forks), above every cell they share with it.
    const int32_t start = p.next_pos;
    int32_t end = start;  // shared_start: past the longest child
    for (size_t i = 0; i < children.size(); ++i) {
        const SeqId child = children[i];
        Sequence & c = get(child);
        const int32_t first_own = c.fork_pos + (skip.empty() ? 0 : skip[i]);
        const size_t from = static_cast<size_t>(first_own);
        const int32_t own = c.n_past - first_own;
        if (own > 0) {
            // consecutive: this child moves up past the siblings spliced before it.
            const int32_t begin = c.pos[from];
            const int32_t offset = layout == JoinLayout::consecutive ? p.next_pos - begin : 0;
            if (offset != 0) {
                llama_memory_seq_add(mem, child, begin, -1, offset);
                ++stats_.position_shifts;
            }
            llama_memory_seq_cp(mem, child, parent, begin + offset, -1);
            ledger_.adopt_suffix(parent, child, static_cast<uint32_t>(from));
            const auto first = static_cast<std::ptrdiff_t>(from), last = static_cast<std::ptrdiff_t>(c.n_past);
            p.tokens.insert(p.tokens.end(), c.tokens.begin() + first, c.tokens.begin() + last);
            for (auto k = first; k < last; ++k) p.pos.push_back(c.pos[static_cast<size_t>(k)] + offset);
            p.n_past += own;
            const int32_t child_end = c.pos[static_cast<size_t>(c.n_past - 1)] + 1 + offset;
            if (layout == JoinLayout::consecutive) p.next_pos = child_end;
            end = std::max(end, child_end);
        }
        close(child);
    }
    if (layout == JoinLayout::shared_start) {
        p.next_pos = end;
        // No cell is the parent's last one: it samples again once it is given input (append).
        if (p.n_pending() == 0) return;
    }
    requeue_last_if_idle(parent, p.generating);
}

template <typename F>
void LlamaBackend::evaluate_on_fork(SeqId seq, int32_t n_shared, std::span<const Token> input, size_t first_output,
                                    F && on_logits) {
    const Sequence & s = get(seq);
    n_shared = std::min(n_shared, s.n_past);
    if (!s.clean_cut(static_cast<size_t>(n_shared))) {
        throw Error(ErrorCode::invalid_argument,
                    "sequence " + std::to_string(seq) +
                        " ends with a shared-start join (its paths share positions, none is last): append its next "
                        "input before scoring or reading logits");
    }
    // The first n_shared tokens are exactly the cells below this position; the input continues from it.
    const int32_t bound = s.position_at(static_cast<size_t>(n_shared));
    check_fits(static_cast<size_t>(n_shared) + input.size());
    // A copied prefix (per_sequence) needs cells of its own; a shared one does not.
    const size_t needed = input.size() + (zero_copy_fork() ? 0 : static_cast<size_t>(n_shared));
    if (ledger_.free() < needed) {
        throw Error(ErrorCode::kv_cache_full, "KV cache full: scoring needs " + std::to_string(needed) +
                                                  " cells, " + std::to_string(ledger_.free()) + " are free");
    }
    const SeqId tmp = acquire_slot();
    llama_memory_t mem = llama_get_memory(ctx_);
    struct Cleanup {
        LlamaBackend * self;
        SeqId tmp;
        ~Cleanup() {
            llama_memory_seq_rm(llama_get_memory(self->ctx_), tmp, -1, -1);
            self->ledger_.release(tmp);
            self->slots_[static_cast<size_t>(tmp)].reset();
        }
    } cleanup{this, tmp};
    if (n_shared > 0 && zero_copy_fork()) {
        llama_memory_seq_cp(mem, seq, tmp, 0, bound);
        ledger_.share_prefix(seq, tmp, static_cast<uint32_t>(n_shared));
    } else if (n_shared > 0) {
        // Across streams llama.cpp copies whole streams only: copy, then drop what is not shared.
        llama_memory_seq_cp(mem, seq, tmp, -1, -1);
        llama_memory_seq_rm(mem, tmp, bound, -1);
        ledger_.append(tmp, static_cast<uint32_t>(n_shared));
    }
    Batch & b = *batch_;
    for (size_t start = 0; start < input.size(); start += options_.n_batch) {
        const size_t n = std::min<size_t>(options_.n_batch, input.size() - start);
        b.clear();
        for (size_t j = start; j < start + n; ++j) {
            b.add(input[j], bound + static_cast<llama_pos>(j), tmp, j >= first_output);
        }
        clear_llama_error();
        const int32_t ret = llama_decode(ctx_, b.batch);
        if (ret != 0) {
            const std::string cause = last_llama_error();
            throw Error(ret == 1 ? ErrorCode::kv_cache_full : ErrorCode::decode_failed,
                        "llama_decode failed while scoring (status " + std::to_string(ret) + ")" +
                            (cause.empty() ? "" : ": " + cause));
        }
        ledger_.append(tmp, static_cast<uint32_t>(n));
        for (size_t j = std::max(start, first_output); j < start + n; ++j) {
            on_logits(j, llama_get_logits_ith(ctx_, static_cast<int32_t>(j - start)));
        }
    }
}

std::vector<float> LlamaBackend::score(SeqId seq, std::span<const Token> continuation) {
    const Sequence & s = get(seq);
    check_tokens(continuation);
    if (s.tokens.empty()) throw Error(ErrorCode::invalid_argument, "score: the sequence has no tokens");
    if (continuation.empty()) return {};
    const int32_t len = static_cast<int32_t>(s.tokens.size());
    const int32_t n_shared = std::min(s.n_past, len - 1);
    std::vector<Token> input(s.tokens.begin() + n_shared, s.tokens.end());
    const size_t first_output = input.size() - 1;
    input.insert(input.end(), continuation.begin(), continuation.end() - 1);
    std::vector<float> out(continuation.size());
    evaluate_on_fork(seq, n_shared, input, first_output, [&](size_t j, const float * logits) {
        const size_t k = j - first_output;
        out[k] = token_logprob(logits, n_vocab_, continuation[k]);
    });
    return out;
}

std::vector<float> LlamaBackend::logits(SeqId seq) {
    const Sequence & s = get(seq);
    if (s.tokens.empty()) throw Error(ErrorCode::invalid_argument, "logits: the sequence has no tokens");
    const int32_t len = static_cast<int32_t>(s.tokens.size());
    const int32_t n_shared = std::min(s.n_past, len - 1);
    std::vector<Token> input(s.tokens.begin() + n_shared, s.tokens.end());
    std::vector<float> out;
    evaluate_on_fork(seq, n_shared, input, input.size() - 1,
                     [&](size_t, const float * logits) { out.assign(logits, logits + n_vocab_); });
    return out;
}

int32_t LlamaBackend::length(SeqId seq) const { return static_cast<int32_t>(get(seq).tokens.size()); }
int32_t LlamaBackend::n_decoded(SeqId seq) const { return get(seq).n_past; }
int32_t LlamaBackend::n_pending(SeqId seq) const { return get(seq).n_pending(); }
bool LlamaBackend::generating(SeqId seq) const { return get(seq).generating; }
const std::vector<Token> & LlamaBackend::tokens(SeqId seq) const { return get(seq).tokens; }
const std::vector<int32_t> & LlamaBackend::positions(SeqId seq) const { return get(seq).pos; }

bool LlamaBackend::has_pending() const {
    for (SeqId id : live_) {
        if (slots_[static_cast<size_t>(id)]->n_pending() > 0) return true;
    }
    return false;
}

KvUsage LlamaBackend::usage() const {
    KvUsage u;
    u.cells_total = ledger_.capacity();
    u.cells_used = ledger_.used();
    u.live_sequences = static_cast<uint32_t>(live_.size());
    for (SeqId id : live_) u.pending_tokens += static_cast<uint32_t>(slots_[static_cast<size_t>(id)]->n_pending());
    return u;
}

}  // namespace forkjoin::llama
