// Countdown strategies with the shipped model (models/countdown.gguf) on the real runtime and
// backend: what each strategy spawns, that the per-thread context window holds, and that the
// model still solves what its card says it solves (floors far below the card's figures, so a
// broken engine or model fails here, and noise does not).
#include "strategies/countdown.h"
#include "strategies/countdown_traces.h"
#include "tasks/countdown/problem.h"
#include "tasks/countdown/prompts.h"
#include "tasks/countdown/re_exploration.h"
#include "tasks/countdown/verifier.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

using namespace forkjoin;
using namespace forkjoin::strategies;

namespace {

const std::string kModel = FORKJOIN_SHIPPED_MODEL;
const std::string kEvalSet = FORKJOIN_SHIPPED_EVAL_SET;    // 3 numbers
const std::string kEval4Set = FORKJOIN_SHIPPED_EVAL4_SET;  // 4 numbers
constexpr size_t kProblems = 24;

std::vector<countdown::Problem> problems(const std::string & set = kEvalSet, size_t n = kProblems) {
    auto all = countdown::load_problems(set);
    all.resize(n);
    return all;
}

// One backend for every test, sized as the runner sizes it for the widest run below (12 problems
// with 1 + 8 threads each, a 1,024-token budget and no window: each thread its own KV stream).
llama::LlamaBackend & backend() {
    static auto model = llama::Model::load(kModel);
    static llama::LlamaBackend b(model, [] {
        CountdownOptions o;
        o.strategy = CountdownStrategy::native;
        o.concurrent_requests = 12;
        o.limits.thread_token_budget = 1024;
        return countdown_backend_options(o);
    }());
    return b;
}

std::vector<CountdownOutcome> run(CountdownStrategy strategy, int context = 0, int samples = 1, float temperature = 0,
                                  const std::vector<countdown::Problem> & batch = problems(), const std::string & controller = "default") {
    CountdownOptions o;
    o.controller = controller;
    o.strategy = strategy;
    o.limits.max_context = context;
    o.limits.thread_token_budget = context > 0 ? context : 1024;
    o.concurrent_requests = 12;
    o.samples = samples;
    o.sampling.temperature = temperature;
    o.sampling.seed = 11;
    return run_countdown(backend(), batch, o);
}

int solved(const std::vector<CountdownOutcome> & outcomes) {
    int n = 0;
    for (const auto & o : outcomes) {
        n += o.solved;
        if (o.solved) {
            // The expression the runner reports is the verified one.
            EXPECT_FALSE(o.expression.empty());
        } else {
            EXPECT_FALSE(o.reason.empty()) << "an unsolved problem says why";
        }
    }
    return n;
}

}  // namespace

TEST(CountdownStrategies, ShippedModelIsThere) {
    ASSERT_TRUE(std::filesystem::exists(kModel)) << kModel;
    ASSERT_GE(countdown::load_problems(kEvalSet).size(), 500u);
}

// Floors, in standard errors of a binomial count over the problems tested (the card's rates for the
// shipped cd-v5 at a 512-token window, which holds these traces): sequential 56.6% of 24 is 13.6 +- 2.4
// solved, so the floor of 6 sits 3.1 SE below; native 63.2% is 15.2 +- 2.4, the floor 3.9 SE below.
TEST(CountdownStrategies, SequentialNeverSpawnsAndSolves) {
    const auto out = run(CountdownStrategy::sequential);
    for (const auto & o : out) {
        EXPECT_EQ(o.metrics.threads, 1);
        EXPECT_EQ(o.metrics.sequential_tokens, o.metrics.generated_tokens);
    }
    EXPECT_GE(solved(out), static_cast<int>(kProblems) / 4);
}

TEST(CountdownStrategies, NativeSpawnsChildrenThatShortenTheChain) {
    const auto out = run(CountdownStrategy::native);
    int spawned = 0;
    for (const auto & o : out) {
        if (o.metrics.threads > 1) {
            ++spawned;
            // The chain is the parent plus its longest child: shorter than all threads together.
            if (o.metrics.threads > 2) {
                EXPECT_LT(o.metrics.sequential_tokens, o.metrics.generated_tokens);
            }
            EXPECT_LE(o.metrics.threads, 1 + 8);  // max_children
        }
    }
    EXPECT_GE(spawned, static_cast<int>(kProblems) * 3 / 4) << "the parallel tag makes the model spawn";
    EXPECT_GE(solved(out), static_cast<int>(kProblems) / 4);
}

// Early stop on the shipped model: a child whose sub search verifiably reaches the target cancels its
// still-running siblings, and their unspent tokens are not generated. (The parent's join then reports
// the cancelled siblings as unsolved, a context the model never saw in training: the accuracy cost of
// that is measured by bench countdown --controller, not asserted here.)
TEST(CountdownStrategies, EarlyStopCancelsSiblingsOfAVerifiedChildAndSpendsLess) {
    const auto plain = run(CountdownStrategy::native);
    const auto stopped = run(CountdownStrategy::native, 0, 1, 0, problems(), "early-stop");
    int64_t tokens_plain = 0, tokens_stopped = 0, stops = 0;
    for (size_t i = 0; i < plain.size(); ++i) {
        tokens_plain += plain[i].metrics.generated_tokens;
        tokens_stopped += stopped[i].metrics.generated_tokens;
        for (const auto & t : stopped[i].threads) {
            for (const auto & d : t.decisions) {
                if (d.kind != "stop") continue;
                ++stops;
                EXPECT_NE(d.reason.find("verified"), std::string::npos) << d.reason;
            }
            if (t.state == runtime::ThreadState::cancelled && t.end_reason.starts_with("stopped early")) {
                EXPECT_GT(t.parent, -1);
            }
        }
    }
    EXPECT_GT(stops, 0);
    EXPECT_LT(tokens_stopped, tokens_plain);
}

// Validation of the root's answer on the shipped model: a root that failed to write back a path its
// join holds (the shipped model's most common failure on 4 numbers) has its continuation after the
// join re-sampled, at most Validate::kMaxRounds times. Each rewrite starts from the root's context up
// to the join's end, runs no child, and its tokens are the job's; the answer is the first the
// verifier accepts.
// Validation of a native root's answer follows a failed root up, one call after another: a rewrite of
// its continuation where its join holds a verified path, else a re-exploration from the root's state
// with first steps no root of the job expanded.
TEST(CountdownStrategies, ValidateFollowsUpARootWhoseAnswerFailed) {
    const auto four = problems(kEval4Set, 16);
    const auto out = run(CountdownStrategy::native, 1024, 1, 0, four, "validate");
    int rewritten = 0, reexplored = 0, solved_after = 0;
    for (const auto & o : out) {
        int64_t generated = 0;
        for (const auto & t : o.threads) generated += t.generated_tokens;
        EXPECT_EQ(o.metrics.generated_tokens, generated) << "every token is the job's";
        std::vector<int> followups;
        for (const auto & t : o.threads) {
            if (t.parent < 0 && t.id != 0) followups.push_back(t.id);
        }
        ASSERT_EQ(static_cast<int>(followups.size()), o.rewrites + o.reexplorations);
        EXPECT_LE(o.rewrites, runtime::Validate::kMaxRounds);
        EXPECT_LE(o.reexplorations, runtime::Validate::kMaxRounds);
        if (followups.empty()) continue;
        rewritten += o.rewrites > 0;
        reexplored += o.reexplorations > 0;
        solved_after += o.solved;
        // The root's own answer failed.
        const runtime::ThreadRecord & root = o.threads[0];
        const auto own = countdown::extract_solution(root.text);
        EXPECT_FALSE(own.error.empty() && countdown::verify(o.problem, own.steps).ok) << root.text;
        // Each re-exploration expands only states no earlier root of the job did, from the problem's
        // own state; each rewrite restates the context of the root (or re-exploration) before it up to
        // a join that holds a verified path, and spawns nothing.
        auto explored = countdown::expanded_states(root.text);
        const std::string fresh_root = countdown::root_context(o.problem, true, countdown::PromptStyle::forkjoin);
        std::string last_root = root.text;
        int rewrites = 0, reexplorations = 0;
        for (int id : followups) {
            const runtime::ThreadRecord & t = o.threads[static_cast<size_t>(id)];
            EXPECT_GT(t.generated_tokens, 0);
            const size_t end = last_root.rfind("<End Sub Searches>\n");
            if (end != std::string::npos && t.text.starts_with(last_root.substr(0, end + 19))) {
                ++rewrites;
                const size_t join = last_root.rfind("<Sub Searches>\n", end);
                EXPECT_FALSE(expert_continuation(std::string_view(last_root).substr(join, end - join), o.problem).empty());
                for (const auto & c : o.threads) EXPECT_NE(c.parent, id) << "a rewrite runs no child";
                continue;
            }
            ++reexplorations;
            ASSERT_TRUE(t.text.starts_with(fresh_root + "Exploring Operation: ")) << t.text;
            const auto states = countdown::expanded_states(t.text);
            EXPECT_GE(states.size(), 2u);
            for (const auto & st : states) {
                EXPECT_EQ(std::find(explored.begin(), explored.end(), st), explored.end()) << "expanded again:\n" << t.text;
            }
            explored.insert(explored.end(), states.begin(), states.end());
            last_root = t.text;
        }
        EXPECT_EQ(rewrites, o.rewrites);
        EXPECT_EQ(reexplorations, o.reexplorations);
        if (o.solved) {
            // Rounds stop at the first answer the verifier accepts: the last follow-up's.
            EXPECT_EQ(o.run.text, o.threads[static_cast<size_t>(followups.back())].text);
        }
    }
    std::printf("validate: of 16 roots, %d re-sampled after a join, %d re-explored; %d of them solved, %d in all\n",
                rewritten, reexplored, solved_after, solved(out));
    EXPECT_GT(reexplored, 0);
    EXPECT_GT(solved_after, 0);  // the follow-ups find answers the roots did not
}

// Blind resampling of the native strategy (the control the validate policy's follow-ups are measured
// against): each best-of-n sample is a native root that may spawn, and the job's tokens are all of
// theirs.
TEST(CountdownStrategies, NativeSamplesSpawnAndCountEveryToken) {
    CountdownOptions o;
    o.strategy = CountdownStrategy::best_of_n;
    o.native_samples = true;
    o.samples = 3;
    o.limits.max_context = 1024;
    o.limits.thread_token_budget = 1024;
    o.concurrent_requests = 4;
    o.sampling.temperature = 0.7f;
    o.sampling.seed = 11;
    const auto out = run_countdown(backend(), problems(kEval4Set, 4), o);
    int spawned = 0;
    for (const auto & r : out) {
        int roots = 0;
        int64_t generated = 0;
        for (const auto & t : r.threads) {
            roots += t.parent < 0;
            spawned += t.parent >= 0;
            generated += t.generated_tokens;
            if (t.parent < 0) {
                EXPECT_TRUE(t.text.starts_with(countdown::kParallelTag)) << t.text;
            }
        }
        EXPECT_EQ(roots, 3);
        EXPECT_EQ(r.metrics.generated_tokens, generated);
        EXPECT_GT(r.metrics.threads, 3);
    }
    EXPECT_GT(spawned, 0);
}

TEST(CountdownStrategies, ContextWindowHoldsForEveryThread) {
    const int window = 160;
    for (auto s : {CountdownStrategy::sequential, CountdownStrategy::native}) {
        const auto out = run(s, window);
        int64_t longest = 0;
        for (const auto & o : out) {
            EXPECT_LE(o.metrics.max_context_tokens, window);
            for (const auto & t : o.run.threads) EXPECT_LE(t.max_context, window);
            // The threads ran: a window that held only because nothing was admitted proves nothing.
            EXPECT_GT(o.run.threads.at(0).generated_tokens, 0);
            longest = std::max(longest, o.metrics.max_context_tokens);
        }
        // 3-number traces run to ~400 tokens, so some thread must have been stopped at the window.
        EXPECT_GE(longest, window - 16);
    }
}

TEST(CountdownStrategies, SelfConsistencyRunsSamplesAndNeedsSampling) {
    const auto out = run(CountdownStrategy::self_consistency, 0, 4, 0.8f);
    for (const auto & o : out) EXPECT_EQ(o.metrics.threads, 4);  // one thread per sample
    EXPECT_GE(solved(out), static_cast<int>(kProblems) / 4);
    EXPECT_THROW(run(CountdownStrategy::self_consistency, 0, 4, 0.0f), Error);
}

// DeepConf's online self-consistency on the shipped model (the confidence policy): every sample that
// ran measured its confidence on every token it sampled; a sample ends whole, stopped for low
// confidence, or cancelled once the vote settled, and the outcome counts each kind; the samples saved
// show in the tokens.
TEST(CountdownStrategies, SelfConsistencyWithConfidenceAccountsForEverySample) {
    const auto batch = problems(kEvalSet, 12);
    const auto plain = run(CountdownStrategy::self_consistency, 0, 8, 0.8f, batch);
    const auto pruned = run(CountdownStrategy::self_consistency, 0, 8, 0.8f, batch, "confidence");
    int64_t plain_tokens = 0, pruned_tokens = 0;
    int stopped = 0, not_needed = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
        const auto & o = pruned[i];
        plain_tokens += plain[i].metrics.total_tokens;
        pruned_tokens += o.metrics.total_tokens;
        stopped += o.stopped;
        not_needed += o.not_needed;
        int roots = 0, low = 0, cut = 0;
        for (const auto & t : o.threads) {
            if (t.parent >= 0) continue;
            ++roots;
            EXPECT_EQ(t.confidence.window, runtime::ConfidencePruning::kWindow);
            // Every sampled token but an end-of-text one, which is not part of the text.
            EXPECT_LE(t.confidence.tokens, t.generated_tokens);
            EXPECT_GE(t.confidence.tokens, t.generated_tokens - 1);
            if (t.end_reason.starts_with("low confidence")) ++low;
            if (t.end_reason == "job finished") ++cut;
        }
        EXPECT_EQ(low, o.stopped);
        // Samples whose answers the vote read count; the rest were cancelled or never started, or
        // ended in the very step the vote settled, before the program saw them (they ran, and their
        // tokens are the job's, but no answer of theirs was needed: seen once in 12 on cd-v6).
        EXPECT_GE(roots - cut, 8 - o.not_needed);
        EXPECT_LE(roots - cut, 8 - o.not_needed + 1);
        EXPECT_LE(roots, 8);
    }
    std::printf("confidence: %lld tokens against %lld plain; %d samples stopped, %d not needed; solved %d vs %d\n",
                static_cast<long long>(pruned_tokens), static_cast<long long>(plain_tokens), stopped, not_needed, solved(pruned), solved(plain));
    EXPECT_LT(pruned_tokens, plain_tokens);
}

// The Countdown issue's goal, guarded: on 4 numbers at a 1,024-token window per thread, parallel mode
// solves problems that sequential mode, whose traces outgrow the window, does not (the card: 500
// problems, native 21.8% against sequential 0.0%). On the first 32: 7.0 +- 2.3 expected (binomial),
// so the floor of 2 sits 2.1 SE below; seen 5 (cd-v5 on the shared KV cache) and 4 (per-sequence KV
// streams, whose kernels sum in another order and flip a near-tie in one greedy trace).
TEST(CountdownStrategies, NativeBeatsSequentialOnFourNumbersAtTheSameWindow) {
    const auto four = problems(kEval4Set, 32);
    const int window = 1024;
    const int sequential = solved(run(CountdownStrategy::sequential, window, 1, 0, four));
    const int native = solved(run(CountdownStrategy::native, window, 1, 0, four));
    std::printf("4 numbers, window %d: sequential %d/32, native %d/32\n", window, sequential, native);
    EXPECT_GE(native, 2);  // 5 of these 32 when cd-v5 was shipped
    EXPECT_GE(native - sequential, 2);
}

// Split on the shipped model: children whose state has 3 numbers run as parallel-mode searches of
// that state, spawn children of their own (depth 2: nesting the model was never trained to emit), and
// are read back into the root's join. Whatever the answers, every answer reported is verified and
// every nested search starts as a parallel root of its sub-problem.
TEST(CountdownStrategies, SplitNestsParallelSearchesOfThreeNumberStates) {
    const auto four = problems(kEval4Set, 3);
    const auto out = run(CountdownStrategy::native, 1024, 1, 0, four, "split");
    int nested = 0, deep = 0;
    for (const auto & o : out) {
        for (const auto & t : o.threads) {
            if (t.nested) {
                ++nested;
                EXPECT_EQ(t.depth, 1);
                EXPECT_TRUE(t.text.starts_with(std::string(countdown::kParallelTag) + "Moving to Node #0\nCurrent State: ")) << t.text;
                // Read back, it is a search from the node its parent named.
                EXPECT_TRUE(t.in_request_terms().find("Moving to Node #" + t.label + "\n") != std::string::npos) << t.in_request_terms();
            }
            deep += t.depth == 2;
            EXPECT_LE(t.depth, 2);
        }
    }
    EXPECT_GT(nested, 0);
    EXPECT_GT(deep, 0) << "nested searches spawn children of their own";
    solved(out);
}

// The context-rot hooks: the probe restates the thread's own state (not a distractor's), the reference
// is the root's own context without what came before it, and compaction restarts from the current
// node as an APR child would (a root still at node #0 as its own root context).
TEST(CountdownStrategies, ContextRotHooksFindTheThreadsOwnProblem) {
    const countdown::Problem p{{3, 7, 9, 5}, 24};
    const runtime::TaskHooks h = countdown_hooks(p);
    const std::string distractor = "Moving to Node #0\nCurrent State: 50:[1, 2, 3], Operations: []\n13,50 unequal: No Solution\n";
    const std::string root = countdown::root_context(p, false, countdown::PromptStyle::forkjoin);
    EXPECT_EQ(h.probe_text(distractor + root), "\nCurrent State: 24:[3, 7, 9, 5], Operations: []");
    EXPECT_EQ(h.probe_reference(distractor + root), root);
    EXPECT_EQ(h.probe_reference(root), "");  // nothing before it: its own baseline serves
    const std::string explored = "Exploring Operation: 3+7=10, Resulting Numbers: [9, 5, 10]\n";
    EXPECT_EQ(h.compact(distractor + root + explored), root);
    const std::string deeper = root + explored + "Generated Node #0,0: 24:[9, 5, 10] Operation: 3+7=10\n" +
                               "Moving to Node #0,0\nCurrent State: 24:[9, 5, 10], Operations: ['3+7=10']\nExploring Operation: 9-5=4";
    EXPECT_EQ(h.compact(deeper), std::string(countdown::kSequentialTag) + "Moving to Node #0,0\nCurrent State: 24:[9, 5, 10], Operations: ['3+7=10']\n");
    EXPECT_FALSE(h.compact(root).has_value());  // nothing to drop
    EXPECT_FALSE(h.compact(root + "Moving to Node #0,1\nCurrent State: 24:[").has_value());  // its state line is not written yet
}

// Distractors: about the asked number of tokens of other problems' traces, whole lines, put before
// each root's context; the answer is read from what follows them, so their own "Goal Reached" lines
// are never taken for the problem's. They rot the shipped model's context (it copies a distractor's
// numbers: 0 of the first 100 3-number problems at 1,024 tokens, 55 without), and the context-rot
// monitor sees it in its probe against the clean root context and compacts (62 of 100). Here, 12
// problems behind 256 tokens: ~7.4 expected with the monitor (binomial SD 1.7), the floor of 3 sits
// 2.6 SD below it.
TEST(CountdownStrategies, DistractorsRotTheContextAndTheMonitorRecovers) {
    const Vocabulary & v = backend().vocabulary();
    const std::string d = countdown_distractors(v, 256);
    const size_t n = v.tokenize(d).size();
    EXPECT_LE(n, 256u);
    EXPECT_GE(n, 200u);
    EXPECT_TRUE(d.ends_with("\n"));
    EXPECT_NE(countdown_distractors(v, 4096).find("Goal Reached"), std::string::npos);  // they hold other problems' goals
    EXPECT_EQ(countdown_distractors(v, 256), d);
    EXPECT_EQ(countdown_distractors(v, 0), "");
    CountdownOptions o;
    o.strategy = CountdownStrategy::sequential;
    o.limits.thread_token_budget = 1024;
    o.concurrent_requests = 12;
    o.distractors = d;
    const auto batch = problems(kEvalSet, 12);
    const auto plain = run_countdown(backend(), batch, o);
    o.controller = "context-rot";
    const auto monitored = run_countdown(backend(), batch, o);
    int compacted = 0;
    for (const auto & runs : {plain, monitored}) {
        for (const auto & x : runs) {
            if (x.run.threads[0].compactions == 0) {
                EXPECT_TRUE(x.run.text.starts_with(d));
            }
            compacted += x.run.threads[0].compactions > 0;
        }
    }
    const int rotten = solved(plain), recovered = solved(monitored);
    std::printf("distractors 256: plain %d of 12, with the monitor %d (%d compacted)\n", rotten, recovered, compacted);
    EXPECT_GE(recovered, 3);
    EXPECT_LT(rotten, recovered);
    EXPECT_GT(compacted, 0);
}
