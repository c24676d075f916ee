// How many CPU threads a compute step should use: the cores this process may run on, less the
// ones other processes are using right now.
//
// Why: ggml's worker threads (OpenMP) spin while they wait for each other. Two processes that each
// run one thread per core on the same cores starve each other: measured on 2 cores, 16 Countdown
// problems took 4.2 s alone and 20-58 s each when two ran at once; OMP_WAIT_POLICY=passive avoids
// that (9.3 s each as a pair) but costs ~70% alone (7.0 s). Using only the free cores keeps the
// spin where it pays (alone) and removes it where it does not (shared): no thread waits for a core.
//
// Contract:
// - cores_available() never returns less than 1; it honours taskset / cgroup affinity masks.
// - configured_threads() is FORKJOIN_THREADS when set to a positive integer (an explicit choice,
//   e.g. ctest runs every decoding test with 1 thread so parallel tests never oversubscribe),
//   else 0 ("adapt"). A malformed value throws Error(invalid_argument) naming it.
// - CpuShare measures the other processes' CPU use from /proc/stat minus this process's own CPU
//   time. Where /proc/stat cannot be read it reports every core free (nothing is taken away).
// - Not thread-safe: one CpuShare per caller (a backend owns one).
#pragma once

#include <chrono>
#include <cstdint>

namespace forkjoin {

int cores_available();
int configured_threads();
// The thread count asked for: `requested` when > 0, else configured_threads(); 0 means "adapt".
int requested_threads(int requested);

class CpuShare {
public:
    // max_threads: the most threads to hand out (0: cores_available()).
    explicit CpuShare(int max_threads = 0);

    // Threads to use now: max_threads less the cores other processes kept busy since the last
    // measurement, at least 1. Re-measures at most once per `interval`; between measurements it
    // returns the last answer, so it is cheap to call every step.
    int threads(std::chrono::milliseconds interval = std::chrono::milliseconds(200));
    // Measures once over `window` (sleeping meanwhile) and returns threads(): for a caller whose
    // thread pool cannot resize as it runs (LibTorch).
    int measure(std::chrono::milliseconds window);

    // Cores the other processes used over the last measured interval (0 before the first).
    double others_busy() const { return others_busy_; }
    int max_threads() const { return max_threads_; }

private:
    int max_threads_;
    int current_;
    double others_busy_ = 0;
    bool have_sample_ = false;
    uint64_t busy_ticks_ = 0;          // all processes, all CPUs, from /proc/stat
    double own_cpu_s_ = 0;             // this process (CLOCK_PROCESS_CPUTIME_ID)
    std::chrono::steady_clock::time_point at_{};
};

}  // namespace forkjoin
