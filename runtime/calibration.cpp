#include "runtime/calibration.h"

#include "base/error.h"

#include <algorithm>

namespace forkjoin::runtime {

ContextRotCalibration calibrate_context_rot(const std::vector<ThreadRecord> & clean_threads, int every) {
    if (every <= 0) throw Error(ErrorCode::invalid_argument, "calibrate_context_rot: the probe interval must be positive");
    std::vector<std::vector<double>> rises;  // per bucket, one value per thread (its largest there)
    bool any = false;
    for (const auto & t : clean_threads) {
        if (t.probes.empty()) continue;
        any = true;
        if (t.compactions > 0) continue;
        const double start = t.probe_reference.value_or(t.probes.front().nll);
        std::vector<std::optional<double>> largest;
        for (const auto & p : t.probes) {
            const size_t bucket = static_cast<size_t>(std::max<int64_t>(0, p.generated - t.probes.front().generated) / every);
            if (largest.size() <= bucket) largest.resize(bucket + 1);
            largest[bucket] = std::max(largest[bucket].value_or(p.nll - start), p.nll - start);
        }
        if (rises.size() < largest.size()) rises.resize(largest.size());
        for (size_t b = 0; b < largest.size(); ++b) {
            if (largest[b]) rises[b].push_back(*largest[b]);
        }
    }
    if (!any) {
        throw Error(ErrorCode::invalid_argument,
                    "no thread carries a context-rot probe: run the calibration with the context-rot policy (and threads long enough to probe)");
    }
    ContextRotCalibration c;
    c.every = every;
    c.thresholds.every = every;
    for (const auto & values : rises) {
        RiseSpread s;
        s.threads = static_cast<int>(values.size());
        if (!values.empty()) {
            s.p50 = percentile(values, 50);
            s.p95 = percentile(values, ContextRotCalibration::kPercentile);
            s.max = *std::max_element(values.begin(), values.end());
        }
        c.by_position.push_back(s);
    }
    double envelope = ContextRotCalibration::kFloor;
    for (const auto & s : c.by_position) {
        if (s.threads < ContextRotCalibration::kMinThreads) break;  // this one and later ones: the last threshold
        envelope = std::max(envelope, s.p95);
        c.thresholds.by_position.push_back(envelope);
    }
    if (c.by_position.empty()) {
        throw Error(ErrorCode::invalid_argument, "every probed thread was compacted: the calibration must run with the monitor observing only");
    }
    if (c.thresholds.by_position.empty()) {
        throw Error(ErrorCode::invalid_argument, "too few probed threads to calibrate (" + std::to_string(c.by_position.front().threads) +
                                                     " at the start, at least " + std::to_string(ContextRotCalibration::kMinThreads) +
                                                     "): run more problems");
    }
    return c;
}

}  // namespace forkjoin::runtime
