// Programs: a strategy as a per-request state machine on the shared runtime.
//
// A client's request (a "job") is one Program. It starts thread trees ("calls") on the runtime and
// reacts when each finishes: a native request is one call; self-consistency starts N calls at once
// and votes; plan-execute starts a planner, then one worker per item, then a summarizer. Every call
// of every job rides the same decode batches, so a plan-execute job's workers batch with another
// job's native children.
//
// The engine (runtime/engine.h) drives programs on its loop thread: start() once, on_finished()
// after each call ends. A program ends its job with ProgramContext::finish(); an exception from
// either call fails its job alone (the engine cancels the job's calls).
//
// Threads of all calls form one tree per job: a call's threads get job-wide ids in the order they
// appear, and a call's root hangs under the thread its program names (`parent`), -1 for a new root.
#pragma once

#include "runtime/request.h"

#include <string>
#include <vector>

namespace forkjoin::runtime {

using JobId = int64_t;

// What a job produced: the ordinary answer a client reads, plus the tree it came from.
struct JobResult {
    bool ok = false;
    std::string text;        // what the client sees as the completion: the answering call's generation
    std::string answer;      // the strategy's answer (extracted, voted or verified); may equal text
    std::string error;       // when not ok: why (a limit, a failure, no answer)
    std::string finish_reason = "stop";  // OpenAI's: stop, length (a token limit), timeout, cancelled, error
    std::vector<ThreadRecord> threads;   // the job's tree; ids job-wide, [0] the first call's root
    Metrics metrics;         // all calls together; sequential_tokens: the program's dependency chain
    std::string strategy;    // what ran, by its true name (e.g. "best-of-n", "self-consistency")
    std::vector<std::string> notes;      // the program's own decisions (plan-execute: order, reorder, merge)
};

class ProgramContext {
public:
    virtual ~ProgramContext() = default;
    // Starts a thread tree for this job; its root hangs under job thread `parent` (-1: none).
    // `answering`: this call's root text streams to the client as the completion.
    virtual RequestId call(const std::string & prompt, RequestOptions options, int parent = -1, bool answering = false) = 0;
    // The job-wide id of a call's root (valid from call() on).
    virtual int root_of(RequestId call) const = 0;
    // Ends the job. Threads, metrics.total/generated/max_context/threads/decode steps are filled by
    // the engine from the calls; the program sets ok, text, answer, error, finish_reason,
    // metrics.sequential_tokens and strategy.
    virtual void finish(JobResult result) = 0;
};

class Program {
public:
    virtual ~Program() = default;
    virtual void start(ProgramContext & ctx) = 0;
    virtual void on_finished(ProgramContext & ctx, RequestId call, const RequestResult & result) = 0;
};

}  // namespace forkjoin::runtime
