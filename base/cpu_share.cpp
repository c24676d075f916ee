#include "base/cpu_share.h"

#include "base/error.h"

#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

namespace forkjoin {

int cores_available() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

int configured_threads() {
    const char * v = std::getenv("FORKJOIN_THREADS");
    if (v == nullptr || *v == '\0') return 0;
    char * end = nullptr;
    const long n = std::strtol(v, &end, 10);
    if (*end != '\0' || n < 0 || n > 4096) {
        throw Error(ErrorCode::invalid_argument,
                    std::string("FORKJOIN_THREADS must be a number of threads (0: adapt to free cores), got '") + v + "'");
    }
    return static_cast<int>(n);
}

int requested_threads(int requested) { return requested > 0 ? requested : configured_threads(); }

namespace {

// Busy ticks of all CPUs together (user + nice + system + irq + softirq + steal); false when
// /proc/stat is not there (not Linux, or a sandbox without /proc).
bool read_busy_ticks(uint64_t & busy) {
    FILE * f = std::fopen("/proc/stat", "r");
    if (f == nullptr) return false;
    unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    const int n = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system, &idle, &iowait,
                              &irq, &softirq, &steal);
    std::fclose(f);
    if (n < 4) return false;
    busy = user + nice + system + irq + softirq + steal;
    return true;
}

double own_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

CpuShare::CpuShare(int max_threads) : max_threads_(max_threads > 0 ? max_threads : cores_available()) {
    current_ = max_threads_;
}

int CpuShare::threads(std::chrono::milliseconds interval) {
    const auto now = std::chrono::steady_clock::now();
    if (have_sample_ && now - at_ < interval) return current_;
    uint64_t busy = 0;
    if (!read_busy_ticks(busy)) return current_;
    const double own = own_cpu_seconds();
    if (have_sample_) {
        static const double ticks_per_s = static_cast<double>(sysconf(_SC_CLK_TCK));
        const double wall = std::chrono::duration<double>(now - at_).count();
        const double all_cores = static_cast<double>(busy - busy_ticks_) / ticks_per_s / wall;
        const double ours = (own - own_cpu_s_) / wall;
        others_busy_ = std::max(0.0, all_cores - ours);
        // A core counts as taken when another process kept it busy more than half the interval.
        const int taken = static_cast<int>(std::lround(others_busy_));
        current_ = std::clamp(cores_available() - taken, 1, max_threads_);
    }
    busy_ticks_ = busy;
    own_cpu_s_ = own;
    at_ = now;
    have_sample_ = true;
    return current_;
}

int CpuShare::measure(std::chrono::milliseconds window) {
    threads(std::chrono::milliseconds(0));
    std::this_thread::sleep_for(window);
    return threads(std::chrono::milliseconds(0));
}

}  // namespace forkjoin
