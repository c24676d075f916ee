// The context-rot calibration: the clean rise of the probe by position, a high percentile of it per
// bucket, non-decreasing; threads the monitor acted on left out; too thin a calibration refused.
#include "runtime/calibration.h"

#include "base/error.h"

#include <gtest/gtest.h>

namespace forkjoin::runtime {
namespace {

// Probes every 64 tokens from 0 with these NLLs.
ThreadRecord thread_with(std::vector<double> nlls, std::optional<double> reference) {
    ThreadRecord t;
    for (size_t i = 0; i < nlls.size(); ++i) t.probes.push_back({static_cast<int64_t>(64 * i), nlls[i]});
    t.probe_reference = reference;
    return t;
}

void expect_refused(const std::vector<ThreadRecord> & threads, const std::string & words) {
    try {
        calibrate_context_rot(threads, 64);
        FAIL() << "calibrated";
    } catch (const Error & e) {
        EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
        EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
}

TEST(Calibration, ThresholdsFollowTheCleanRiseByPositionNonDecreasing) {
    std::vector<ThreadRecord> threads;
    // 21 threads with three probes and 21 with two. At position 0 thread i rises i/100 above its
    // reference; at 64 tokens i/10 above its first probe; at 128 tokens (only the first 21) i/20.
    for (int i = 0; i <= 20; ++i) threads.push_back(thread_with({2.0, 2.0 + i / 10.0, 2.0 + i / 20.0}, std::nullopt));
    for (int i = 0; i <= 20; ++i) threads.push_back(thread_with({2.0 + i / 100.0, 2.0 + i / 10.0}, 2.0));
    // 19 long ones: too few for the fourth bucket to count.
    for (int i = 0; i < 19; ++i) threads.push_back(thread_with({2.0, 2.0, 2.0, 9.0}, std::nullopt));
    // The monitor acted on this one: left out.
    ThreadRecord compacted = thread_with({2.0, 50.0}, std::nullopt);
    compacted.compactions = 1;
    threads.push_back(compacted);

    const ContextRotCalibration c = calibrate_context_rot(threads, 64);
    ASSERT_EQ(c.by_position.size(), 4u);
    EXPECT_EQ(c.by_position[0].threads, 61);
    EXPECT_EQ(c.by_position[1].threads, 61);
    EXPECT_EQ(c.by_position[2].threads, 40);
    EXPECT_EQ(c.by_position[3].threads, 19);
    // Bucket 1: 0, 0.1, ..., 2.0 twice and 19 zeros: of 61 values the 95th percentile is at rank 57.
    EXPECT_NEAR(c.by_position[1].p95, 1.9, 1e-9);
    EXPECT_NEAR(c.by_position[1].max, 2.0, 1e-9);
    // Bucket 2 (0, 0.05, ..., 1.0 and 19 zeros) lies lower, but a later position never allows less.
    EXPECT_LT(c.by_position[2].p95, c.by_position[1].p95);
    ASSERT_EQ(c.thresholds.by_position.size(), 3u);  // the thin fourth bucket keeps the third's
    EXPECT_EQ(c.thresholds.every, 64);
    EXPECT_NEAR(c.thresholds.by_position[0], std::max(ContextRotCalibration::kFloor, c.by_position[0].p95), 1e-9);
    EXPECT_NEAR(c.thresholds.by_position[1], 1.9, 1e-9);
    EXPECT_NEAR(c.thresholds.by_position[2], 1.9, 1e-9);
    // Looked up by position, with or without a reference; past the end, the last.
    EXPECT_EQ(c.thresholds.at(true, 0), c.thresholds.by_position[0]);
    EXPECT_EQ(c.thresholds.at(false, 100), 1.9);
    EXPECT_EQ(c.thresholds.at(false, 10000), 1.9);
    EXPECT_TRUE(c.thresholds.source.empty());
}

TEST(Calibration, FlatProbesHitTheFloorAndThinOrEmptyRunsAreRefused) {
    std::vector<ThreadRecord> flat(ContextRotCalibration::kMinThreads, thread_with({1.0, 1.0}, 1.0));
    const ContextRotCalibration c = calibrate_context_rot(flat, 64);
    ASSERT_EQ(c.thresholds.by_position.size(), 2u);
    EXPECT_EQ(c.thresholds.by_position[0], ContextRotCalibration::kFloor);
    EXPECT_EQ(c.thresholds.by_position[1], ContextRotCalibration::kFloor);

    // Without calibration the built-in thresholds hold at every position.
    const ContextRotThresholds built_in;
    EXPECT_EQ(built_in.at(true, 5000), ContextRotThresholds::kReference);
    EXPECT_EQ(built_in.at(false, 5000), ContextRotThresholds::kDrift);

    expect_refused(std::vector<ThreadRecord>(ContextRotCalibration::kMinThreads - 1, thread_with({1.0, 1.0}, 1.0)), "run more problems");
    expect_refused({ThreadRecord{}, ThreadRecord{}}, "context-rot");
    ThreadRecord compacted = thread_with({1.0, 5.0}, 1.0);
    compacted.compactions = 1;
    expect_refused({compacted}, "observing only");
}

}  // namespace
}  // namespace forkjoin::runtime
