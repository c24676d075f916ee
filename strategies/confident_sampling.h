// Self-consistency the way DeepConf runs it online (Fu et al. 2025, "Deep Think with Confidence"),
// for a sampled strategy whose controller runs the `confidence` policy (runtime/policies.h,
// ConfidencePruning, which stops low-confidence samples):
//   - the warm-up samples run first: the policy calibrates its stop threshold on them, as DeepConf's
//     warm-up does before its online phase; the rest then run in waves of kWave, each wave once the
//     one before ended (DeepConf generates its online traces one after another; a wave keeps some
//     parallelism, and a job's waves still batch with every other job's threads);
//   - each answer weighs its sample's lowest group confidence (confidence-weighted voting);
//   - after each sample past the warm-up ends, sampling stops if one answer holds kConsensus of the
//     weight given so far (DeepConf's adaptive sampling, tau = 0.95; the warm-up's answers count):
//     the samples still running are cancelled.
// Without the policy every sample starts at once, weighs 1, and all of them are waited for: plain
// self-consistency. The strategy keeps the bookkeeping of which samples ran, were stopped, or were
// cancelled, and says so in its notes.
//
// Threading: as the program that owns it (the engine's loop thread).
#pragma once

#include "runtime/controller.h"
#include "runtime/request.h"
#include "tasks/answer.h"

#include <string>
#include <vector>

namespace forkjoin::strategies {

class ConfidentSampling {
public:
    static constexpr double kConsensus = 0.95;
    static constexpr int kWave = 2;
    // `controller`: the job's policy names; `samples`: how many the strategy may draw (>= 1).
    ConfidentSampling(const std::string & controller, int samples);

    bool on() const { return on_; }
    int samples() const { return samples_; }
    // Samples to start first.
    int first() const;
    // When every sample started so far (`started` of them) ended and the vote has not settled: how
    // many to start now (the next wave; without the policy, all that are left).
    int next(int started) const;
    // Weight of a finished sample's answer: its root's lowest group confidence (on, and measured),
    // else 1.
    double weight(const runtime::RequestResult & sample) const;
    // After a sample ended, with `ended` of them ended so far and `vote` over their answers: whether
    // sampling may stop now (on, a sample past the warm-up ended, one answer at kConsensus or more,
    // samples left to save). `why` says so.
    bool settled(const tasks::Vote & vote, int ended, std::string & why) const;
    // Whether the policy stopped this sample (it ended runtime::kLowConfidence).
    static bool stopped(const runtime::RequestResult & sample);
    // The job's notes on its samples: how many were stopped, and, when the vote settled early (`why`
    // from settled()), how many of samples() were not needed once `ended` had ended.
    std::vector<std::string> notes(int stopped, int ended, const std::string & why) const;

private:
    bool on_ = false;
    int samples_ = 1;
};

}  // namespace forkjoin::strategies
