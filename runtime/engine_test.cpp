// The runtime as a service on a real llama.cpp model (the 1M test model): requests of different
// dialects and limits in one runtime, decode failures contained to their request, the controller
// seam, and the engine's thread-safe front (submit and cancel from other threads, events, sleep).
#include "backends/llama/backend.h"
#include "dialects/apr.h"
#include "runtime/engine.h"
#include "runtime/policies.h"
#include "runtime/scheduler.h"
#include "runtime/test_model.h"
#include "runtime/test_scripts.h"

#include <gtest/gtest.h>

#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

using namespace forkjoin;
using namespace forkjoin::runtime;

namespace {

using test_support::tiny_model;

// F32 cells: a sequence's logits then differ between batch shapes by summation order only, far
// below what could flip a greedy choice of the random test model (checked by the tests below).
llama::BackendOptions backend_options() {
    llama::BackendOptions o;
    o.n_ctx = 8192;
    o.n_seq_max = 32;
    o.kv_f32 = true;
    o.n_threads = 1;  // bit-reproducible between the runs a test compares
    return o;
}

// APR markup: a root that spawns two sub searches, whose children say they found nothing.
using test_support::kAprRoot;
using test_support::node_of;
using test_support::spawn_text;
std::optional<std::string> apr_script(const ThreadRecord & t) {
    if (t.depth == 1) {
        if (t.text.find("No solution") != std::string::npos) return std::nullopt;
        return std::string("Exploring Operation: 6+6=12\nNo solution found.\n");
    }
    if (t.text.find("<Sub Searches>") != std::string::npos) {
        if (t.text.find("Done") != std::string::npos) return std::nullopt;
        return std::string("Done\n");
    }
    return std::string("Generated Node #0,0: 12:[6, 6] Operation: 4+2=6\nGenerated Node #0,1: 12:[2, 2] Operation: 6-4=2\n"
                       "<Calling Sub Searches>\n<Start Sub Search 0 at level 1> Moving to Node #0,0\n"
                       "<Start Sub Search 1 at level 1> Moving to Node #0,1\n<End Calling Sub Searches>\n");
}

// Greedy, and never ending on its own: the random test model's text runs to the budget.
// The scripted APR spawner above, in the apr dialect.
RequestOptions apr_spawner() {
    static const auto apr = std::shared_ptr<const dialects::Dialect>(dialects::make_apr_dialect());
    RequestOptions o;
    o.script = apr_script;
    o.dialect = apr;
    return o;
}

RequestOptions greedy(int budget) {
    RequestOptions o;
    o.sampling.ignore_eos = true;
    Limits l;
    l.thread_token_budget = budget;
    o.limits = l;
    return o;
}

// The simplest program: one call, its root's generation is the answer.
class OneCall final : public Program {
public:
    OneCall(std::string prompt, RequestOptions options) : prompt_(std::move(prompt)), options_(std::move(options)) {}
    void start(ProgramContext & ctx) override { ctx.call(prompt_, options_, -1, true); }
    void on_finished(ProgramContext & ctx, RequestId, const RequestResult & r) override {
        JobResult j;
        j.ok = r.ok;
        j.text = r.text.substr(std::min(r.text.size(), prompt_.size()));
        j.error = r.end_reason;
        j.finish_reason = r.ok ? "stop" : "length";
        j.metrics.sequential_tokens = r.metrics.sequential_tokens;
        ctx.finish(std::move(j));
    }

private:
    std::string prompt_;
    RequestOptions options_;
};

class Throws final : public Program {
public:
    void start(ProgramContext & ctx) override { ctx.call("a question: ", greedy(4)); }
    void on_finished(ProgramContext &, RequestId, const RequestResult &) override {
        throw Error(ErrorCode::invalid_argument, "this program has a bug");
    }
};

}  // namespace

namespace {
// A policy (runtime/policies.h) over the default: tests change one decision and keep the rest.
class Delegating : public Policy {
public:
    Delegating() : Policy(std::make_shared<DefaultController>(), {}) {}
};
}  // namespace

// Two requests, two dialects, two sets of limits, one runtime: each keeps its own markup and limits,
// and their threads ride the same decode steps (a larger mean batch than either alone).
TEST(RuntimeService, RequestsOfDifferentDialectsAndLimitsShareDecodeSteps) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    auto run = [&](bool with_apr, bool with_plain) {
        Runtime rt(backend);  // default dialect: plain
        std::optional<RequestId> a, p;
        if (with_apr) {
            RequestOptions o = apr_spawner();
            Limits l;
            l.max_children = 2;
            o.limits = l;
            a = rt.submit(kAprRoot, o);
        }
        if (with_plain) p = rt.submit("plain question: ", greedy(24));
        rt.run();
        std::pair<RequestResult, RequestResult> out;
        if (a) out.first = rt.result(*a);
        if (p) out.second = rt.result(*p);
        return out;
    };
    const auto apr_alone = run(true, false).first;
    const auto plain_alone = run(false, true).second;
    const auto both = run(true, true);
    ASSERT_TRUE(apr_alone.ok) << apr_alone.end_reason;
    ASSERT_EQ(apr_alone.threads.size(), 3u);  // the apr dialect spawned two children for it
    EXPECT_EQ(plain_alone.threads.size(), 1u);
    EXPECT_EQ(plain_alone.threads[0].generated_tokens, 24);  // its own budget
    EXPECT_EQ(plain_alone.threads[0].end_reason, "token budget (24)");
    EXPECT_STREQ(finish_reason(plain_alone), "length");  // from the limit the root reached, not its reason's wording
    EXPECT_STREQ(finish_reason(apr_alone), "stop");
    // Together: the same answers.
    EXPECT_EQ(both.first.text, apr_alone.text);
    EXPECT_EQ(both.second.text, plain_alone.text);
    EXPECT_EQ(both.second.threads[0].generated_tokens, 24);

    // Sampled requests in two dialects (multiverse and plain) decode in the same steps: each sees a
    // larger mean batch than when alone. (Scripted pieces are prefills, whose batches say nothing.)
    auto multiverse = std::shared_ptr<const dialects::Dialect>(dialects::make_multiverse_dialect());
    auto sampled = [&](bool with_mv, bool with_plain) {
        Runtime rt(backend);
        std::optional<RequestId> m, p;
        if (with_mv) {
            RequestOptions o = greedy(32);
            o.dialect = multiverse;
            m = rt.submit("a multiverse question: ", o);
        }
        if (with_plain) p = rt.submit("a plain question: ", greedy(32));
        rt.run();
        std::pair<double, double> mean{0, 0};
        if (m) mean.first = rt.result(*m).metrics.mean_batch;
        if (p) mean.second = rt.result(*p).metrics.mean_batch;
        return mean;
    };
    const double mv_alone = sampled(true, false).first, pl_alone = sampled(false, true).second;
    const auto shared = sampled(true, true);
    EXPECT_GT(shared.first, mv_alone);
    EXPECT_GT(shared.second, pl_alone);
    EXPECT_GT(shared.first, 1.5);  // both threads in (nearly) every step
}

// A decode that fails for one request's sequence (aborted inside llama_decode, the path a failed
// compute takes) fails that request's thread; the others finish with the same text as alone.
TEST(RuntimeService, DecodeFailureStaysWithItsRequest) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    const std::vector<std::string> prompts = {"first question: ", "second question: ", "third question: "};
    std::vector<std::string> alone;
    for (const auto & p : prompts) {
        Runtime rt(backend);
        const RequestId id = rt.submit(p, greedy(20));
        rt.run();
        alone.push_back(rt.result(id).text);
    }
    auto victim = tiny_model()->tokenize(prompts[1]);
    if (const auto start = tiny_model()->start_token()) victim.insert(victim.begin(), *start);  // as the runtime opens it
    int faults = 0;
    backend.set_decode_fault([&](SeqId s) {
        const auto & t = backend.tokens(s);
        const bool hit = t.size() > victim.size() + 5 && std::equal(victim.begin(), victim.end(), t.begin());
        faults += hit;
        return hit;
    });
    Runtime rt(backend);
    std::vector<RequestId> ids;
    for (const auto & p : prompts) ids.push_back(rt.submit(p, greedy(20)));
    rt.run();
    backend.set_decode_fault({});
    EXPECT_GT(faults, 0);
    const auto & failed = rt.result(ids[1]);
    EXPECT_FALSE(failed.ok);
    EXPECT_EQ(failed.threads[0].state, ThreadState::failed);
    EXPECT_NE(failed.threads[0].end_reason.find("decode failed"), std::string::npos) << failed.threads[0].end_reason;
    EXPECT_EQ(rt.result(ids[0]).text, alone[0]);
    EXPECT_EQ(rt.result(ids[2]).text, alone[2]);
    EXPECT_EQ(rt.result(ids[0]).threads[0].generated_tokens, 20);
    EXPECT_EQ(backend.usage().live_sequences, 0u);
    EXPECT_EQ(backend.usage().cells_used, 0u);
}

namespace {
// Refuses every spawn; lets a thread past its token budget once, by 8 tokens.
class Stingy final : public Delegating {
public:
    SpawnDecision on_spawn(const SpawnContext & c) override { return {0, "refused " + std::to_string(c.requested) + ": stingy"}; }
    LimitDecision on_limit(const LimitContext & c) override {
        if (c.kind == LimitKind::thread_tokens && !extended_) {
            extended_ = true;
            return {LimitAction::extend, 8, "one more chance"};
        }
        return next_->on_limit(c);
    }

private:
    bool extended_ = false;
};
}  // namespace

namespace {
// Defers every spawn while another request still runs: a parent waits for the machine to be free.
class Patient final : public Delegating {
public:
    explicit Patient(const Runtime *& rt) : rt_(rt) {}
    SpawnDecision on_spawn(const SpawnContext & c) override {
        if (rt_->stats().requests > 1) return {0, "another request is running", true};
        return next_->on_spawn(c);
    }

private:
    const Runtime *& rt_;
};
}  // namespace

// A deferred spawn waits, is asked again each step, and runs once the controller agrees.
TEST(RuntimeService, ADeferredSpawnRunsWhenTheControllerAgrees) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    Runtime rt(backend);
    const Runtime * self = &rt;
    rt.set_controller(std::make_shared<Patient>(self));
    const RequestId a = rt.submit(kAprRoot, apr_spawner());
    const RequestId b = rt.submit("a long question: ", greedy(40));
    rt.run();
    const auto & ra = rt.result(a);
    const auto & rb = rt.result(b);
    ASSERT_TRUE(ra.ok) << ra.end_reason;
    ASSERT_EQ(ra.threads.size(), 3u);
    const auto & d = ra.threads[0].decisions;
    ASSERT_EQ(d.size(), 2u);
    EXPECT_EQ(d[0].reason, "deferred: another request is running");
    EXPECT_NE(d[1].reason.find("ran all 2 children (after "), std::string::npos) << d[1].reason;
    // The children started only after the other request had finished.
    EXPECT_GE(ra.threads[1].start_s + 1e-9, rb.metrics.wall_s - 1e-3);
}

// The controller decides; the runtime enforces it and records each decision with its reason.
TEST(RuntimeService, ControllerDecidesAndEveryDecisionIsRecorded) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    Runtime rt(backend);
    rt.set_controller(std::make_shared<Stingy>());
    const RequestId a = rt.submit(kAprRoot, apr_spawner());
    const RequestId b = rt.submit("a question: ", greedy(16));
    rt.run();
    const auto & ra = rt.result(a);
    ASSERT_EQ(ra.threads.size(), 1u);  // no child ran
    ASSERT_FALSE(ra.threads[0].decisions.empty());
    EXPECT_EQ(ra.threads[0].decisions[0].kind, "spawn");
    EXPECT_EQ(ra.threads[0].decisions[0].reason, "refused 2: stingy");
    EXPECT_NE(ra.text.find("<No Solution in Sub Search 1"), std::string::npos) << ra.text;
    const auto & tb = rt.result(b).threads[0];
    EXPECT_EQ(tb.generated_tokens, 24);  // 16, then 8 more
    ASSERT_EQ(tb.decisions.size(), 2u);
    EXPECT_EQ(tb.decisions[0].reason, "token budget: one more chance");
    EXPECT_EQ(tb.decisions[1].reason, "token budget: token budget (24)");
}

namespace {
// A policy with a rule that never fires here (it would refuse spawns past depth 99): the default's answers.
class NeverFires final : public Delegating {
public:
    SpawnDecision on_spawn(const SpawnContext & c) override {
        if (c.parent.depth > 99) return {0, "too deep"};
        return next_->on_spawn(c);
    }
};
}  // namespace

// DESIGN.md: a policy that never fires changes no answer.
TEST(RuntimeService, APolicyThatNeverFiresChangesNoAnswer) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    auto run = [&](std::shared_ptr<Controller> controller) {
        Runtime rt(backend);
        if (controller) rt.set_controller(controller);
        const RequestId a = rt.submit(kAprRoot, apr_spawner());
        const RequestId b = rt.submit("a question: ", greedy(20));
        rt.run();
        return std::vector<std::string>{rt.result(a).text, rt.result(b).text, std::to_string(rt.result(a).threads.size())};
    };
    EXPECT_EQ(run(nullptr), run(std::make_shared<NeverFires>()));
}

// Events tell each thread's life in order, and the root's text pieces add up to its generation.
TEST(RuntimeService, EventsFollowEveryThread) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    Runtime rt(backend);
    std::vector<Event> events;
    RequestOptions o = apr_spawner();
    o.events = [&](const Event & e) { events.push_back(e); };
    const RequestId id = rt.submit(kAprRoot, o);
    rt.run();
    const auto & r = rt.result(id);
    ASSERT_EQ(r.threads.size(), 3u);
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().kind, EventKind::finished);
    // The spawn names the children the tree holds, each announced (queued) before it.
    auto spawned = std::find_if(events.begin(), events.end(), [](const Event & e) { return e.kind == EventKind::spawned; });
    ASSERT_NE(spawned, events.end());
    EXPECT_EQ(spawned->children, r.threads[0].spawns.at(0));
    for (int c : spawned->children) {
        EXPECT_NE(std::find_if(events.begin(), spawned, [c](const Event & e) { return e.kind == EventKind::thread_queued && e.thread == c; }), spawned);
    }
    for (const auto & t : r.threads) {
        std::vector<EventKind> life;
        std::string text;
        for (const auto & e : events) {
            if (e.thread != t.id || e.kind == EventKind::finished) continue;
            if (e.kind == EventKind::text) {
                text += e.text;
                continue;
            }
            life.push_back(e.kind);
        }
        ASSERT_GE(life.size(), 3u) << t.id;
        EXPECT_EQ(life.front(), EventKind::thread_queued);
        EXPECT_EQ(life[1], EventKind::thread_started);
        EXPECT_EQ(life.back(), EventKind::thread_ended);
        if (t.id == 0) {
            EXPECT_NE(std::find(life.begin(), life.end(), EventKind::spawned), life.end());
            EXPECT_NE(std::find(life.begin(), life.end(), EventKind::joined), life.end());
        } else {
            // A child's pieces are its whole generation (its prompt is what the parent wrote).
            EXPECT_EQ(t.text.substr(t.text.size() - text.size()), text);
            EXPECT_FALSE(text.empty());
        }
    }
}

namespace {
double cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}
// A client of the engine: submits, cancels once the job's first text arrives (as a client that goes
// away mid-stream), and waits for the result. `observe` sees every event (on the loop thread).
JobResult run_as_client(Engine & engine, std::shared_ptr<Program> program, bool cancel_after_first_text,
                        std::function<void(const JobEvent &)> observe = nullptr) {
    std::mutex mu;
    std::condition_variable cv;
    bool first_text = false;
    JobOptions jo;
    jo.keep_result = true;
    jo.events = [&](const JobEvent & e) {
        if (observe) observe(e);
        if (!e.done && e.event.kind == EventKind::text) {
            std::lock_guard<std::mutex> lock(mu);
            first_text = true;
            cv.notify_all();
        }
    };
    const JobId id = engine.submit(std::move(program), jo);
    if (cancel_after_first_text) {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return first_text; });
        lock.unlock();
        engine.cancel(id, "client went away");
    }
    return engine.wait(id);
}

}  // namespace

// Clients on four threads submit at once, one cancels its job mid-stream: every job ends, the
// cancelled one says so, nothing stays in the cache, and the idle loop sleeps.
TEST(Engine, SubmitAndCancelFromOtherThreads) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    Engine engine(backend);
    std::atomic<int> answered{0}, cancelled{0};
    std::vector<std::thread> clients;
    for (int c = 0; c < 4; ++c) {
        clients.emplace_back([&, c] {
            for (int k = 0; k < 3; ++k) {
                const bool cancel_me = c == 3 && k == 1;
                const JobResult r = run_as_client(engine, std::make_shared<OneCall>("client " + std::to_string(c) + " asks " + std::to_string(k) + ": ",
                                                                                    greedy(cancel_me ? 1000 : 12)),
                                                  cancel_me);
                if (r.finish_reason == "cancelled") {
                    ++cancelled;
                    EXPECT_EQ(r.error, "client went away");
                    EXPECT_LT(r.metrics.generated_tokens, 1000);
                } else {
                    EXPECT_EQ(r.metrics.generated_tokens, 12);
                    EXPECT_EQ(r.threads.size(), 1u);
                    ++answered;
                }
            }
        });
    }
    for (auto & t : clients) t.join();
    EXPECT_EQ(answered.load(), 11);
    EXPECT_EQ(cancelled.load(), 1);
    EngineStats st;
    for (int i = 0; i < 100 && (st = engine.stats()).jobs_running > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(st.jobs_running, 0);
    EXPECT_EQ(st.jobs_finished, 12);
    EXPECT_EQ(st.jobs_cancelled, 1);
    EXPECT_EQ(st.kv.live_sequences, 0u);
    EXPECT_EQ(st.kv.cells_used, 0u);
    // Idle: the loop waits on a condition variable, it does not spin.
    const double before = cpu_seconds();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_LT(cpu_seconds() - before, 0.05);
}

namespace {
// N generated nodes and a sub search on each: a spawn as wide as the script wants.
std::string wide_spawn_text(const std::string & node, int n) {
    std::string out, calls;
    for (int i = 0; i < n; ++i) {
        const std::string child = node + "," + std::to_string(i);
        out += "Exploring Operation: 4+2=6, Resulting Numbers: [6, 6]\nGenerated Node #" + child + ": 12:[6, 6] Operation: 4+2=6\n";
        calls += "<Start Sub Search " + std::to_string(i) + " at level 1> Moving to Node #" + child + "\n";
    }
    return out + "<Calling Sub Searches>\n" + calls + "<End Calling Sub Searches>\n";
}
}  // namespace

// Adversarial requests under load (issue 18): 49 jobs from 7 client threads on an engine with fewer
// sequences, running slots and KV cells than they want (threads wait for the first two; when the
// cells run out the youngest are preempted and resume): spawn bombs deep and wide,
// threads that never stop (by tokens and by context), a request that spawns until its total budget,
// honest requests, and requests their clients cancel mid-stream. Every limit holds for every job,
// no more threads run at once than the engine allows, every job ends, the tokens of all jobs add up
// to what the backend decoded, and nothing stays in the cache.
TEST(Engine, AdversarialRequestsUnderLoadHoldEveryLimit) {
    llama::BackendOptions bo = backend_options();
    bo.n_seq_max = 12;
    bo.n_ctx = 12 * 512;  // less than the bombs grow to together: the youngest are preempted
    llama::LlamaBackend backend(tiny_model(), bo);
    EngineOptions eo;
    eo.limits.max_threads = 8;
    eo.max_jobs = 64;
    Engine engine(backend, eo);
    const auto apr = std::shared_ptr<const dialects::Dialect>(dialects::make_apr_dialect());
    enum Kind { deep_bomb, wide_bomb, runaway, context_runaway, total_budget, honest, cancelled, kinds };
    auto joined = [](const ThreadRecord & t) { return t.text.find("<Sub Searches>") != std::string::npos; };
    auto options = [&](Kind k) {
        RequestOptions o;
        o.dialect = apr;
        Limits l;
        l.thread_token_budget = 4000;  // a wide spawn block alone is ~900 tokens of the test model's
        switch (k) {
            case deep_bomb:  // spawns at every node, as deep as it may
                l.max_depth = 2, l.max_children = 2;
                o.script = [joined](const ThreadRecord & t) -> std::optional<std::string> {
                    if (!joined(t)) return spawn_text(node_of(t));
                    return t.text.ends_with("<End Sub Searches>\n") ? std::optional<std::string>("No solution found.\n") : std::nullopt;
                };
                break;
            case wide_bomb:  // 9 sub searches at every node
                l.max_depth = 1, l.max_children = 3;
                o.script = [joined](const ThreadRecord & t) -> std::optional<std::string> {
                    if (!joined(t)) return wide_spawn_text(node_of(t), 9);
                    return t.text.ends_with("<End Sub Searches>\n") ? std::optional<std::string>("No solution found.\n") : std::nullopt;
                };
                break;
            case runaway:
            case cancelled:
                l.thread_token_budget = k == runaway ? 40 : 100000;
                o.script = [](const ThreadRecord &) -> std::optional<std::string> { return std::string("and on "); };
                break;
            case context_runaway:
                l.thread_token_budget = 100000, l.max_context = 96;
                o.script = [](const ThreadRecord &) -> std::optional<std::string> { return std::string("and on "); };
                break;
            case total_budget:  // spawns, then every thread talks on
                l.thread_token_budget = 100000, l.total_token_budget = 120, l.max_depth = 5;
                o.script = [](const ThreadRecord & t) -> std::optional<std::string> {
                    if (t.text.find("<Calling Sub Searches>") == std::string::npos) return spawn_text(node_of(t));
                    return std::string("more ");
                };
                break;
            case honest:
                return greedy(12);
            case kinds: break;
        }
        o.limits = l;
        return o;
    };
    // A scripted piece is read within one step, so the total budget (checked per step) can be passed by
    // at most one piece per running thread.
    const auto piece_tokens = static_cast<int64_t>(tiny_model()->tokenize(spawn_text("0,0,0,0,0"), false, true).size());

    // Running threads of all jobs, from the events (called on the engine's loop thread).
    std::mutex mu;
    std::map<std::pair<JobId, int>, bool> running;
    int now_running = 0, most_running = 0;
    auto track = [&](const JobEvent & e) {
        if (e.done) return;
        std::lock_guard<std::mutex> lock(mu);
        const auto key = std::make_pair(e.job, e.event.thread);
        auto set = [&](bool on) {
            bool & r = running[key];
            now_running += (on ? 1 : 0) - (r ? 1 : 0);
            r = on;
            most_running = std::max(most_running, now_running);
        };
        switch (e.event.kind) {
            case EventKind::thread_started: set(true); break;
            case EventKind::joined: set(true); break;
            case EventKind::spawned: set(false); break;  // the parent waits
            case EventKind::thread_preempted: set(false); break;
            case EventKind::thread_ended: set(false); break;
            default: break;
        }
    };

    std::vector<std::pair<Kind, JobResult>> results;
    std::vector<std::thread> clients;
    for (int c = 0; c < kinds; ++c) {
        clients.emplace_back([&, c] {
            for (int k = 0; k < kinds; ++k) {
                const Kind kind = static_cast<Kind>((c + k) % kinds);
                JobResult r = run_as_client(engine, std::make_shared<OneCall>(kAprRoot, options(kind)), kind == cancelled, track);
                std::lock_guard<std::mutex> lock(mu);
                results.emplace_back(kind, std::move(r));
            }
        });
    }
    for (auto & t : clients) t.join();
    ASSERT_EQ(results.size(), static_cast<size_t>(kinds * kinds));

    int64_t tokens = 0;
    int preemptions = 0;
    for (const auto & [kind, r] : results) {
        tokens += r.metrics.total_tokens;
        for (const auto & t : r.threads) preemptions += t.preemptions;
        int max_depth = 0;
        for (const auto & t : r.threads) {
            EXPECT_TRUE(t.state == ThreadState::done || t.state == ThreadState::failed || t.state == ThreadState::cancelled)
                << "kind " << kind << ", thread " << t.id << " did not end";
            max_depth = std::max(max_depth, t.depth);
        }
        const ThreadRecord & root = r.threads.at(0);
        switch (kind) {
            case deep_bomb:
                EXPECT_TRUE(r.ok) << r.error;
                EXPECT_EQ(r.threads.size(), 7u);  // root, 2 children, 4 grandchildren: no deeper
                EXPECT_EQ(max_depth, 2);
                break;
            case wide_bomb:
                EXPECT_TRUE(r.ok) << r.error;
                EXPECT_EQ(r.threads.size(), 4u);  // 3 of the 9 ran; the children's own spawns were refused
                EXPECT_EQ(max_depth, 1);
                break;
            case runaway:
                EXPECT_EQ(root.generated_tokens, 40);
                EXPECT_NE(r.error.find("token budget"), std::string::npos) << r.error;
                break;
            case context_runaway:
                EXPECT_EQ(r.metrics.max_context_tokens, 96);
                EXPECT_NE(r.error.find("context window"), std::string::npos) << r.error;
                break;
            case total_budget:
                EXPECT_NE(r.error.find("total token budget"), std::string::npos) << r.error;
                EXPECT_GE(r.metrics.generated_tokens, 120);
                EXPECT_LE(r.metrics.generated_tokens, 120 + static_cast<int64_t>(r.threads.size()) * piece_tokens);
                break;
            case honest:
                EXPECT_EQ(r.metrics.generated_tokens, 12);
                break;
            case cancelled:
                EXPECT_EQ(r.finish_reason, "cancelled");
                EXPECT_EQ(r.error, "client went away");
                EXPECT_LT(r.metrics.generated_tokens, 100000);
                break;
            case kinds: break;
        }
        for (const auto & t : r.threads) EXPECT_LE(t.generated_tokens, kind == runaway ? 40 : 100000);
    }
    // A cancelled job's threads end in its events too (the engine once dropped them once the job
    // was cancelled, so a client never saw them end).
    for (const auto & [key, on] : running) EXPECT_FALSE(on) << "job " << key.first << "'s thread " << key.second << " started and never ended in the events";
    // How often the cells ran out depends on how the clients' jobs overlapped (timing): reported, not
    // asserted (Runtime.AFullCachePreemptsTheYoungestWhichResumesByRecompute makes it happen).
    std::printf("[ load     ] %d preemptions, %d threads running at most\n", preemptions, most_running);
    EXPECT_LE(most_running, 8) << "more threads ran at once than the engine's max_threads";
    EXPECT_GE(most_running, 2) << "the jobs did not overlap: no load";
    EXPECT_EQ(tokens, backend.stats().tokens) << "every token decoded belongs to one job";
    EngineStats st;
    for (int i = 0; i < 100 && (st = engine.stats()).kv.live_sequences > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(st.jobs_finished, kinds * kinds);
    EXPECT_EQ(st.jobs_cancelled, kinds);
    EXPECT_EQ(st.kv.live_sequences, 0u);
    EXPECT_EQ(st.kv.cells_used, 0u);
}

// wait() returns after the job's sink had its last call, so a sink may keep its state on the
// waiter's stack (it once got the done event after wait() had returned).
TEST(Engine, WaitReturnsAfterTheSinksLastCall) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    Engine engine(backend);
    for (int i = 0; i < 20; ++i) {
        std::atomic<bool> done_seen{false};
        JobOptions jo;
        jo.keep_result = true;
        jo.events = [&done_seen](const JobEvent & e) {
            if (e.done) {
                std::this_thread::sleep_for(std::chrono::milliseconds(1));  // widen the window a late call would hit
                done_seen = true;
            }
        };
        engine.wait(engine.submit(std::make_shared<OneCall>(std::to_string(i) + ": ", greedy(2)), jo));
        EXPECT_TRUE(done_seen.load()) << "job " << i;
    }
}

// A program that throws fails its own job; a job beside it is answered.
TEST(Engine, AProgramThatThrowsFailsOnlyItsJob) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    Engine engine(backend);
    JobOptions keep;
    keep.keep_result = true;
    const JobId bad = engine.submit(std::make_shared<Throws>(), keep);
    const JobId good = engine.submit(std::make_shared<OneCall>("fine: ", greedy(10)), keep);
    const JobResult rb = engine.wait(bad);
    const JobResult rg = engine.wait(good);
    EXPECT_FALSE(rb.ok);
    EXPECT_EQ(rb.finish_reason, "error");
    EXPECT_EQ(rb.error, "this program has a bug");
    EXPECT_EQ(rg.metrics.generated_tokens, 10);
    EXPECT_EQ(engine.stats().program_errors, 1);
}

// cancel_all (a server's shutdown past its deadline) ends every job in flight, the ones still in the
// inbox too, and frees their sequences; a job submitted after it runs normally.
TEST(Engine, CancelAllEndsEveryJobInFlight) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    Engine engine(backend);
    JobOptions keep;
    keep.keep_result = true;
    std::vector<JobId> ids;
    for (int i = 0; i < 3; ++i) ids.push_back(engine.submit(std::make_shared<OneCall>("long " + std::to_string(i) + ": ", greedy(1000)), keep));
    EXPECT_EQ(engine.jobs_in_flight(), 3);
    engine.cancel_all("the server is shutting down");
    for (JobId id : ids) {
        const JobResult r = engine.wait(id);
        EXPECT_EQ(r.finish_reason, "cancelled");
        EXPECT_EQ(r.error, "the server is shutting down");
        EXPECT_LT(r.metrics.generated_tokens, 1000);
    }
    EXPECT_EQ(engine.jobs_in_flight(), 0);
    const JobResult after = engine.run(std::make_shared<OneCall>("after: ", greedy(5)));
    EXPECT_EQ(after.metrics.generated_tokens, 5);
    EngineStats st;  // published by the loop after its step: poll briefly
    for (int i = 0; i < 100 && (st = engine.stats()).kv.live_sequences > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(st.kv.live_sequences, 0u);
}

// Past max_jobs, submit says so at once instead of queueing without bound.
TEST(Engine, FullEngineRefusesWithOverloaded) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    EngineOptions eo;
    eo.max_jobs = 2;
    Engine engine(backend, eo);
    JobOptions keep;
    keep.keep_result = true;
    const JobId a = engine.submit(std::make_shared<OneCall>("a: ", greedy(50)), keep);
    const JobId b = engine.submit(std::make_shared<OneCall>("b: ", greedy(50)), keep);
    try {
        engine.submit(std::make_shared<OneCall>("c: ", greedy(50)));
        FAIL() << "a third job was accepted";
    } catch (const Error & e) {
        EXPECT_EQ(e.code(), ErrorCode::overloaded);
    }
    engine.wait(a);
    engine.wait(b);
}
