#include "backends/remote/router.h"

#include "base/error.h"

namespace forkjoin::remote {

namespace {

// Chained hashes of a token sequence's whole 16-token blocks: hash k covers tokens [0, 16(k+1)).
std::vector<uint64_t> block_hashes(std::span<const Token> tokens) {
    std::vector<uint64_t> out;
    uint64_t h = 1469598103934665603ull;  // FNV-1a offset basis
    for (size_t i = 0; i + ReplicaRouter::kBlockTokens <= tokens.size(); i += ReplicaRouter::kBlockTokens) {
        for (size_t j = i; j < i + ReplicaRouter::kBlockTokens; ++j) {
            h ^= static_cast<uint32_t>(tokens[j]);
            h *= 1099511628211ull;
        }
        out.push_back(h);
    }
    return out;
}

}  // namespace

ReplicaRouter::ReplicaRouter(std::vector<std::string> urls, Routing routing, int32_t balance_slack, double down_for_s,
                             size_t memory_blocks)
    : urls_(std::move(urls)), routing_(routing), balance_slack_(balance_slack), down_for_(down_for_s),
      memory_blocks_(memory_blocks) {
    if (urls_.empty()) throw Error(ErrorCode::invalid_argument, "remote backend: no server URL given");
    for (const auto & u : urls_) {
        ReplicaStats r;
        r.url = u;
        replicas_.push_back(r);
    }
    down_until_.resize(urls_.size());
    memory_.resize(urls_.size());
}

void ReplicaRouter::remember(int replica, std::span<const Token> tokens) {
    if (routing_ != Routing::cache_aware) return;
    const auto hashes = block_hashes(tokens);
    std::lock_guard lock(mu_);
    PrefixMemory & m = memory_.at(static_cast<size_t>(replica));
    for (uint64_t h : hashes) {
        if (!m.blocks.insert(h).second) continue;
        m.order.push_back(h);
        if (m.order.size() > memory_blocks_) {
            m.blocks.erase(m.order.front());
            m.order.pop_front();
        }
    }
}

bool ReplicaRouter::is_up(size_t i, std::chrono::steady_clock::time_point now) const {
    return replicas_[i].up || now >= down_until_[i];
}

int ReplicaRouter::pick(std::span<const Token> prompt, int preferred) {
    const auto hashes = routing_ == Routing::cache_aware ? block_hashes(prompt) : std::vector<uint64_t>{};
    std::lock_guard lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    const size_t n = replicas_.size();
    int chosen = -1;
    if (routing_ == Routing::round_robin) {
        for (size_t k = 0; k < n && chosen < 0; ++k) {
            const size_t i = (next_ + k) % n;
            if (is_up(i, now)) {
                chosen = static_cast<int>(i);
                next_ = i + 1;
            }
        }
    } else {
        int least = -1;
        for (size_t k = 0; k < n; ++k) {
            const size_t i = (next_ + k) % n;  // ties rotate, so equal loads spread
            if (!is_up(i, now)) continue;
            if (least < 0 || replicas_[i].in_flight < replicas_[static_cast<size_t>(least)].in_flight) least = static_cast<int>(i);
        }
        chosen = least;
        // The replica holding the longest prefix of the prompt, else the sequence's previous one.
        size_t best_match = 0;
        for (size_t i = 0; i < n; ++i) {
            if (!is_up(i, now)) continue;
            size_t k = 0;
            while (k < hashes.size() && memory_[i].blocks.count(hashes[k])) ++k;
            if (k > best_match) {
                best_match = k;
                preferred = static_cast<int>(i);
            }
        }
        if (preferred >= 0 && static_cast<size_t>(preferred) < n && is_up(static_cast<size_t>(preferred), now) && least >= 0 &&
            replicas_[static_cast<size_t>(preferred)].in_flight < replicas_[static_cast<size_t>(least)].in_flight + balance_slack_) {
            chosen = preferred;
        }
        if (chosen >= 0 && chosen != preferred) next_ = static_cast<size_t>(chosen) + 1;
    }
    if (chosen < 0) {
        // Every replica is out: the one due back first is tried anyway (the caller's backoff paces the
        // tries), so a fleet of one keeps being retried instead of failing at its first error.
        chosen = 0;
        for (size_t i = 1; i < n; ++i) {
            if (down_until_[i] < down_until_[static_cast<size_t>(chosen)]) chosen = static_cast<int>(i);
        }
    }
    ReplicaStats & r = replicas_[static_cast<size_t>(chosen)];
    r.up = true;  // tried again after its time out
    ++r.in_flight;
    ++r.requests;
    return chosen;
}

void ReplicaRouter::finished(int replica, bool failed, const std::string & error) {
    std::lock_guard lock(mu_);
    ReplicaStats & r = replicas_.at(static_cast<size_t>(replica));
    --r.in_flight;
    if (failed) {
        ++r.failures;
        r.last_error = error;
        if (r.up) {
            r.up = false;
            down_until_[static_cast<size_t>(replica)] = std::chrono::steady_clock::now() +
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(down_for_);
        }
    }
}

bool ReplicaRouter::another_up(int replica) const {
    std::lock_guard lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    for (size_t i = 0; i < replicas_.size(); ++i) {
        if (static_cast<int>(i) != replica && is_up(i, now)) return true;
    }
    return false;
}

void ReplicaRouter::report_usage(int replica, int64_t prompt_tokens, int64_t cached_prompt_tokens) {
    std::lock_guard lock(mu_);
    ReplicaStats & r = replicas_.at(static_cast<size_t>(replica));
    if (prompt_tokens > 0) r.prompt_tokens += prompt_tokens;
    if (cached_prompt_tokens > 0) r.cached_prompt_tokens += cached_prompt_tokens;
}

std::vector<ReplicaStats> ReplicaRouter::stats() const {
    std::lock_guard lock(mu_);
    return replicas_;
}

}  // namespace forkjoin::remote
