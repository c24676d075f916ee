// A model's normal range for the context-rot probe (policies.h ContextRot), measured on its own clean
// threads. The probe restates what the start of the context holds, and on a clean thread its NLL rises
// with the thread's progress by itself (the shipped model: a median rise of about 2.5 nats per token
// over a 3-number trace, measured): restating the start is less expected the further a trace has gone.
// One threshold for every position either misses rot early (where the clean rise is small) or fires on
// clean threads late. A calibration runs the model where nothing distracts it, with the monitor
// observing only (thresholds it never crosses), and takes the rise above the clean start (the
// reference context when the plan has one, else the thread's first probe) at each position, in
// buckets of the probe interval: the threshold at a position is the 95th percentile of the clean rises
// there, made non-decreasing (a later position never allows less). `forkjoin calibrate context-rot`
// measures it and stores it beside the model (app/calibration_file.h); run, bench and serve use it.
//
// Pure computation over thread records; no state, safe from any thread.
#pragma once

#include "runtime/policies.h"
#include "runtime/thread.h"

#include <cstdint>
#include <vector>

namespace forkjoin::runtime {

// The clean rises measured in one bucket of positions.
struct RiseSpread {
    int threads = 0;         // threads with a probe there (each counted by its largest rise there)
    double p50 = 0, p95 = 0, max = 0;
};

struct ContextRotCalibration {
    static constexpr double kPercentile = 95;
    // Never below this: where clean probes barely move, one probe's noise must not act (a tenth of a
    // nat per token).
    static constexpr double kFloor = 0.1;
    // A bucket measured on fewer threads is too thin for a 95th percentile: it and every later one keep
    // the threshold of the last bucket that had enough.
    static constexpr int kMinThreads = 20;
    int every = 0;                        // bucket width: generated tokens since the clean start
    std::vector<RiseSpread> by_position;  // bucket b: from b*every up to (b+1)*every tokens
    ContextRotThresholds thresholds;      // by_position's thresholds (source left empty)
};

// The calibration from threads run with the monitor observing only, probing every `every` tokens.
// Threads the monitor compacted are left out (it should not have acted: their later probes measure
// another context). Throws Error(invalid_argument) when no thread carries a probe, or when the first
// bucket has fewer than kMinThreads threads (too few to calibrate: run more problems).
ContextRotCalibration calibrate_context_rot(const std::vector<ThreadRecord> & clean_threads, int every);

}  // namespace forkjoin::runtime
