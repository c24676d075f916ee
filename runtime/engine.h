// The engine: one runtime for the life of the process, driven by its own loop thread, that jobs of
// any strategy enter and leave at any moment.
//
// submit() hands a Program (runtime/program.h) to the loop; its calls join the runtime's requests
// and share every decode batch with every other job's. Each job's events (its threads queued,
// started, spawning, joining, ending, their text as it is generated, then the job's result) go to
// the sink it was submitted with, in order, on the loop thread. The loop sleeps on a condition
// variable while there is nothing to decode (no spinning).
//
// Thread-safety: submit(), cancel(), stats() and wait() may be called from any thread at any time.
// Sinks run on the loop thread: they must be quick and must not call submit/cancel/wait (queue the
// event and return). Programs run on the loop thread too.
//
// Failure: a program that throws fails its own job (its calls cancelled); a decode failure fails the
// threads it hit (runtime/scheduler.h); an exception that escapes the runtime's step fails every job
// in flight and the engine goes on with new ones. Nothing takes the process down.
//
// Ownership: the engine borrows the backend (it must outlive the engine) and owns the programs it
// was given until their jobs end. Destroying the engine cancels what is in flight ("shutdown").
#pragma once

#include "backends/backend.h"
#include "runtime/controller.h"
#include "runtime/program.h"
#include "runtime/scheduler.h"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace forkjoin::runtime {

struct EngineOptions {
    Limits limits;                           // defaults for every call; max_threads bounds them all
    int max_jobs = 256;                      // jobs in flight; submit() past it throws overloaded
    std::shared_ptr<Controller> controller;  // null: DefaultController
};

struct JobEvent {
    JobId job = 0;
    bool done = false;          // the last event of a job: `result` is set
    Event event;                // !done: a runtime event, thread ids job-wide
    bool answering = false;     // !done: the event belongs to the answering call's root (its text
                                // is the completion as it streams)
    std::shared_ptr<const JobResult> result;
};
using JobSink = std::function<void(const JobEvent &)>;

struct JobOptions {
    JobSink events;             // may be empty
    double timeout_s = 0;       // wall clock for the whole job (0: none): past it the job is cancelled
    bool keep_result = false;   // keep the result until wait() collects it (run() sets it)
};

struct EngineStats {
    RuntimeStats runtime;
    KvUsage kv;
    int jobs_running = 0;
    int64_t jobs_finished = 0;  // ok or not
    int64_t jobs_failed = 0;    // finished without an answer (ok false), cancelled included
    int64_t jobs_cancelled = 0;
    int64_t jobs_timed_out = 0;
    int64_t program_errors = 0; // programs that threw
    int64_t thread_failures = 0;  // threads ended failed (decode, limits, malformed markup, ...)
};

class Engine {
public:
    Engine(Backend & backend, EngineOptions options = {});
    ~Engine();
    Engine(const Engine &) = delete;
    Engine & operator=(const Engine &) = delete;

    // Throws Error(overloaded) when max_jobs are in flight, invalid_argument for a null program.
    JobId submit(std::shared_ptr<Program> program, JobOptions options = {});
    // Ends the job (its calls cancelled, sequences freed); its sink gets the result with
    // finish_reason "cancelled". No effect on a finished or unknown job.
    void cancel(JobId job, const std::string & reason = "cancelled");
    // Cancels every job in flight now (submitted before the call), as cancel() does each.
    void cancel_all(const std::string & reason);
    // Jobs submitted and not yet ended.
    int jobs_in_flight() const;
    // Blocks until the job ends and returns its result, once. Only for jobs submitted with
    // keep_result; any other job throws invalid_argument. The job's sink has had its last call (the
    // done event) by then.
    JobResult wait(JobId job);
    // submit + wait.
    JobResult run(std::shared_ptr<Program> program, JobOptions options = {});
    EngineStats stats() const;

private:
    struct Call;
    struct Job;
    class Context;
    void loop();
    void take_inbox();
    void start_job(Job & job);
    void after_step();
    void finish_job(Job & job, JobResult result);
    void fail_job(Job & job, const std::string & why, const char * finish_reason);
    void on_call_event(Job & job, Call & call, const Event & e);
    void publish_stats();

    Backend & backend_;
    EngineOptions options_;
    Runtime runtime_;

    mutable std::mutex mu_;             // guards everything below up to the loop's own state
    std::condition_variable wake_;      // the loop: inbox or stop
    std::condition_variable done_cv_;   // wait(): a job ended
    std::deque<std::unique_ptr<Job>> inbox_;
    std::deque<std::pair<JobId, std::string>> cancels_;
    std::map<JobId, std::shared_ptr<const JobResult>> results_;  // keep_result jobs: null until ended
    EngineStats stats_;
    int in_flight_ = 0;
    JobId next_job_ = 1;
    bool stop_ = false;

    static constexpr JobId kAllJobs = 0;  // in cancels_: every job taken in by then

    // The loop's own state (loop thread only).
    std::map<JobId, std::unique_ptr<Job>> jobs_;
    std::map<RequestId, std::pair<Job *, Call *>> calls_;
    std::deque<RequestId> finished_calls_;

    std::thread thread_;  // last: starts after everything above exists
};

}  // namespace forkjoin::runtime
