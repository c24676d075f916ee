#include "runtime/engine.h"

#include <chrono>
#include <cstdio>

namespace forkjoin::runtime {

namespace {
using Clock = std::chrono::steady_clock;
}

struct Engine::Call {
    RequestId id = -1;
    int index = 0;                   // in Job::calls
    int parent = -1;                 // job-wide id its root hangs under
    bool answering = false;
    std::vector<int> global;         // local thread id -> job-wide id
    bool finished = false;           // the runtime finished it
    bool delivered = false;          // its program has seen it finish
    double offset_s = 0;             // when it started, since the job started
};

struct Engine::Job {
    JobId id = 0;
    std::shared_ptr<Program> program;
    JobOptions options;
    Clock::time_point start = Clock::now();
    std::vector<std::unique_ptr<Call>> calls;
    std::vector<RequestResult> results;  // per finished call, in call order (kept for the tree)
    std::vector<int> result_call;        // index in `calls` of each entry of `results`
    int next_thread = 0;
    bool ended = false;  // finished: nothing more reaches the sink but the done event
    int64_t steps_at_start = 0, decoded_at_start = 0;
};

class Engine::Context final : public ProgramContext {
public:
    Context(Engine & engine, Job & job) : engine_(engine), job_(job) {}

    RequestId call(const std::string & prompt, RequestOptions options, int parent, bool answering) override {
        if (job_.ended) throw Error(ErrorCode::invalid_argument, "call() after the job finished");
        auto c = std::make_unique<Call>();
        Call * raw = c.get();
        raw->index = static_cast<int>(job_.calls.size());
        raw->parent = parent;
        raw->answering = answering;
        raw->offset_s = std::chrono::duration<double>(Clock::now() - job_.start).count();
        job_.calls.push_back(std::move(c));
        Engine * engine = &engine_;
        Job * job = &job_;
        EventSink inner = options.events;
        options.events = [engine, job, raw, inner](const Event & e) {
            if (inner) inner(e);
            engine->on_call_event(*job, *raw, e);
        };
        raw->id = engine_.runtime_.submit(prompt, options);
        engine_.calls_[raw->id] = {&job_, raw};
        return raw->id;
    }

    int root_of(RequestId call) const override {
        for (const auto & c : job_.calls) {
            if (c->id == call && !c->global.empty()) return c->global[0];
        }
        throw Error(ErrorCode::invalid_argument, "no call " + std::to_string(call) + " in this job");
    }

    void finish(JobResult result) override { engine_.finish_job(job_, std::move(result)); }

private:
    Engine & engine_;
    Job & job_;
};

Engine::Engine(Backend & backend, EngineOptions options)
    : backend_(backend), options_(std::move(options)), runtime_(backend, options_.limits) {
    if (options_.controller) runtime_.set_controller(options_.controller);
    thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
}

JobId Engine::submit(std::shared_ptr<Program> program, JobOptions options) {
    if (!program) throw Error(ErrorCode::invalid_argument, "submit: null program");
    auto job = std::make_unique<Job>();
    job->program = std::move(program);
    job->options = std::move(options);
    JobId id;
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_) throw Error(ErrorCode::overloaded, "the engine is shutting down");
        if (in_flight_ >= options_.max_jobs) {
            throw Error(ErrorCode::overloaded, "the engine holds " + std::to_string(in_flight_) + " jobs (max_jobs " +
                                                   std::to_string(options_.max_jobs) + "): retry later");
        }
        id = next_job_++;
        job->id = id;
        if (job->options.keep_result) results_[id] = nullptr;
        ++in_flight_;
        inbox_.push_back(std::move(job));
    }
    wake_.notify_all();
    return id;
}

void Engine::cancel(JobId job, const std::string & reason) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        cancels_.push_back({job, reason});
    }
    wake_.notify_all();
}

void Engine::cancel_all(const std::string & reason) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        cancels_.push_back({kAllJobs, reason});
    }
    wake_.notify_all();
}

int Engine::jobs_in_flight() const {
    std::lock_guard<std::mutex> lock(mu_);
    return in_flight_;
}

JobResult Engine::wait(JobId job) {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = results_.find(job);
    if (it == results_.end()) {
        throw Error(ErrorCode::invalid_argument, "wait: job " + std::to_string(job) + " was not submitted with keep_result (or was collected)");
    }
    done_cv_.wait(lock, [&] { return results_.at(job) != nullptr; });
    JobResult r = *results_.at(job);
    results_.erase(job);
    return r;
}

JobResult Engine::run(std::shared_ptr<Program> program, JobOptions options) {
    options.keep_result = true;
    return wait(submit(std::move(program), std::move(options)));
}

EngineStats Engine::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
}

void Engine::publish_stats() {
    const RuntimeStats rs = runtime_.stats();
    const KvUsage kv = backend_.usage();
    std::lock_guard<std::mutex> lock(mu_);
    stats_.runtime = rs;
    stats_.kv = kv;
    stats_.jobs_running = static_cast<int>(jobs_.size());
}

void Engine::on_call_event(Job & job, Call & call, const Event & e) {
    Event out = e;
    if (e.kind == EventKind::thread_queued) {
        if (call.global.size() <= static_cast<size_t>(e.thread)) call.global.resize(static_cast<size_t>(e.thread) + 1, -1);
        call.global[static_cast<size_t>(e.thread)] = job.next_thread++;
    }
    auto global = [&](int local) {
        if (local < 0) return call.parent;
        return static_cast<size_t>(local) < call.global.size() ? call.global[static_cast<size_t>(local)] : -1;
    };
    const bool root = e.thread == 0;
    out.thread = global(e.thread);
    out.parent = root ? call.parent : global(e.parent);
    for (int & c : out.children) c = global(c);
    out.t_s += call.offset_s;
    if (e.kind == EventKind::thread_ended && e.state == ThreadState::failed) {
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.thread_failures;
    }
    if (e.kind == EventKind::finished) {
        call.finished = true;
        finished_calls_.push_back(call.id);
    }
    if (job.options.events && !job.ended) {
        JobEvent je;
        je.job = job.id;
        je.event = std::move(out);
        je.answering = call.answering && root;
        job.options.events(je);
    }
}

void Engine::take_inbox() {
    std::deque<std::unique_ptr<Job>> jobs;
    std::deque<std::pair<JobId, std::string>> cancels;
    {
        std::lock_guard<std::mutex> lock(mu_);
        jobs.swap(inbox_);
        cancels.swap(cancels_);
    }
    for (auto & j : jobs) {
        Job & job = *j;
        jobs_[job.id] = std::move(j);
        start_job(job);
    }
    for (const auto & [id, reason] : cancels) {
        if (id == kAllJobs) {
            for (auto & [jid, job] : jobs_) {
                if (!job->ended) fail_job(*job, reason, "cancelled");
            }
            continue;
        }
        auto it = jobs_.find(id);
        if (it != jobs_.end() && !it->second->ended) fail_job(*it->second, reason, "cancelled");
    }
}

void Engine::start_job(Job & job) {
    const RuntimeStats rs = runtime_.stats();
    job.steps_at_start = rs.decode_steps;
    job.decoded_at_start = rs.decoded_tokens;
    Context ctx(*this, job);
    try {
        job.program->start(ctx);
        if (!job.ended && job.calls.empty()) fail_job(job, "the program started nothing", "error");
    } catch (const std::exception & e) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            ++stats_.program_errors;
        }
        if (!job.ended) fail_job(job, e.what(), "error");
    }
}

void Engine::fail_job(Job & job, const std::string & why, const char * finish_reason) {
    JobResult r;
    r.ok = false;
    r.error = why;
    r.finish_reason = finish_reason;
    finish_job(job, std::move(r));
}

void Engine::finish_job(Job & job, JobResult result) {
    if (job.ended) return;
    // Calls still running are not needed any more. Their threads' ends are still events: a client
    // watching the stream sees every thread it saw start end (a cancelled job's included).
    for (auto & c : job.calls) {
        if (!c->finished && c->id >= 0) runtime_.cancel(c->id, result.finish_reason == "stop" ? "job finished" : result.finish_reason);
    }
    job.ended = true;  // only now: cancelling reaches no program, so nothing re-enters here meanwhile
    // Collect every call's final record its program has not seen (cancelling just finalized the rest).
    for (size_t i = 0; i < job.calls.size(); ++i) {
        Call & c = *job.calls[i];
        if (!c.delivered && c.id >= 0 && runtime_.finished(c.id)) {
            job.results.push_back(runtime_.result(c.id));
            job.result_call.push_back(static_cast<int>(i));
        }
    }
    // One tree, job-wide ids.
    std::vector<ThreadRecord> tree(static_cast<size_t>(job.next_thread));
    Metrics & m = result.metrics;
    const int64_t sequential = m.sequential_tokens;
    m = Metrics{};
    for (size_t k = 0; k < job.results.size(); ++k) {
        const Call & c = *job.calls[static_cast<size_t>(job.result_call[k])];
        const RequestResult & rr = job.results[k];
        auto global = [&](int local) {
            if (local < 0) return c.parent;
            return static_cast<size_t>(local) < c.global.size() ? c.global[static_cast<size_t>(local)] : -1;
        };
        for (const ThreadRecord & t : rr.threads) {
            const int g = global(t.id);
            if (g < 0 || static_cast<size_t>(g) >= tree.size()) continue;
            ThreadRecord out = t;
            out.id = g;
            out.parent = t.parent < 0 ? c.parent : global(t.parent);
            for (auto & spawn : out.spawns) {
                for (int & child : spawn) child = global(child);
            }
            // Times from the job's start, not the call's.
            out.start_s += c.offset_s;
            out.end_s += c.offset_s;
            tree[static_cast<size_t>(g)] = std::move(out);
        }
        m.total_tokens += rr.metrics.total_tokens;
        m.generated_tokens += rr.metrics.generated_tokens;
        m.max_context_tokens = std::max(m.max_context_tokens, rr.metrics.max_context_tokens);
        m.threads += rr.metrics.threads;
        if (k == 0) m.prompt_tokens = rr.metrics.prompt_tokens;
    }
    m.sequential_tokens = sequential;
    const RuntimeStats rs = runtime_.stats();
    m.decode_steps = rs.decode_steps - job.steps_at_start;
    m.mean_batch = m.decode_steps ? static_cast<double>(rs.decoded_tokens - job.decoded_at_start) / static_cast<double>(m.decode_steps) : 0.0;
    m.wall_s = std::chrono::duration<double>(Clock::now() - job.start).count();
    result.threads = std::move(tree);
    for (size_t k = 0; k < job.results.size(); ++k) runtime_.forget(job.calls[static_cast<size_t>(job.result_call[k])]->id);
    for (auto & c : job.calls) calls_.erase(c->id);

    auto shared = std::make_shared<const JobResult>(std::move(result));
    // The sink's last call comes before wait() can return: a sink whose state lives with the waiter
    // (on its stack) is never called after the waiter moved on.
    if (job.options.events) {
        JobEvent je;
        je.job = job.id;
        je.done = true;
        je.result = shared;
        job.options.events(je);
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        --in_flight_;
        ++stats_.jobs_finished;
        stats_.jobs_failed += !shared->ok;
        stats_.jobs_cancelled += shared->finish_reason == "cancelled";
        stats_.jobs_timed_out += shared->finish_reason == "timeout";
        auto it = results_.find(job.id);
        if (it != results_.end()) it->second = shared;
    }
    done_cv_.notify_all();
}

void Engine::after_step() {
    // Calls that finished: their programs decide what comes next.
    while (!finished_calls_.empty()) {
        const RequestId id = finished_calls_.front();
        finished_calls_.pop_front();
        auto it = calls_.find(id);
        if (it == calls_.end()) continue;
        Job & job = *it->second.first;
        if (job.ended) continue;
        Call & call = *it->second.second;
        job.results.push_back(runtime_.result(id));
        job.result_call.push_back(call.index);
        call.delivered = true;
        Context ctx(*this, job);
        try {
            job.program->on_finished(ctx, id, job.results.back());
            if (!job.ended) {
                bool live = false;
                for (const auto & c : job.calls) live |= !c->delivered;
                if (!live) fail_job(job, "the program ended without an answer", "error");
            }
        } catch (const std::exception & e) {
            {
                std::lock_guard<std::mutex> lock(mu_);
                ++stats_.program_errors;
            }
            if (!job.ended) fail_job(job, e.what(), "error");
        }
    }
    // Job deadlines.
    const auto now = Clock::now();
    for (auto & [id, job] : jobs_) {
        if (!job->ended && job->options.timeout_s > 0 &&
            std::chrono::duration<double>(now - job->start).count() > job->options.timeout_s) {
            fail_job(*job, "timeout (" + std::to_string(job->options.timeout_s) + " s)", "timeout");
        }
    }
    for (auto it = jobs_.begin(); it != jobs_.end();) {
        it = it->second->ended ? jobs_.erase(it) : std::next(it);
    }
}

void Engine::loop() {
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mu_);
            // Sleep while nothing is in flight; a submit, a cancel or the end wakes the loop.
            wake_.wait(lock, [&] { return stop_ || !inbox_.empty() || !cancels_.empty() || !jobs_.empty(); });
            if (stop_) break;
        }
        take_inbox();
        after_step();  // jobs that failed at start, cancellations
        if (!jobs_.empty()) {
            try {
                runtime_.step();
            } catch (const std::exception & e) {
                // Nothing should escape the runtime's step; if something does, the jobs in flight
                // cannot be trusted, but the engine and the jobs after them can go on.
                std::fprintf(stderr, "forkjoin: runtime step failed: %s; failing %zu jobs\n", e.what(), jobs_.size());
                for (auto & [id, job] : jobs_) {
                    if (!job->ended) fail_job(*job, std::string("runtime failure: ") + e.what(), "error");
                }
            }
            after_step();
        }
        publish_stats();
    }
    for (auto & [id, job] : jobs_) {
        if (!job->ended) fail_job(*job, "shutdown", "cancelled");
    }
    jobs_.clear();
    publish_stats();
}

}  // namespace forkjoin::runtime
