// Which replica of a remote fleet serves a request.
//
// Cache-aware routing (after SGLang's router): the router remembers, per replica, the token prefixes it
// sent there (as chained hashes of 16-token blocks, the last `memory_blocks` kept), and a request goes
// to the replica holding the longest prefix of its prompt, since that replica's prefix cache can skip
// it: a forked child lands where its parent's context is, a thread resuming after a join where its
// text so far is, fresh children where their shared prompt head is. With no prefix held anywhere, the
// sequence's previous replica (`preferred`), else the least loaded. When the chosen replica is busier
// than the least loaded one by `balance_slack` requests in flight, load wins over the cache.
// Round-robin (the comparison the benchmark measures) ignores both. A replica that failed is out
// until `down_for_s` has passed (unless every replica is out); it is then tried again.
//
// Thread-safe: the runtime's loop picks and the stream workers report outcomes concurrently.
#pragma once

#include "backends/backend.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

namespace forkjoin::remote {

enum class Routing { cache_aware, round_robin };

struct ReplicaStats {
    std::string url;
    bool up = true;
    int32_t in_flight = 0;
    int64_t requests = 0;             // requests sent
    int64_t failures = 0;             // connection losses, refusals, 5xx, 429, stalls
    int64_t prompt_tokens = 0;        // over the responses that reported usage
    int64_t cached_prompt_tokens = 0; // of which the server took from its prefix cache
    std::string last_error;
};

class ReplicaRouter {
public:
    static constexpr size_t kBlockTokens = 16;
    ReplicaRouter(std::vector<std::string> urls, Routing routing, int32_t balance_slack = 4, double down_for_s = 2.0,
                  size_t memory_blocks = 1 << 20);

    size_t size() const { return replicas_.size(); }
    const std::string & url(int replica) const { return urls_[static_cast<size_t>(replica)]; }

    // The replica for a request with this prompt whose sequence last used `preferred` (-1: none); when
    // every replica is out, the one due back first. Counts the request as in flight there.
    int pick(std::span<const Token> prompt, int preferred);
    // `tokens` (a prompt and what was generated after it) now sit in `replica`'s prefix cache.
    void remember(int replica, std::span<const Token> tokens);
    // A request to `replica` ended; `failed`: the replica did not serve it (it is then marked down).
    void finished(int replica, bool failed, const std::string & error = {});
    // Whether a replica other than `replica` is up now.
    bool another_up(int replica) const;
    void report_usage(int replica, int64_t prompt_tokens, int64_t cached_prompt_tokens);
    std::vector<ReplicaStats> stats() const;

private:
    bool is_up(size_t i, std::chrono::steady_clock::time_point now) const;
    struct PrefixMemory {
        std::unordered_set<uint64_t> blocks;  // chained hashes of the prefixes sent
        std::deque<uint64_t> order;           // oldest first, for eviction
    };

    const std::vector<std::string> urls_;
    const Routing routing_;
    const int32_t balance_slack_;
    const std::chrono::duration<double> down_for_;
    mutable std::mutex mu_;
    std::vector<ReplicaStats> replicas_;
    std::vector<std::chrono::steady_clock::time_point> down_until_;
    std::vector<PrefixMemory> memory_;
    const size_t memory_blocks_;
    size_t next_ = 0;  // round-robin cursor
};

}  // namespace forkjoin::remote
