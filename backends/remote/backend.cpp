#include "backends/remote/backend.h"

#include "backends/remote/completions.h"
#include "base/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

namespace forkjoin::remote {

// One completion request in flight. The loop fills the request part before queueing it; the worker
// fills the response part under the backend's mu_.
struct RemoteBackend::Stream {
    // request (immutable once queued)
    int replica = -1;
    std::string body;
    std::vector<Token> prompt;
    RequestKind kind = RequestKind::first;
    // response
    std::deque<Token> tokens;
    std::deque<float> logprobs;
    std::vector<Token> received;  // every token that arrived, for the router's prefix memory
    bool ended = false;
    std::optional<std::string> finish_reason;
    HttpOutcome outcome;
    int64_t prompt_tokens = -1, cached_tokens = -1;
    bool retokenized = false;
    // cancellation
    std::atomic<bool> cancelled{false};
    std::mutex http_mu;
    HttpStream * http = nullptr;  // while the worker runs it
};

namespace {

std::string models_id(const std::string & body, const std::string & url) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(body);
    } catch (const nlohmann::json::exception &) {
    }
    if (j.is_object() && j.contains("data") && j["data"].is_array() && !j["data"].empty() && j["data"][0].is_object() &&
        j["data"][0].contains("id") && j["data"][0]["id"].is_string()) {
        return j["data"][0]["id"].get<std::string>();
    }
    throw Error(ErrorCode::remote_failed, url + "/v1/models did not list a model (is this an OpenAI-compatible server?)");
}

}  // namespace

RemoteBackend::RemoteBackend(std::shared_ptr<const Vocabulary> vocabulary, Token end_of_generation, RemoteOptions options)
    : vocabulary_(std::move(vocabulary)),
      end_of_generation_(end_of_generation),
      options_(std::move(options)),
      router_(options_.urls, options_.routing) {
    if (!vocabulary_) throw Error(ErrorCode::invalid_argument, "remote backend: no vocabulary");
    if (options_.parallel < 1) throw Error(ErrorCode::invalid_argument, "remote backend: parallel must be at least 1");
    if (options_.context < 2) throw Error(ErrorCode::invalid_argument, "remote backend: context must be at least 2 tokens");
    if (options_.max_attempts < 1) throw Error(ErrorCode::invalid_argument, "remote backend: max_attempts must be at least 1");
    // Every server must answer before anything runs: a typo in a URL is an error now, not a hang later.
    for (const auto & url : options_.urls) {
        HttpStream probe(url, options_.api_key, {.connect_s = options_.timeouts.connect_s, .read_s = options_.timeouts.connect_s});
        std::string body;
        const HttpOutcome o = probe.get("/v1/models", body);
        if (o.kind != HttpOutcome::Kind::ok) throw Error(ErrorCode::remote_failed, "remote server not reachable: " + o.message);
        const std::string id = models_id(body, url);
        if (model_.empty()) model_ = options_.model.empty() ? id : options_.model;
    }
    seqs_.resize(options_.max_sequences);
    for (uint32_t i = options_.max_sequences; i-- > 0;) free_ids_.push_back(static_cast<SeqId>(i));
    for (int32_t i = 0; i < options_.parallel; ++i) workers_.emplace_back([this] { worker_loop(); });
    canceller_ = std::thread([this] { canceller_loop(); });
}

RemoteBackend::~RemoteBackend() {
    for (auto & s : seqs_) {
        if (s.live) cancel_stream(s);
    }
    {
        std::lock_guard lock(mu_);
        shutting_down_ = true;
        for (auto & st : queue_) st->cancelled = true;
    }
    work_cv_.notify_all();
    cancel_cv_.notify_all();
    for (auto & w : workers_) w.join();
    canceller_.join();
}

BackendCapabilities RemoteBackend::capabilities() const {
    return {.zero_copy_fork = false, .kv_splice = false, .score = false, .token_ids = true};
}

RemoteBackend::Sequence & RemoteBackend::seq_ref(SeqId seq) {
    if (seq < 0 || static_cast<size_t>(seq) >= seqs_.size() || !seqs_[static_cast<size_t>(seq)].live) {
        throw Error(ErrorCode::invalid_argument, "remote backend: sequence " + std::to_string(seq) + " is not live");
    }
    return seqs_[static_cast<size_t>(seq)];
}

const RemoteBackend::Sequence & RemoteBackend::seq_ref(SeqId seq) const {
    return const_cast<RemoteBackend *>(this)->seq_ref(seq);
}

SeqId RemoteBackend::new_sequence() {
    if (free_ids_.empty()) {
        throw Error(ErrorCode::sequence_limit, "remote backend: all " + std::to_string(options_.max_sequences) + " sequences are in use");
    }
    const SeqId id = free_ids_.back();
    free_ids_.pop_back();
    seqs_[static_cast<size_t>(id)] = Sequence{};
    seqs_[static_cast<size_t>(id)].live = true;
    return id;
}

void RemoteBackend::check_tokens(std::span<const Token> tokens) const {
    for (Token t : tokens) {
        if (t < 0 || t >= vocabulary_->n_vocab()) throw Error(ErrorCode::invalid_argument, "remote backend: token " + std::to_string(t) + " is not in the vocabulary");
    }
}

SeqId RemoteBackend::open(std::span<const Token> prompt, const Sampling & sampling, bool generating) {
    if (prompt.empty()) throw Error(ErrorCode::invalid_argument, "remote backend: empty prompt");
    check_tokens(prompt);
    if (static_cast<int64_t>(prompt.size()) > options_.context) {
        throw Error(ErrorCode::context_overflow, "remote backend: a prompt of " + std::to_string(prompt.size()) +
                                                     " tokens does not fit the context of " + std::to_string(options_.context));
    }
    const SeqId id = new_sequence();
    Sequence & s = seqs_[static_cast<size_t>(id)];
    s.tokens.assign(prompt.begin(), prompt.end());
    s.n_pending = static_cast<int32_t>(prompt.size());
    s.sampling = sampling;
    s.generating = generating;
    return id;
}

SeqId RemoteBackend::fork(SeqId parent, const Sampling & sampling, bool generating) {
    const Sequence & pp = seq_ref(parent);  // seqs_ never resizes: the reference survives new_sequence()
    const SeqId id = new_sequence();
    Sequence & s = seqs_[static_cast<size_t>(id)];
    s.tokens = pp.tokens;
    s.n_pending = pp.n_pending;
    s.replica = pp.replica;  // its prefix is there
    s.forked = true;
    s.sampling = sampling;
    s.generating = generating;
    return id;
}

void RemoteBackend::cancel_stream(Sequence & s) {
    if (!s.stream) return;
    s.stream->cancelled = true;
    {
        // Closing the socket can wait on a connect in progress: the canceller thread does it.
        std::lock_guard lock(mu_);
        ++rstats_.cancelled_streams;
        to_cancel_.push_back(std::move(s.stream));
    }
    cancel_cv_.notify_one();
    s.stream.reset();
}

void RemoteBackend::canceller_loop() {
    for (;;) {
        std::shared_ptr<Stream> st;
        {
            std::unique_lock lock(mu_);
            cancel_cv_.wait(lock, [&] { return shutting_down_ || !to_cancel_.empty(); });
            if (to_cancel_.empty()) return;
            st = std::move(to_cancel_.front());
            to_cancel_.pop_front();
        }
        std::lock_guard lock(st->http_mu);  // the worker unregisters under it before the HttpStream dies
        if (st->http) st->http->cancel();
    }
}

void RemoteBackend::append(SeqId seq, std::span<const Token> tokens) {
    Sequence & s = seq_ref(seq);
    check_tokens(tokens);
    if (tokens.empty()) return;
    cancel_stream(s);  // the stream would continue a text that is no longer the sequence's
    s.attempts = 0;    // a new request, for the runtime's reasons: its failures count anew
    s.tokens.insert(s.tokens.end(), tokens.begin(), tokens.end());
    s.n_pending += static_cast<int32_t>(tokens.size());
}

void RemoteBackend::set_generating(SeqId seq, bool generating) {
    Sequence & s = seq_ref(seq);
    if (!generating) cancel_stream(s);
    if (generating != s.generating) s.attempts = 0;
    s.generating = generating;
}

void RemoteBackend::truncate(SeqId seq, int32_t n_keep) {
    Sequence & s = seq_ref(seq);
    if (n_keep < 0) throw Error(ErrorCode::invalid_argument, "remote backend: truncate to a negative length");
    if (static_cast<size_t>(n_keep) >= s.tokens.size()) return;
    cancel_stream(s);
    s.attempts = 0;
    const int32_t removed = static_cast<int32_t>(s.tokens.size()) - n_keep;
    s.tokens.resize(static_cast<size_t>(n_keep));
    s.n_pending = std::max(0, s.n_pending - removed);
}

void RemoteBackend::close(SeqId seq) {
    Sequence & s = seq_ref(seq);
    cancel_stream(s);
    s = Sequence{};
    free_ids_.push_back(seq);
}

void RemoteBackend::splice(SeqId, std::span<const SeqId>, JoinLayout, std::span<const int32_t>) {
    throw Error(ErrorCode::invalid_argument, "remote backend: no KV splice (join children as text)");
}

std::vector<float> RemoteBackend::score(SeqId, std::span<const Token>) {
    throw Error(ErrorCode::invalid_argument, "remote backend: score() is not available over the completions API");
}

bool RemoteBackend::live(SeqId seq) const {
    return seq >= 0 && static_cast<size_t>(seq) < seqs_.size() && seqs_[static_cast<size_t>(seq)].live;
}
int32_t RemoteBackend::length(SeqId seq) const { return static_cast<int32_t>(seq_ref(seq).tokens.size()); }
int32_t RemoteBackend::n_pending(SeqId seq) const { return seq_ref(seq).n_pending; }
const std::vector<Token> & RemoteBackend::tokens(SeqId seq) const { return seq_ref(seq).tokens; }

bool RemoteBackend::has_pending() const {
    for (const auto & s : seqs_) {
        if (!s.live) continue;
        // A failed sequence has its failure to report, then nothing: it never advances again.
        if (!s.failure.empty()) {
            if (!s.failure_reported) return true;
            continue;
        }
        if (s.n_pending > 0 || s.generating) return true;
    }
    return false;
}

KvUsage RemoteBackend::usage() const {
    KvUsage u;
    u.cells_total = static_cast<uint32_t>(options_.max_sequences) * static_cast<uint32_t>(options_.context);
    for (const auto & s : seqs_) {
        if (!s.live) continue;
        ++u.live_sequences;
        u.cells_used += static_cast<uint32_t>(s.tokens.size());
        u.pending_tokens += static_cast<uint32_t>(s.n_pending);
    }
    return u;
}

int RemoteBackend::replica_of(SeqId seq) const { return seq_ref(seq).replica; }

RemoteStats RemoteBackend::remote_stats() const {
    RemoteStats r;
    {
        std::lock_guard lock(mu_);
        r = rstats_;
    }
    r.replicas = router_.stats();
    return r;
}

void RemoteBackend::start_stream(SeqId, Sequence & s) {
    const int replica = router_.pick(s.tokens, s.replica);
    auto st = std::make_shared<Stream>();
    st->replica = replica;
    st->prompt = s.tokens;
    st->kind = s.sent_before ? RequestKind::resumed : s.forked ? RequestKind::forked : RequestKind::first;
    CompletionRequest req{.model = model_, .prompt = s.tokens,
                          .max_tokens = options_.context - static_cast<int32_t>(s.tokens.size()), .sampling = s.sampling};
    st->body = completion_request_json(req);
    count_pending_decoded(s);  // the server evaluates them (its prefix cache may skip the rest)
    s.replica = replica;
    s.sent_before = true;
    s.stream = st;
    {
        std::lock_guard lock(mu_);
        ++rstats_.requests;
        queue_.push_back(std::move(st));
    }
    work_cv_.notify_one();
}

void RemoteBackend::count_pending_decoded(Sequence & s) {
    const int64_t n = s.n_pending, end = static_cast<int64_t>(s.tokens.size());
    stats_.tokens += n;
    stats_.position_sum += n * (2 * end - n - 1) / 2;  // positions end - n .. end - 1
    result_.n_decoded += static_cast<int32_t>(n);
    s.n_pending = 0;
}

void RemoteBackend::push_sampled(Sequence & s, Token token) {
    // As in process, a sampled token is the sequence's pending input until the next one is sampled
    // (the server decoded it to sample that one): an end token the runtime truncates is never counted.
    count_pending_decoded(s);
    s.tokens.push_back(token);
    s.n_pending = 1;
}

bool RemoteBackend::take_from_stream(SeqId id, Sequence & s) {
    std::shared_ptr<Stream> st = s.stream;
    Token token = -1;
    float logprob = std::numeric_limits<float>::quiet_NaN();
    bool ended = false;
    {
        std::lock_guard lock(mu_);
        if (!st->tokens.empty()) {
            token = st->tokens.front();
            st->tokens.pop_front();
            if (!st->logprobs.empty()) {
                logprob = st->logprobs.front();
                st->logprobs.pop_front();
            }
        } else {
            ended = st->ended;
        }
    }
    if (token >= 0) {
        push_sampled(s, token);
        result_.sampled.push_back({.seq = id, .token = token, .logprob = s.sampling.logprobs || s.sampling.top_logprobs ? logprob : std::numeric_limits<float>::quiet_NaN(), .top = {}});
        return true;
    }
    if (!ended) return false;
    s.stream.reset();
    {
        std::lock_guard lock(mu_);
        PromptCacheStats & c = st->kind == RequestKind::first ? rstats_.first : st->kind == RequestKind::forked ? rstats_.forked : rstats_.resumed;
        ++c.requests;
        if (st->cached_tokens >= 0) {
            ++c.reported;
            c.prompt_tokens += static_cast<int64_t>(st->prompt.size());
            c.cached_tokens += st->cached_tokens;
        }
    }
    const HttpOutcome & o = st->outcome;
    std::string why_retry;
    if (o.kind == HttpOutcome::Kind::ok && st->finish_reason) {
        if (*st->finish_reason == "length") {
            s.attempts = 0;  // a request served to its end: a later failure starts a new count
            if (static_cast<int64_t>(s.tokens.size()) < options_.context) {
                s.failure = "remote: " + router_.url(st->replica) + " ended the completion at its length limit after " +
                            std::to_string(s.tokens.size()) + " tokens of context (this backend's context per sequence is " +
                            std::to_string(options_.context) + "; give the server's slots more context or lower it)";
            }
            return false;  // at the context: the next step reports the overflow
        }
        if (*st->finish_reason != "stop") {  // vLLM's and SGLang's "abort": the engine dropped it; try again
            why_retry = "the server ended the completion with finish_reason \"" + *st->finish_reason + "\"";
        } else {
            // "stop" with no stop strings sent: the model ended its text, as sampling its end token would.
            s.attempts = 0;
            push_sampled(s, end_of_generation_);
            result_.sampled.push_back({.seq = id, .token = end_of_generation_, .logprob = std::numeric_limits<float>::quiet_NaN(), .top = {}});
            return true;
        }
    }
    HttpOutcome why = o;
    if (!why_retry.empty()) {
        why.kind = HttpOutcome::Kind::http_status;
        why.status = 500;
        why.message = router_.url(st->replica) + ": " + why_retry;
    }
    if (why.kind == HttpOutcome::Kind::cancelled) return false;  // cancelled by us: nothing to do
    if (!why.retryable()) {
        s.failure = "remote: " + why.message;
        std::lock_guard lock(mu_);
        ++rstats_.failed_sequences;
        return false;
    }
    ++s.attempts;
    // A connection failure took the replica out: the re-send goes elsewhere at once if there is one.
    const bool elsewhere_now = why.kind == HttpOutcome::Kind::connection && router_.another_up(st->replica);
    std::lock_guard lock(mu_);
    ++rstats_.retries;
    if (s.attempts >= options_.max_attempts) {
        s.failure = std::string("remote: ") + (why.kind == HttpOutcome::Kind::connection ? "connection lost" : "request failed") +
                    " after " + std::to_string(s.attempts) + " tries (" + why.message + ")";
        ++rstats_.failed_sequences;
        return false;
    }
    double delay = std::min(8.0, options_.backoff_s * std::pow(2.0, s.attempts - 1));
    if (why.retry_after_s >= 0) delay = std::max(delay, std::min(why.retry_after_s, 60.0));
    if (elsewhere_now) delay = 0;
    s.retry_at = std::chrono::steady_clock::now() + std::chrono::microseconds(static_cast<int64_t>(delay * 1e6));
    return false;
}

const StepResult & RemoteBackend::step() {
    result_ = StepResult{};
    const auto now = std::chrono::steady_clock::now();
    bool streaming = false;
    for (size_t i = 0; i < seqs_.size(); ++i) {
        Sequence & s = seqs_[i];
        if (!s.live) continue;
        const SeqId id = static_cast<SeqId>(i);
        if (!s.failure.empty()) {
            if (!s.failure_reported) {
                result_.blocked.push_back({.seq = id, .reason = ErrorCode::remote_failed, .message = s.failure});
                s.failure_reported = true;
            }
            continue;
        }
        if (!s.generating) {
            // Input of a sequence that does not generate (a script, a waiting parent) needs no request
            // now: the next request of the sequence carries it.
            count_pending_decoded(s);
            continue;
        }
        if (s.stream) {
            take_from_stream(id, s);
            streaming |= s.stream != nullptr;
            continue;
        }
        if (now < s.retry_at) {
            streaming = true;
            continue;
        }
        if (static_cast<int64_t>(s.tokens.size()) >= options_.context) {
            result_.blocked.push_back({.seq = id, .reason = ErrorCode::context_overflow,
                                       .message = "remote backend: the sequence reached its context of " + std::to_string(options_.context) + " tokens"});
            continue;
        }
        start_stream(id, s);
        streaming |= s.stream != nullptr || !s.failure.empty();
    }
    if (result_.sampled.empty() && result_.blocked.empty() && streaming) {
        // Nothing ready: wait (bounded) for the first arrival, then take what came.
        std::unique_lock lock(mu_);
        arrival_cv_.wait_for(lock, std::chrono::microseconds(static_cast<int64_t>(options_.step_wait_s * 1e6)), [&] {
            for (const auto & s : seqs_) {
                if (s.live && s.stream && (!s.stream->tokens.empty() || s.stream->ended)) return true;
            }
            return false;
        });
        lock.unlock();
        for (size_t i = 0; i < seqs_.size(); ++i) {
            Sequence & s = seqs_[i];
            if (s.live && s.stream && s.failure.empty()) take_from_stream(static_cast<SeqId>(i), s);
        }
    }
    if (!result_.sampled.empty()) ++stats_.steps;
    result_.n_sequences = static_cast<int32_t>(result_.sampled.size());
    result_.n_decode_calls = result_.n_sequences > 0 ? 1 : 0;
    return result_;
}

void RemoteBackend::worker_loop() {
    for (;;) {
        std::shared_ptr<Stream> st;
        {
            std::unique_lock lock(mu_);
            work_cv_.wait(lock, [&] { return shutting_down_ || !queue_.empty(); });
            if (shutting_down_ && queue_.empty()) return;
            st = std::move(queue_.front());
            queue_.pop_front();
        }
        const std::string & url = router_.url(st->replica);
        HttpOutcome outcome;
        std::optional<std::string> finish;
        int64_t prompt_tokens = -1, cached = -1;
        if (st->cancelled) {
            outcome.kind = HttpOutcome::Kind::cancelled;
        } else {
            HttpStream http(url, options_.api_key, options_.timeouts);
            {
                std::lock_guard lock(st->http_mu);
                st->http = &http;
            }
            if (st->cancelled) http.cancel();  // cancelled between the check and the registration
            outcome = http.post_sse("/v1/completions", st->body, [&](std::string_view data) {
                CompletionChunk c = parse_completion_chunk(data);  // throws on garbage: a protocol outcome
                if (c.error) throw Error(ErrorCode::remote_failed, "the server reported an error in the stream: " + *c.error);
                if (c.prompt_tokens >= 0) prompt_tokens = c.prompt_tokens;
                if (c.cached_prompt_tokens >= 0) cached = c.cached_prompt_tokens;
                if (c.finish_reason) finish = c.finish_reason;
                if (c.done || c.text.empty()) return !st->cancelled.load();
                // The ids must spell the text; when they do not (a server that held back a partial
                // UTF-8 character reports only the last token's id), the text is tokenized here.
                bool ids_ok = c.ids_known;
                if (ids_ok) {
                    std::string spelled;
                    for (Token t : c.tokens) {
                        if (t < 0 || t >= vocabulary_->n_vocab()) throw Error(ErrorCode::remote_failed, "the server sent token id " + std::to_string(t) + ", not in this model's vocabulary (is it serving another model?)");
                        spelled += vocabulary_->piece(t);
                    }
                    ids_ok = spelled == c.text;
                }
                if (!ids_ok) {
                    c.tokens = vocabulary_->tokenize(c.text);  // throws unknown_character: a protocol outcome
                    c.logprobs.clear();
                }
                {
                    std::lock_guard lock(mu_);
                    if (!ids_ok) ++rstats_.retokenized_chunks;
                    for (size_t k = 0; k < c.tokens.size(); ++k) {
                        st->tokens.push_back(c.tokens[k]);
                        st->logprobs.push_back(k < c.logprobs.size() ? c.logprobs[k] : std::numeric_limits<float>::quiet_NaN());
                        st->received.push_back(c.tokens[k]);
                    }
                }
                arrival_cv_.notify_one();
                return !st->cancelled.load();
            });
            {
                std::lock_guard lock(st->http_mu);
                st->http = nullptr;
            }
        }
        if (finish && outcome.kind == HttpOutcome::Kind::connection) {
            outcome = HttpOutcome{};  // lost after the answer was complete (waiting for usage, [DONE]): served
        } else if (outcome.kind == HttpOutcome::Kind::ok && !finish) {
            outcome.kind = HttpOutcome::Kind::connection;  // a clean close mid-answer: the server went away
            outcome.message = url + ": the stream ended without a finish_reason";
        }
        const bool replica_failed = outcome.kind == HttpOutcome::Kind::connection;
        router_.finished(st->replica, replica_failed, outcome.message);
        if (prompt_tokens >= 0 || cached >= 0) router_.report_usage(st->replica, prompt_tokens, cached);
        // The router remembers prefixes the server took (answered 2xx), not ones it refused or never saw.
        if (outcome.status >= 200 && outcome.status < 300 &&
            (outcome.kind == HttpOutcome::Kind::ok || outcome.kind == HttpOutcome::Kind::cancelled)) {
            std::vector<Token> held = st->prompt;
            {
                std::lock_guard lock(mu_);
                held.insert(held.end(), st->received.begin(), st->received.end());
            }
            router_.remember(st->replica, held);
        }
        {
            std::lock_guard lock(mu_);
            st->outcome = outcome;
            st->finish_reason = finish;
            st->prompt_tokens = prompt_tokens;
            st->cached_tokens = cached;
            st->ended = true;
        }
        arrival_cv_.notify_one();
    }
}

}  // namespace forkjoin::remote
