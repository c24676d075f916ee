// CpuShare: the thread count follows the cores other processes keep busy.
#include "base/cpu_share.h"
#include "base/error.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

using namespace forkjoin;

TEST(CpuShare, ConfiguredThreadsComeFromTheEnvironmentOrAreRefusedClearly) {
    const char * saved = std::getenv("FORKJOIN_THREADS");
    const std::string keep = saved ? saved : "";
    setenv("FORKJOIN_THREADS", "3", 1);
    EXPECT_EQ(configured_threads(), 3);
    setenv("FORKJOIN_THREADS", "", 1);
    EXPECT_EQ(configured_threads(), 0);
    setenv("FORKJOIN_THREADS", "two", 1);
    try {
        configured_threads();
        FAIL() << "a malformed FORKJOIN_THREADS must be refused";
    } catch (const Error & e) {
        EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
        EXPECT_NE(std::string(e.what()).find("'two'"), std::string::npos) << e.what();
    }
    if (saved) setenv("FORKJOIN_THREADS", keep.c_str(), 1);
    else unsetenv("FORKJOIN_THREADS");
}

// Another process that spins on a core takes that core away from us; our own busy threads do not.
TEST(CpuShare, AnotherBusyProcessTakesACore) {
    const int cores = cores_available();
    ASSERT_GE(cores, 1);
    CpuShare share(cores);
    EXPECT_EQ(share.threads(), cores);  // first call: nothing measured yet

    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        volatile uint64_t x = 0;
        for (;;) x = x + 1;  // killed by the parent
    }
    const int with_spinner = share.measure(std::chrono::milliseconds(400));
    const double busy = share.others_busy();
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    EXPECT_GE(busy, 0.5) << "the spinning child kept a core busy";
    if (cores >= 2) {
        EXPECT_LT(with_spinner, cores);
    }
    EXPECT_GE(with_spinner, 1);

    // Our own spinning does not count as someone else's.
    CpuShare own(cores);
    own.threads();
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(400);
    volatile uint64_t y = 0;
    while (std::chrono::steady_clock::now() < until) y = y + 1;
    own.threads(std::chrono::milliseconds(0));
    EXPECT_LT(own.others_busy(), busy);
}
