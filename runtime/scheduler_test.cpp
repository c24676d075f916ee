// The runtime on a real llama.cpp model (the 1M test model): scripted token streams drive it
// through adversarial markup, sampled streams through budgets and concurrency.
#include "backends/llama/backend.h"
#include "dialects/apr.h"
#include "runtime/scheduler.h"
#include "runtime/test_model.h"
#include "runtime/test_scripts.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>

using namespace forkjoin;
using namespace forkjoin::runtime;

namespace {

using test_support::tiny_model;

llama::BackendOptions backend_options(uint32_t n_ctx = 8192) {
    llama::BackendOptions o;
    o.n_ctx = n_ctx;
    o.n_seq_max = 32;
    o.n_batch = 512;
    return o;
}

using test_support::kAprRoot;
using test_support::node_of;
using test_support::spawn_text;
const std::string & kRoot = kAprRoot;

std::vector<std::string> spawn_decisions(const ThreadRecord & t) {
    std::vector<std::string> out;
    for (const auto & d : t.decisions) {
        if (d.kind == "spawn") out.push_back(d.reason);
    }
    return out;
}

int count(const std::string & s, const std::string & what) {
    int n = 0;
    for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
    return n;
}

}  // namespace

// Every thread spawns whenever it can: depth and width limits hold, refused spawns are recorded and
// joined at once, every thread ends, every token is accounted for.
TEST(Runtime, EndlessSpawningIsBoundedByDepthAndWidth) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    const auto apr = dialects::make_apr_dialect();
    Limits limits;
    limits.max_depth = 2;
    limits.max_children = 2;
    Runtime rt(backend, *apr, limits);
    RequestOptions o;
    o.script = [](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.text.find("<Sub Searches>") != std::string::npos) {
            if (t.text.ends_with("<End Sub Searches>\n")) return std::string("No solution found.\n");
            return std::nullopt;
        }
        return spawn_text(node_of(t));  // spawns again and again
    };
    const RequestId id = rt.submit(kRoot, o);
    rt.run();
    const auto & r = rt.result(id);
    ASSERT_TRUE(r.finished);
    EXPECT_TRUE(r.ok) << r.end_reason;
    ASSERT_EQ(r.threads.size(), 1u + 2u + 4u);  // root, 2 children, 4 grandchildren; no deeper
    int refused = 0;
    for (const auto & t : r.threads) {
        EXPECT_EQ(t.state, ThreadState::done) << t.id << " " << t.end_reason;
        EXPECT_LE(t.depth, 2);
        if (t.depth == 2) {
            ASSERT_EQ(spawn_decisions(t).size(), 1u);
            EXPECT_NE(spawn_decisions(t)[0].find("depth limit"), std::string::npos);
            ++refused;
            // A refused spawn joins at once with every sub search unsolved.
            EXPECT_EQ(count(t.text, "<No Solution in Sub Search"), 2) << t.text;
        }
    }
    EXPECT_EQ(refused, 4);
    EXPECT_EQ(count(r.text, "<Sub Searches>"), 1);
    EXPECT_EQ(r.text.find("<Calling Sub Searches>"), std::string::npos);  // the join replaced the block
    // The request's tokens are the ones the backend decoded (it served this request alone).
    EXPECT_EQ(r.metrics.total_tokens, backend.stats().tokens);
    // Longest chain: root's own tokens + a child's + a grandchild's.
    const auto & root = r.threads[0];
    const auto & child = r.threads[1];
    const auto & grandchild = r.threads[3];
    EXPECT_EQ(r.metrics.sequential_tokens, root.generated_tokens + child.generated_tokens + grandchild.generated_tokens);
    EXPECT_EQ(backend.usage().live_sequences, 0u);
    EXPECT_EQ(backend.usage().cells_used, 0u);
}

TEST(Runtime, WideSpawnsAreTrimmedAndTheRestJoinAsNotRun) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    const auto apr = dialects::make_apr_dialect();
    Limits limits;
    limits.max_children = 1;
    Runtime rt(backend, *apr, limits);
    RequestOptions o;
    o.script = [](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.depth == 1) {
            if (t.text.find("Goal Reached") != std::string::npos) return std::nullopt;
            return std::string("Exploring Operation: 6+6=12, Resulting Numbers: [12]\n12,12 equal: Goal Reached\n"
                               "Moving to Node #0,0\nCurrent State: 12:[6, 6], Operations: ['4+2=6']\n"
                               "Exploring Operation: 6+6=12, Resulting Numbers: [12]\n12,12 equal: Goal Reached\n");
        }
        if (t.text.ends_with("<End Sub Searches>\n")) return std::string("12,12 equal: Goal Reached\n");
        if (t.text.find("<Sub Searches>") != std::string::npos) return std::nullopt;
        return spawn_text("0");
    };
    const RequestId id = rt.submit(kRoot, o);
    rt.run();
    const auto & r = rt.result(id);
    ASSERT_TRUE(r.ok);
    ASSERT_EQ(r.threads.size(), 2u);
    EXPECT_NE(spawn_decisions(r.threads[0]).at(0).find("ran 1 of 2"), std::string::npos);
    EXPECT_NE(r.text.find("<Goal Reached in Sub Search 0 at level 1 at Node #0,0>\nMoving to Node #0,0\n"), std::string::npos) << r.text;
    EXPECT_NE(r.text.find("<No Solution in Sub Search 1 at level 1 at Node #0,1>\n"), std::string::npos) << r.text;
    // The join kept the parent's cache up to the spawn block: it prefilled about the join text only.
    const int64_t join_tokens = static_cast<int64_t>(tiny_model()->tokenize(
        r.text.substr(r.text.find("<Sub Searches>"), r.text.find("<End Sub Searches>\n") + 19 - r.text.find("<Sub Searches>"))).size());
    EXPECT_LE(r.threads[0].inserted_tokens, join_tokens + 2);
    EXPECT_GE(r.threads[0].inserted_tokens, join_tokens);
}

// Text that never stops: the thread's token budget ends it; the request's total budget ends many.
TEST(Runtime, NeverStoppingThreadsHitTheirBudgets) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    const auto apr = dialects::make_apr_dialect();
    Limits limits;
    limits.thread_token_budget = 50;
    Runtime rt(backend, *apr, limits);
    RequestOptions o;
    o.script = [](const ThreadRecord &) -> std::optional<std::string> { return std::string("and on "); };
    const RequestId a = rt.submit(kRoot, o);
    rt.run();
    EXPECT_FALSE(rt.result(a).ok);
    EXPECT_NE(rt.result(a).end_reason.find("token budget"), std::string::npos);
    EXPECT_LT(rt.result(a).metrics.generated_tokens, 50 + 8);

    Limits total;
    total.total_token_budget = 120;
    total.thread_token_budget = 100000;
    total.max_depth = 5;
    Runtime rt2(backend, *apr, total);
    RequestOptions spawner;
    spawner.script = [](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.text.find("<Calling Sub Searches>") == std::string::npos) return spawn_text(node_of(t));
        return std::string("more ");
    };
    const RequestId b = rt2.submit(kRoot, spawner);
    rt2.run();
    EXPECT_NE(rt2.result(b).end_reason.find("total token budget"), std::string::npos);
    for (const auto & t : rt2.result(b).threads) EXPECT_NE(t.state, ThreadState::running);
    EXPECT_EQ(backend.usage().live_sequences, 0u);
}

// Sampled threads of several requests share every decode step; a cancelled request frees its sequences.
TEST(Runtime, ConcurrentSampledRequestsAndCancellation) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    const auto plain = dialects::make_plain_dialect();
    Limits limits;
    limits.thread_token_budget = 40;
    Runtime rt(backend, *plain, limits);
    std::vector<RequestId> ids;
    for (int i = 0; i < 6; ++i) {
        RequestOptions o;
        o.sampling.temperature = 0.8f;
        o.sampling.seed = static_cast<uint64_t>(i);
        ids.push_back(rt.submit("request " + std::to_string(i) + ": ", o));
    }
    for (int i = 0; i < 10; ++i) rt.step();
    rt.cancel(ids[5], "user cancelled");
    EXPECT_TRUE(rt.finished(ids[5]));
    EXPECT_EQ(rt.result(ids[5]).end_reason, "user cancelled");
    uint32_t unfinished = 0;
    for (RequestId id : ids) unfinished += rt.finished(id) ? 0u : 1u;
    EXPECT_EQ(backend.usage().live_sequences, unfinished);  // the cancelled request holds none
    rt.run();
    for (int i = 0; i < 5; ++i) {
        const auto & r = rt.result(ids[static_cast<size_t>(i)]);
        EXPECT_TRUE(r.finished);
        EXPECT_GT(r.metrics.generated_tokens, 0);
        EXPECT_LE(r.metrics.generated_tokens, 40);
        EXPECT_GT(r.metrics.mean_batch, 3.0);  // the requests were decoded together
        EXPECT_EQ(r.metrics.sequential_tokens, r.metrics.generated_tokens);
    }
    EXPECT_EQ(backend.usage().live_sequences, 0u);
    EXPECT_EQ(backend.usage().cells_used, 0u);
}

// A prompt's control tokens written as text (a chat template's markers) are those tokens, as
// llama-server and vLLM read a prompt: the server renders chat templates into text, and a template's
// "<|im_start|>" spelled out character by character is not what the model was trained on.
TEST(Runtime, ControlTokensInAPromptAreTheTokens) {
    testmodel::TestModelSpec spec = testmodel::test_model_spec("1M");
    spec.added_tokens = {"<|im_start|>", "<|im_end|>"};
    const auto chat_model = llama::Model::load(testmodel::ensure_test_model(FORKJOIN_TEST_MODEL_DIR, spec));
    llama::LlamaBackend backend(chat_model, backend_options());
    const auto plain = dialects::make_plain_dialect();
    Runtime rt(backend, *plain);
    const std::string prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
    std::vector<Token> seen;
    RequestOptions o;
    o.script = [&](const ThreadRecord &) -> std::optional<std::string> {
        for (SeqId s = 0; s < static_cast<SeqId>(backend.options().n_seq_max) && seen.empty(); ++s) {
            if (backend.live(s)) seen = backend.tokens(s);
        }
        return std::nullopt;
    };
    const RequestId id = rt.submit(prompt, o);
    rt.run();
    std::vector<Token> expected = chat_model->tokenize(prompt, false, /*parse_special=*/true);
    if (const auto start = chat_model->start_token()) expected.insert(expected.begin(), *start);
    EXPECT_EQ(seen, expected);
    const Token im_start = chat_model->tokenize("<|im_start|>", false, true).at(0);
    EXPECT_EQ(std::count(seen.begin(), seen.end(), im_start), 2);
    EXPECT_LT(seen.size(), chat_model->tokenize(prompt).size());  // spelled out, it would be longer
    EXPECT_EQ(rt.result(id).threads[0].prompt_tokens, static_cast<int64_t>(expected.size()));
}

// A prompt the vocabulary cannot encode fails its request with the reason; nothing else is hurt.
TEST(Runtime, BadPromptFailsOnlyItsRequest) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    const auto plain = dialects::make_plain_dialect();
    Limits limits;
    limits.thread_token_budget = 10;
    Runtime rt(backend, *plain, limits);
    const RequestId bad = rt.submit("caf\xC3\xA9");
    const RequestId good = rt.submit("cafe");
    rt.run();
    EXPECT_FALSE(rt.result(bad).ok);
    EXPECT_NE(rt.result(bad).end_reason.find("U+00E9"), std::string::npos) << rt.result(bad).end_reason;
    EXPECT_EQ(rt.result(good).metrics.generated_tokens, 10);
}

namespace {
// The live sequence whose tokens spell `text` exactly, if any.
bool some_sequence_spells(const llama::LlamaBackend & backend, const std::string & text) {
    for (llama::SeqId s = 0; s < static_cast<llama::SeqId>(backend.options().n_seq_max); ++s) {
        if (!backend.live(s)) continue;
        std::span<const Token> tokens = backend.tokens(s);
        if (!tokens.empty() && tokens.front() == backend.model().start_token()) tokens = tokens.subspan(1);  // BOS spells no text
        if (backend.model().detokenize(tokens) == text) return true;
    }
    return false;
}
}  // namespace

// Multiverse: paths forked at </Goal> share the parent's cells, end at </Path>, and are spliced back in
// order; the parent's cache then spells exactly its text, and nested blocks fork from the path.
class RuntimeOnBothLayouts : public ::testing::TestWithParam<llama::KvLayout> {};

TEST_P(RuntimeOnBothLayouts, ForkedPathsAreSplicedBackInOrder) {
    // per_sequence: forks copy streams, the join re-reads the paths; 1,024 cells per stream.
    llama::BackendOptions bo = backend_options(32 * 1024);
    bo.kv_layout = GetParam();
    llama::LlamaBackend backend(tiny_model(), bo);
    const auto mv = dialects::make_multiverse_dialect();
    Limits limits;
    limits.max_depth = 2;
    Runtime rt(backend, *mv, limits);
    bool checked_cache = false;
    RequestOptions o;
    o.script = [&](const ThreadRecord & t) -> std::optional<std::string> {
        const size_t own = t.text.rfind("<Path>\n");
        if (t.depth == 0) {
            if (t.text.find("<Goal>") == std::string::npos) {
                return std::string("<Parallel>\n<Goal>\n<Outline>1: add</Outline>\n<Outline>2: multiply</Outline>\n</Goal>\n");
            }
            if (t.text.find("</Conclusion>") == std::string::npos) {  // the engine wrote "<Conclusion>\n"
                checked_cache = some_sequence_spells(backend, t.text);
                return std::string("both</Conclusion>\n</Parallel>\n");
            }
            return std::nullopt;
        }
        if (t.depth == 1 && t.label == "2" && t.text.find("<Outline>a") == std::string::npos) {
            return std::string(" nested\n<Parallel>\n<Goal>\n<Outline>a: x</Outline>\n<Outline>b: y</Outline>\n</Goal>\n");
        }
        return " path " + t.label + " at " + std::to_string(own) + "\n</Path>\n";
    };
    const std::string prompt = "question: 2 and 3?\n";
    const RequestId id = rt.submit(prompt, o);
    rt.run();
    const auto & r = rt.result(id);
    ASSERT_TRUE(r.ok) << r.end_reason;
    ASSERT_EQ(r.threads.size(), 5u);  // root, 2 paths, 2 nested paths under path 2
    EXPECT_TRUE(checked_cache) << "after the KV join the parent's cache must spell its text";
    const size_t p1 = r.text.find("<Path>\n1: path 1");
    const size_t p2 = r.text.find("<Path>\n2: nested");
    const size_t pa = r.text.find("<Path>\na: path a");
    const size_t pb = r.text.find("<Path>\nb: path b");
    const size_t concl = r.text.find("<Conclusion>\nboth");
    ASSERT_NE(p1, std::string::npos) << r.text;
    EXPECT_LT(p1, p2);
    EXPECT_LT(p2, pa);
    EXPECT_LT(pa, pb);
    EXPECT_LT(pb, concl);
    // Siblings never saw each other: each path was written right after its parent's </Goal>.
    EXPECT_NE(r.text.find("path 1 at " + std::to_string(r.text.find("</Goal>\n") + 8)), std::string::npos) << r.text;
    EXPECT_NE(r.text.find("path 2 at"), std::string::npos);
    // Forked children pay only for their own tokens.
    for (size_t i = 1; i < r.threads.size(); ++i) EXPECT_LT(r.threads[i].prompt_tokens, 12) << i;
    int64_t own_of_children = 0;
    for (size_t i = 1; i < r.threads.size(); ++i) own_of_children += r.threads[i].generated_tokens;
    EXPECT_EQ(r.metrics.total_tokens, backend.stats().tokens);
    if (GetParam() == llama::KvLayout::per_sequence) {
        // Without a KV splice every path is decoded twice: by its thread, then re-read by its parent.
        int64_t reread = 0;
        for (const auto & t : r.threads) reread += t.inserted_tokens;
        EXPECT_GE(reread, own_of_children);
    }
    EXPECT_EQ(backend.usage().live_sequences, 0u);
    EXPECT_EQ(backend.usage().cells_used, 0u);
}

INSTANTIATE_TEST_SUITE_P(Layouts, RuntimeOnBothLayouts,
                         ::testing::Values(llama::KvLayout::shared, llama::KvLayout::per_sequence),
                         [](const auto & info) { return info.param == llama::KvLayout::shared ? "shared" : "per_sequence"; });

// A cache far smaller than the work: threads wait their turn, every request ends by its own budget,
// none because the cache was full.
TEST(Runtime, ShortKvCacheMakesThreadsWait) {
    llama::BackendOptions bo = backend_options(256);
    llama::LlamaBackend backend(tiny_model(), bo);
    const auto plain = dialects::make_plain_dialect();
    Limits limits;
    limits.thread_token_budget = 60;
    Runtime rt(backend, *plain, limits);
    std::vector<RequestId> ids;
    for (int i = 0; i < 8; ++i) {
        RequestOptions o;
        o.sampling.temperature = 0.7f;
        o.sampling.seed = static_cast<uint64_t>(i);
        ids.push_back(rt.submit("request number " + std::to_string(i) + ":", o));
    }
    int max_live = 0;
    while (rt.step()) max_live = std::max<int>(max_live, static_cast<int>(backend.usage().live_sequences));
    EXPECT_LT(max_live, 8);  // not all at once: the cache holds about three
    for (RequestId id : ids) {
        const auto & r = rt.result(id);
        EXPECT_TRUE(r.finished);
        EXPECT_EQ(r.end_reason.find("kv cache full"), std::string::npos) << r.end_reason;
    }
    EXPECT_EQ(backend.usage().cells_used, 0u);
}

// Parents waiting on children hold sequences but not running slots: with max_threads 2, two
// requests whose roots both spawn still finish (this deadlocked when waiting parents counted).
TEST(Runtime, WaitingParentsDoNotDeadlockTheThreadLimit) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    const auto apr = dialects::make_apr_dialect();
    Limits limits;
    limits.max_threads = 2;
    Runtime rt(backend, *apr, limits);
    RequestOptions o;
    o.script = [](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.depth == 1) return t.text.find("No solution") == std::string::npos ? std::optional<std::string>("No solution found.\n") : std::nullopt;
        if (t.text.find("<Sub Searches>") != std::string::npos) return std::nullopt;
        return spawn_text("0");
    };
    const RequestId a = rt.submit(kRoot, o), b = rt.submit(kRoot, o);
    for (int i = 0; i < 2000 && (!rt.finished(a) || !rt.finished(b)); ++i) rt.step();
    ASSERT_TRUE(rt.finished(a) && rt.finished(b));
    EXPECT_TRUE(rt.result(a).ok);
    EXPECT_EQ(rt.result(b).threads.size(), 3u);
}

// A KV join that would overflow the parent's context window fails the parent before anything is
// spliced: no thread's context passes the window, and the children's waiting cells are freed.
TEST(Runtime, JoinPastTheContextWindowFailsTheParentFirst) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    const auto mv = dialects::make_multiverse_dialect();
    Limits limits;
    limits.max_context = 200;
    Runtime rt(backend, *mv, limits);
    RequestOptions o;
    o.script = [&](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.depth == 0) {
            if (t.text.find("<Goal>") == std::string::npos) {
                return std::string("<Parallel>\n<Goal>\n<Outline>1: add</Outline>\n<Outline>2: multiply</Outline>\n</Goal>\n");
            }
            return std::string("<Conclusion>unreachable</Conclusion>\n</Parallel>\n");
        }
        return " " + std::string(60, 'p') + "\n</Path>\n";  // each path fits alone, not both together
    };
    const RequestId id = rt.submit("question: 2 and 3?\n", o);
    rt.run();
    const auto & r = rt.result(id);
    ASSERT_FALSE(r.ok);
    EXPECT_NE(r.end_reason.find("context window (200): the join needs"), std::string::npos) << r.end_reason;
    ASSERT_EQ(r.threads.size(), 3u);
    EXPECT_EQ(r.threads[1].state, ThreadState::done);
    EXPECT_EQ(r.threads[2].state, ThreadState::done);
    for (const auto & t : r.threads) EXPECT_LE(t.max_context, 200) << t.id;
    EXPECT_EQ(r.text.find("unreachable"), std::string::npos);
    EXPECT_EQ(backend.usage().live_sequences, 0u);
    EXPECT_EQ(backend.usage().cells_used, 0u);
}

// Admission promises each thread a capped growth (256 tokens), so threads that grow past it can fill
// the cache together: then the youngest is preempted (its cells freed, queued again with its
// context) and resumes by recomputing it once the older one is done. Nothing is lost: both answer
// as each does alone (greedy; F32 cells, one CPU thread), and the recomputed tokens count again.
TEST(Runtime, AFullCachePreemptsTheYoungestWhichResumesByRecompute) {
    llama::BackendOptions bo = backend_options(640);
    bo.kv_f32 = true;
    bo.n_threads = 1;
    llama::LlamaBackend backend(tiny_model(), bo);
    const auto plain = dialects::make_plain_dialect();
    Limits limits;
    limits.thread_token_budget = 400;  // each fits alone (410 < 640 cells), not both
    RequestOptions o;
    o.sampling.ignore_eos = true;
    std::vector<std::string> alone;
    for (const char * prompt : {"first: ", "second: "}) {
        Runtime rt(backend, *plain, limits);
        const RequestId id = rt.submit(prompt, o);
        rt.run();
        ASSERT_EQ(rt.result(id).threads[0].preemptions, 0);
        alone.push_back(rt.result(id).text);
    }
    const int64_t tokens_before = backend.stats().tokens;
    Runtime rt(backend, *plain, limits);
    std::vector<EventKind> second_life;
    RequestOptions watched = o;
    watched.events = [&](const Event & e) {
        if (e.kind == EventKind::thread_started || e.kind == EventKind::thread_preempted || e.kind == EventKind::thread_ended) second_life.push_back(e.kind);
    };
    const RequestId first = rt.submit("first: ", o);
    const RequestId second = rt.submit("second: ", watched);
    rt.run();
    const auto & a = rt.result(first);
    const auto & b = rt.result(second);
    EXPECT_EQ(a.threads[0].generated_tokens, 400) << a.end_reason;
    EXPECT_EQ(b.threads[0].generated_tokens, 400) << b.end_reason;
    EXPECT_EQ(a.threads[0].preemptions, 0);
    ASSERT_GE(b.threads[0].preemptions, 1) << "the cache never filled: no preemption to test";
    EXPECT_EQ(a.text, alone[0]);
    EXPECT_EQ(b.text, alone[1]) << "the preempted thread resumed elsewhere than it left";
    ASSERT_GE(second_life.size(), 4u);
    EXPECT_EQ(second_life[0], EventKind::thread_started);
    EXPECT_EQ(second_life[1], EventKind::thread_preempted);
    EXPECT_EQ(second_life[2], EventKind::thread_started);
    EXPECT_EQ(second_life.back(), EventKind::thread_ended);
    bool decided = false;
    for (const auto & d : b.threads[0].decisions) decided |= d.kind == "preempt" && d.reason.find("resumes by recomputing") != std::string::npos;
    EXPECT_TRUE(decided);
    // Every decoded token belongs to a request; the recomputed ones count again.
    EXPECT_EQ(a.metrics.total_tokens + b.metrics.total_tokens, backend.stats().tokens - tokens_before);
    EXPECT_GT(b.metrics.total_tokens, b.threads[0].prompt_tokens + b.threads[0].generated_tokens);
    EXPECT_EQ(backend.usage().cells_used, 0u);
}

// A parent that has just spawned still has its spawn block to decode; when the cache is full then,
// it is not the one preempted (resumed as running, it would write its block and spawn again: found
// under load, 9 threads where 7 can be): the running thread beside it is. Then the parent waits on
// children the admission could not promise room to while it holds most of the cache: with nothing
// decoding they are admitted anyway (this deadlocked: "nothing running" meant no sequence live, and
// the waiting parent's was), run, and join once.
TEST(Runtime, AParentWaitingOnItsChildrenIsNotPreempted) {
    llama::BackendOptions bo = backend_options(640);
    llama::LlamaBackend backend(tiny_model(), bo);
    const auto plain = dialects::make_plain_dialect();
    Runtime rt(backend, *plain);
    RequestOptions grower;  // one token a step, admitted first
    grower.sampling.ignore_eos = true;
    Limits long_budget;
    long_budget.thread_token_budget = 600;
    grower.limits = long_budget;
    RequestOptions spawner;  // writes until the cache is nearly full, then a spawn block that does not fit
    spawner.dialect = std::shared_ptr<const dialects::Dialect>(dialects::make_apr_dialect());
    Limits ample;
    ample.thread_token_budget = 2000;
    spawner.limits = ample;
    spawner.script = [](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.depth == 1) return t.text.find("No solution") == std::string::npos ? std::optional<std::string>("No solution found.\n") : std::nullopt;
        if (t.text.find("<Sub Searches>") != std::string::npos) return t.text.ends_with("Done\n") ? std::nullopt : std::optional<std::string>("Done\n");
        if (t.generated_tokens < 250) return std::string("x ");
        return spawn_text("0");
    };
    const RequestId a = rt.submit("first: ", grower);
    const RequestId b = rt.submit(kRoot, spawner);
    rt.run();
    const auto & rb = rt.result(b);
    EXPECT_TRUE(rb.ok) << rb.end_reason;
    EXPECT_EQ(rb.threads.size(), 3u) << "the parent spawned more than once";
    EXPECT_EQ(rb.threads[0].preemptions, 0);
    const ThreadRecord & grown = rt.result(a).threads[0];
    EXPECT_GE(grown.preemptions, 1) << "the cache never filled with the block pending: nothing tested";
    // Resumed, it later filled the cache alone, the waiting parent holding the rest: it gives way.
    EXPECT_TRUE(grown.state == ThreadState::done || grown.end_reason == "kv cache full") << grown.end_reason;
    EXPECT_EQ(backend.usage().cells_used, 0u);
}

// One KV stream per sequence: a thread that fills its own stream fails with the reason at once
// (waiting cannot free cells for it); the other request is not hurt.
TEST(Runtime, AThreadThatFillsItsOwnKvStreamFailsAlone) {
    llama::BackendOptions bo = backend_options(512);
    bo.n_seq_max = 2;  // 256 cells each
    bo.kv_layout = llama::KvLayout::per_sequence;
    llama::LlamaBackend backend(tiny_model(), bo);
    const auto plain = dialects::make_plain_dialect();
    Limits limits;
    limits.thread_token_budget = 400;  // more than a stream holds
    Runtime rt(backend, *plain, limits);
    RequestOptions endless;
    endless.script = [](const ThreadRecord &) -> std::optional<std::string> { return std::string("go on "); };
    const RequestId big = rt.submit("start: ", endless);
    Limits small_limits;  // the other request stops by its own budget
    RequestOptions few;
    int pieces = 0;
    few.script = [&](const ThreadRecord &) -> std::optional<std::string> {
        if (++pieces > 5) return std::nullopt;
        return std::string("ok ");
    };
    const RequestId small = rt.submit("hello: ", few);
    rt.run();
    EXPECT_FALSE(rt.result(big).ok);
    // Scripted text is appended (refused up front); sampled text is blocked at the decode: both name the stream.
    EXPECT_NE(rt.result(big).end_reason.find("KV stream"), std::string::npos) << rt.result(big).end_reason;
    EXPECT_NE(rt.result(big).end_reason.find("256 cells"), std::string::npos) << rt.result(big).end_reason;
    EXPECT_LE(rt.result(big).metrics.max_context_tokens, 256);
    EXPECT_EQ(rt.result(small).threads[0].state, ThreadState::done) << rt.result(small).end_reason;
    EXPECT_EQ(backend.usage().live_sequences, 0u);

    // Sampled: the decode that finds the stream full blocks the sequence, and the runtime fails it.
    std::string long_prompt;
    for (int i = 0; i < 40; ++i) long_prompt += "abcd ";
    const RequestId sampled = rt.submit(long_prompt);
    rt.run();
    EXPECT_NE(rt.result(sampled).end_reason.find("filled its KV stream (256 cells)"), std::string::npos)
        << rt.result(sampled).end_reason;
    EXPECT_EQ(backend.usage().live_sequences, 0u);
}

// The watchdog: a controller that defers a spawn forever leaves nothing able to move once the other
// request is done. Its request fails, saying what it waited for, after kStallSeconds (instead of the
// loop spinning forever); the other request was not hurt, and nothing is left in the cache.
TEST(Runtime, AStallFailsTheStuckRequestWithWhatItWaitedFor) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    const auto apr = dialects::make_apr_dialect();
    Runtime rt(backend, *apr);
    struct DeferForever : Controller {
        DefaultController base;
        SpawnDecision on_spawn(const SpawnContext &) override { return {0, "waiting for a budget that never comes", true}; }
        AdmitDecision on_admit(const AdmitContext & c) override { return base.on_admit(c); }
        LimitDecision on_limit(const LimitContext & c) override { return base.on_limit(c); }
    };
    RequestOptions stuck;
    stuck.controller = std::make_shared<DeferForever>();
    stuck.script = [](const ThreadRecord & t) -> std::optional<std::string> {
        return t.text.find("<Calling Sub Searches>") == std::string::npos ? std::optional<std::string>(spawn_text("0")) : std::nullopt;
    };
    RequestOptions fine;
    fine.sampling.ignore_eos = true;
    Limits short_budget;
    short_budget.thread_token_budget = 30;
    fine.limits = short_budget;
    const RequestId a = rt.submit(kRoot, stuck);
    const RequestId b = rt.submit("an honest request: ", fine);
    const auto start = std::chrono::steady_clock::now();
    rt.run();
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto & ra = rt.result(a);
    EXPECT_FALSE(ra.ok);
    EXPECT_TRUE(ra.end_reason.starts_with("stalled: nothing could advance")) << ra.end_reason;
    EXPECT_NE(ra.end_reason.find("1 spawns deferred by the controller (waiting for a budget that never comes)"), std::string::npos) << ra.end_reason;
    EXPECT_EQ(ra.threads[0].state, ThreadState::failed);
    EXPECT_EQ(rt.result(b).threads[0].generated_tokens, 30);  // the other request ran to its budget
    EXPECT_GE(took, Runtime::kStallSeconds);
    EXPECT_EQ(backend.usage().live_sequences, 0u);
}
