#include "strategies/confident_sampling.h"

#include "runtime/policies.h"

#include <algorithm>
#include <cstdio>

namespace forkjoin::strategies {

ConfidentSampling::ConfidentSampling(const std::string & controller, int samples)
    : on_(runtime::has_confidence_policy(controller)), samples_(std::max(1, samples)) {}

int ConfidentSampling::first() const {
    return on_ ? std::min(samples_, runtime::ConfidencePruning::kWarmup) : samples_;
}

int ConfidentSampling::next(int started) const {
    const int left = std::max(0, samples_ - started);
    return on_ ? std::min(kWave, left) : left;
}

double ConfidentSampling::weight(const runtime::RequestResult & sample) const {
    if (!on_ || sample.threads.empty()) return 1.0;
    const runtime::Confidence & c = sample.threads[0].confidence;
    // Not measured (a backend without top log-probabilities, a scripted stream): one vote, as plain
    // self-consistency gives it.
    return c.tokens > 0 ? c.lowest_group : 1.0;
}

bool ConfidentSampling::settled(const tasks::Vote & vote, int ended, std::string & why) const {
    if (!on_ || ended <= first() || ended >= samples_ || vote.answer.empty() || vote.share < kConsensus) return false;
    char buf[200];
    std::snprintf(buf, sizeof buf, "consensus after %d of %d samples: %d gave the leading answer, %.0f%% of the confidence weight (>= %.0f%%)",
                  ended, samples_, vote.count, 100.0 * vote.share, 100.0 * kConsensus);
    why = buf;
    return true;
}

bool ConfidentSampling::stopped(const runtime::RequestResult & sample) {
    return sample.finished && sample.end_reason.starts_with(runtime::kLowConfidence);
}

std::vector<std::string> ConfidentSampling::notes(int stopped, int ended, const std::string & why) const {
    std::vector<std::string> out;
    if (stopped > 0) out.push_back(std::to_string(stopped) + " samples stopped for low confidence");
    if (!why.empty()) out.push_back(why + "; " + std::to_string(samples_ - ended) + " samples not needed");
    return out;
}

}  // namespace forkjoin::strategies
