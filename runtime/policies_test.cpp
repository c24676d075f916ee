// Controller policies (runtime/policies.h) on the real runtime and the 1M test model, driven by
// scripted APR threads: each decision (trim, order, nested refused or allowed, siblings stopped
// early) happens, is enforced, and is recorded with its reason.
#include "backends/llama/backend.h"
#include "base/error.h"
#include "dialects/apr.h"
#include "runtime/policies.h"
#include "runtime/scheduler.h"
#include "runtime/test_model.h"

#include <gtest/gtest.h>

#include <algorithm>

using namespace forkjoin;
using namespace forkjoin::runtime;

namespace {

using test_support::tiny_model;

llama::BackendOptions backend_options() {
    llama::BackendOptions o;
    o.n_ctx = 16384;
    o.n_seq_max = 32;
    return o;
}

const std::string kRoot = "Moving to Node #0\nCurrent State: 24:[2, 3, 4, 6], Operations: []\n";

// The root expands `n` nodes and calls a sub search on each; node i's state holds the number 10 + i,
// so a ranking by that number is easy to check.
std::string spawn_block(const std::string & node, int n) {
    std::string s;
    for (int i = 0; i < n; ++i) {
        s += "Generated Node #" + node + "," + std::to_string(i) + ": 24:[" + std::to_string(10 + i) + ", 4] Operation: x\n";
    }
    s += "<Calling Sub Searches>\n";
    for (int i = 0; i < n; ++i) {
        s += "<Start Sub Search " + std::to_string(i) + " at level 1> Moving to Node #" + node + "," + std::to_string(i) + "\n";
    }
    return s + "<End Calling Sub Searches>\n";
}

int first_number(const std::string & text) {
    const size_t at = text.find(":[");
    return at == std::string::npos ? -1 : std::stoi(text.substr(at + 2));
}

struct Outcome {
    RequestResult result;
    std::vector<int> start_order;  // children's first numbers, in the order they started
    int most_running = 0;          // the root's children running at once, at most
};

// Root spawns `width` children; `child` scripts each child (by its first number); a nested spawn
// happens when `nested` and the child is at depth 1.
Outcome run(const std::string & policies, TaskHooks hooks, int width, Limits limits,
        std::function<std::optional<std::string>(const ThreadRecord &)> child, bool nested = false) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    Runtime rt(backend);
    RequestOptions o;
    o.dialect = std::shared_ptr<const dialects::Dialect>(dialects::make_apr_dialect());
    o.limits = limits;
    o.controller = make_controller(policies, hooks);
    Outcome out;
    std::vector<int> running;
    o.events = [&](const Event & e) {
        if (e.kind == EventKind::thread_started && e.parent == 0) {
            out.start_order.push_back(e.thread);
            running.push_back(e.thread);
            out.most_running = std::max(out.most_running, static_cast<int>(running.size()));
        }
        if (e.kind == EventKind::thread_ended) std::erase(running, e.thread);
    };
    o.script = [&](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.depth == 0) {
            if (t.text.find("<Sub Searches>") != std::string::npos) return t.text.ends_with("Done\n") ? std::nullopt : std::optional<std::string>("Done\n");
            return spawn_block("0", width);
        }
        if (nested && t.depth == 1 && t.text.find("<Calling") == std::string::npos && t.text.find("<Sub Searches>") == std::string::npos) {
            return spawn_block(t.label, 2);
        }
        return child(t);
    };
    const RequestId id = rt.submit(kRoot, o);
    rt.run();
    out.result = rt.result(id);
    for (int & tid : out.start_order) tid = first_number(out.result.threads[static_cast<size_t>(tid)].text);
    EXPECT_EQ(backend.usage().live_sequences, 0u);
    return out;
}

std::vector<std::string> reasons(const ThreadRecord & t, const std::string & kind) {
    std::vector<std::string> out;
    for (const auto & d : t.decisions) {
        if (d.kind == kind) out.push_back(d.reason);
    }
    return out;
}

// The context-rot monitor's thresholds, both at `nats`.
ContextRotThresholds thresholds_at(double nats) {
    ContextRotThresholds t;
    t.reference = t.drift = nats;
    return t;
}

// A request that generates exactly `budget` tokens (end-of-text banned) under `controller`.
RequestOptions budgeted(int budget, std::shared_ptr<Controller> controller) {
    RequestOptions o;
    o.sampling.ignore_eos = true;
    Limits l;
    l.thread_token_budget = budget;
    o.limits = l;
    o.controller = std::move(controller);
    return o;
}

auto finishes_after(int pieces) {
    return [pieces](const ThreadRecord & t) -> std::optional<std::string> {
        int written = 0;
        for (size_t p = t.text.find("step\n"); p != std::string::npos; p = t.text.find("step\n", p + 1)) ++written;
        if (written >= pieces) return std::nullopt;
        return std::string("step\n");
    };
}

// The settles hook of these tests: a child that wrote "Goal Reached" settles its parent's question.
std::optional<std::string> settles_on_goal(const ThreadRecord & c) {
    if (c.text.find("Goal Reached") == std::string::npos) return std::nullopt;
    return "thread " + std::to_string(c.id) + " found it";
}

// A child script: the child whose state holds `number` reaches the goal in its second piece; the
// others step on until their budget (or a policy) ends them.
auto finds_goal_at(int number) {
    return [number](const ThreadRecord & t) -> std::optional<std::string> {
        if (first_number(t.text) == number) {
            if (t.text.find("Goal Reached") != std::string::npos) return std::nullopt;
            return std::string(t.text.find("step\n") == std::string::npos ? "step\n" : "24,24 equal: Goal Reached\n");
        }
        return std::string("step\n");
    };
}

// A child script: every child finds nothing and says so.
std::optional<std::string> never_finds(const ThreadRecord & t) {
    if (t.text.find("No solution") != std::string::npos) return std::nullopt;
    return std::string("No solution found.\n");
}

}  // namespace

TEST(Policies, UnknownNamesAreErrorsThatListTheKnownOnes) {
    try {
        make_controller("early-stop,telepathy");
        FAIL() << "accepted an unknown policy";
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("'telepathy'"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("adaptive-width"), std::string::npos);
    }
    EXPECT_NO_THROW(make_controller("all"));
    EXPECT_NO_THROW(make_controller(""));
}

// A child that settles the question stops its siblings: they end cancelled (not at their budget), the
// parent's trace says why and what they had spent, and the join goes on without them.
TEST(Policies, EarlyStopCancelsTheSiblingsOfAChildThatSettlesIt) {
    TaskHooks hooks;
    hooks.settles = settles_on_goal;
    Limits limits;
    limits.thread_token_budget = 400;
    const auto child = finds_goal_at(11);  // the second child; the others never stop on their own
    const Outcome stopped = run("early-stop", hooks, 3, limits, child);
    ASSERT_TRUE(stopped.result.ok) << stopped.result.end_reason;
    const auto & t = stopped.result.threads;
    ASSERT_EQ(t.size(), 4u);
    int cancelled = 0;
    for (size_t i = 1; i < t.size(); ++i) {
        if (first_number(t[i].text) == 11) {
            EXPECT_EQ(t[i].id, 2);  // the second child of the spawn
            EXPECT_EQ(t[i].state, ThreadState::done);
        } else {
            EXPECT_EQ(t[i].state, ThreadState::cancelled);
            EXPECT_EQ(t[i].end_reason, "stopped early: thread 2 found it");
            EXPECT_LT(t[i].generated_tokens, 400);
            ++cancelled;
        }
    }
    EXPECT_EQ(cancelled, 2);
    ASSERT_EQ(reasons(t[0], "stop").size(), 1u);
    EXPECT_NE(reasons(t[0], "stop")[0].find("cancelled 2 siblings of thread 2"), std::string::npos) << reasons(t[0], "stop")[0];
    EXPECT_NE(stopped.result.text.find("<Sub Searches>"), std::string::npos);  // the join happened

    // Without the policy the siblings run to their budget.
    const Outcome all = run("default", hooks, 3, limits, child);
    for (size_t i = 1; i < all.result.threads.size(); ++i) {
        if (first_number(all.result.threads[i].text) != 11) {
            EXPECT_EQ(all.result.threads[i].end_reason, "token budget (400)");
        }
    }
    EXPECT_LT(stopped.result.metrics.generated_tokens, all.result.metrics.generated_tokens);
}

// A tight total budget trims the spawn to what it can pay for, most promising first.
TEST(Policies, AdaptiveWidthTrimsToTheBudgetAndRunsTheBestFirst) {
    TaskHooks hooks;
    hooks.child_score = [](const dialects::ChildRequest & c) { return -first_number(c.prompt); };  // larger is better here
    Limits ample;
    const Outcome wide = run("adaptive-width", hooks, 4, ample, finishes_after(2));
    ASSERT_EQ(wide.result.threads.size(), 5u);  // all four ran
    EXPECT_EQ(wide.start_order, (std::vector<int>{13, 12, 11, 10}));
    EXPECT_NE(reasons(wide.result.threads[0], "spawn").at(0).find("ran 4 of 4"), std::string::npos);

    // Before any child finished, a child is expected to cost min(budget per thread, 256) = 256 here
    // (the budget, 512, holds the root's spawn block: the test model spells it nearly byte by byte);
    // what is left after that block (4 x 256 - 10) pays for 2 children and keeps one child's worth
    // for the root to finish after the join.
    Limits tight;
    tight.thread_token_budget = 512;
    tight.total_token_budget = wide.result.threads[0].generated_tokens + 4 * 256 - 10;
    const Outcome narrow = run("adaptive-width", hooks, 4, tight, finishes_after(2));
    const std::string spawn = reasons(narrow.result.threads[0], "spawn").at(0);
    EXPECT_NE(spawn.find("ran 2 of 4"), std::string::npos) << spawn;
    EXPECT_NE(spawn.find("~256 tokens per child (prior)"), std::string::npos) << spawn;
    EXPECT_EQ(narrow.start_order, (std::vector<int>{13, 12}));  // the two best
    EXPECT_NE(narrow.result.text.find("<No Solution in Sub Search 0"), std::string::npos) << narrow.result.text;  // not run
}

// Stagger: at most two of a spawn's children live at a time, the best first, each of the others
// starting when one ends; with early stop, a child that settles the question cancels the held ones
// before they start. Composed under adaptive-width, its cap stands.
TEST(Policies, StaggerHoldsChildrenBackAndEarlyStopCancelsThemUnstarted) {
    TaskHooks hooks;
    hooks.child_score = [](const dialects::ChildRequest & c) { return -first_number(c.prompt); };  // larger is better here
    hooks.settles = settles_on_goal;
    Limits limits;
    limits.thread_token_budget = 1200;  // holds the root's spawn block of five (the test model spells it nearly byte by byte)
    const Outcome staggered = run("adaptive-width,stagger", hooks, 5, limits, finishes_after(2));
    ASSERT_TRUE(staggered.result.ok) << staggered.result.end_reason;
    EXPECT_EQ(staggered.start_order, (std::vector<int>{14, 13, 12, 11, 10}));
    EXPECT_EQ(staggered.most_running, 2);
    for (size_t i = 1; i < staggered.result.threads.size(); ++i) EXPECT_EQ(staggered.result.threads[i].state, ThreadState::done);
    const std::string spawn = reasons(staggered.result.threads[0], "spawn").at(0);
    EXPECT_NE(spawn.find("ran 5 of 5"), std::string::npos) << spawn;
    EXPECT_NE(spawn.find("2 at a time"), std::string::npos) << spawn;
    // The held children are on the dependency chain: three in a row (14 -> 12 -> 10) after the root.
    int64_t shortest_child = staggered.result.threads[1].generated_tokens;
    for (size_t i = 1; i < staggered.result.threads.size(); ++i) shortest_child = std::min(shortest_child, staggered.result.threads[i].generated_tokens);
    EXPECT_GE(staggered.result.metrics.sequential_tokens, staggered.result.threads[0].generated_tokens + 3 * shortest_child);
    // Without it all five run at once, and the chain holds one child.
    const Outcome wide = run("adaptive-width", hooks, 5, limits, finishes_after(2));
    EXPECT_EQ(wide.most_running, 5);
    int64_t longest_child = 0;
    for (size_t i = 1; i < wide.result.threads.size(); ++i) longest_child = std::max(longest_child, wide.result.threads[i].generated_tokens);
    EXPECT_EQ(wide.result.metrics.sequential_tokens, wide.result.threads[0].generated_tokens + longest_child);

    // The second to start (13) finds it after two pieces; the best (14) would run to its budget.
    const auto child = finds_goal_at(13);
    const Outcome stopped = run("stagger,early-stop", hooks, 5, limits, child);
    ASSERT_TRUE(stopped.result.ok) << stopped.result.end_reason;
    EXPECT_EQ(stopped.start_order, (std::vector<int>{14, 13}));
    int unstarted = 0;
    for (size_t i = 1; i < stopped.result.threads.size(); ++i) {
        const ThreadRecord & c = stopped.result.threads[i];
        if (first_number(c.text) == 13) {
            EXPECT_EQ(c.state, ThreadState::done);
            continue;
        }
        EXPECT_EQ(c.state, ThreadState::cancelled) << c.label;
        if (first_number(c.text) < 13) {
            EXPECT_EQ(c.generated_tokens, 0) << c.label;
            ++unstarted;
        }
    }
    EXPECT_EQ(unstarted, 3);
    const std::string stop = reasons(stopped.result.threads[0], "stop").at(0);
    EXPECT_NE(stop.find("cancelled 4 siblings of thread 2"), std::string::npos) << stop;
    EXPECT_NE(stop.find("3 never started"), std::string::npos) << stop;
    EXPECT_NE(stopped.result.text.find("<Sub Searches>"), std::string::npos);  // the join happened

    // Early stop alone starts all five, and the three it cancels have spent tokens by then.
    const Outcome together = run("early-stop", hooks, 5, limits, child);
    ASSERT_TRUE(together.result.ok) << together.result.end_reason;
    EXPECT_EQ(together.start_order.size(), 5u);
    EXPECT_LT(stopped.result.metrics.generated_tokens, together.result.metrics.generated_tokens);
}

// Stagger holds a re-exploration round's children the same way, and a request that ends while
// children are held ends them too: none is left behind, none started.
TEST(Policies, StaggerHoldsReexploredChildrenAndEndsHeldOnesWithTheRequest) {
    TaskHooks hooks;
    hooks.settles = settles_on_goal;
    const auto never = never_finds;
    const Outcome rounds = run("stagger,validate", hooks, 4, Limits{}, never);
    ASSERT_TRUE(rounds.result.ok) << rounds.result.end_reason;
    EXPECT_EQ(rounds.result.threads.size(), 1u + 4u * 3u);  // the spawn and two re-explorations
    EXPECT_EQ(rounds.start_order.size(), 12u);
    EXPECT_EQ(rounds.most_running, 2);

    // The children never stop on their own; the request's budget ends it while three are held.
    Limits limits;
    limits.thread_token_budget = 1200;
    const Outcome first = run("stagger", hooks, 5, limits, finishes_after(1));
    ASSERT_TRUE(first.result.ok) << first.result.end_reason;
    limits.total_token_budget = first.result.threads[0].generated_tokens + 60;
    const Outcome ended = run("stagger", hooks, 5, limits, [](const ThreadRecord &) { return std::optional<std::string>("step\n"); });
    EXPECT_FALSE(ended.result.ok);
    EXPECT_EQ(ended.start_order.size(), 2u);
    int held = 0;
    for (const auto & t : ended.result.threads) {
        EXPECT_TRUE(thread_ended(t.state)) << t.label;
        if (t.depth == 1 && t.generated_tokens == 0) {
            EXPECT_EQ(t.state, ThreadState::cancelled) << t.label;
            ++held;
        }
    }
    EXPECT_EQ(held, 3);
}

// Nested spawns run when the budget is ample and are refused when it is tight.
TEST(Policies, AdaptiveWidthAllowsNestedSpawnsOnlyWithBudgetToSpare) {
    Limits limits;
    limits.max_depth = 2;
    limits.thread_token_budget = 512;  // holds a spawn block; a child is expected to cost 256 (the cap)
    const Outcome ample = run("adaptive-width", {}, 2, limits, finishes_after(1), /*nested=*/true);
    EXPECT_EQ(ample.result.threads.size(), 1u + 2u + 4u);
    // After the root's spawn block, 4 children's worth: the root's spawn of 2 is paid for (keeping
    // one for the root), but once a child has written its own spawn block less than 5 children's
    // worth is left, which a nested spawn of 2 needs (twice its width, plus one to finish).
    limits.total_token_budget = ample.result.threads[0].generated_tokens + 4 * 256;
    const Outcome tight = run("adaptive-width", {}, 2, limits, finishes_after(1), /*nested=*/true);
    int refused = 0;
    for (const auto & t : tight.result.threads) {
        for (const auto & r : reasons(t, "spawn")) refused += r.find("nested spawn of 2 refused: budget tight") != std::string::npos;
    }
    EXPECT_GE(refused, 1);
    EXPECT_LT(tight.result.threads.size(), ample.result.threads.size());
}

// Validation: no child settled it, so the unsettled sub searches run again (new threads, same
// requests) before the join, at most two rounds; a round that settles it ends the re-exploration.
TEST(Policies, ValidateReexploresUntilAChildSettlesIt) {
    TaskHooks hooks;
    hooks.settles = settles_on_goal;
    // First-round children (ids 1, 2) find nothing; in the second round (ids 3, 4) the one for node
    // 0,1 finds it.
    auto child = [](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.text.find("No solution") != std::string::npos || t.text.find("Goal Reached") != std::string::npos) return std::nullopt;
        // APR's join reads a found path after the second "Goal Reached" (the trace, then the clean path).
        if (t.id >= 3 && first_number(t.text) == 11) return std::string("24,24 equal: Goal Reached\nMoving to Node #0,1\n24,24 equal: Goal Reached\n");
        return std::string("No solution found.\n");
    };
    const Outcome found = run("validate", hooks, 2, Limits{}, child);
    const auto & t = found.result.threads;
    ASSERT_EQ(t.size(), 5u);  // root, 2 children, 2 re-explored
    const auto v = reasons(t[0], "validate");
    ASSERT_EQ(v.size(), 1u);
    EXPECT_NE(v[0].find("re-exploring 2 sub searches"), std::string::npos) << v[0];
    EXPECT_NE(v[0].find("round 1 of 2"), std::string::npos) << v[0];
    ASSERT_EQ(t[0].spawns.size(), 2u);  // the first round and the re-exploration, one after the other
    EXPECT_EQ(t[0].spawns[1], (std::vector<int>{3, 4}));
    EXPECT_NE(found.result.text.find("<Goal Reached in Sub Search 1"), std::string::npos) << found.result.text;

    // Nothing ever settles it: two rounds, then the join of what there is.
    const auto never = never_finds;
    const Outcome none = run("validate", hooks, 2, Limits{}, never);
    EXPECT_EQ(none.result.threads.size(), 1u + 2u * 3u);
    EXPECT_EQ(reasons(none.result.threads[0], "validate").size(), 2u);
    EXPECT_TRUE(none.result.ok) << none.result.end_reason;

    // With no budget for another round, it joins at once.
    Limits tight;
    tight.total_token_budget = none.result.threads[0].generated_tokens + 40;
    const Outcome poor = run("validate", hooks, 2, tight, never);
    EXPECT_TRUE(reasons(poor.result.threads[0], "validate").empty());
}

// The context-rot monitor probes each thread at its start and every K generated tokens on a throwaway
// fork; a monitor that never fires changes no answer, and one that fires records it once per thread
// and narrows the request's next spawn.
TEST(Policies, ContextRotMonitorProbesAndNarrowsOnlyWhenItFires) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    auto run_with = [&](std::shared_ptr<Controller> controller) {
        Runtime rt(backend);
        const RequestOptions greedy = budgeted(50, controller);
        RequestOptions spawner;
        spawner.dialect = std::shared_ptr<const dialects::Dialect>(dialects::make_apr_dialect());
        spawner.controller = controller;
        spawner.script = [](const ThreadRecord & t) -> std::optional<std::string> {
            if (t.depth == 1) return t.text.find("No solution") == std::string::npos ? std::optional<std::string>("No solution found.\n") : std::nullopt;
            if (t.text.find("<Sub Searches>") != std::string::npos) return std::nullopt;
            return spawn_block("0", 2);
        };
        const RequestId a = rt.submit("a question for the monitor: ", greedy);
        rt.run();
        // The spawner runs after the sampled thread, so a monitor that fired there has already narrowed.
        const RequestId b = rt.submit(kRoot, spawner);
        rt.run();
        return std::make_pair(rt.result(a), rt.result(b));
    };
    const auto plain = run_with(nullptr);
    const auto quiet = run_with(std::make_shared<ContextRot>(std::make_shared<DefaultController>(), TaskHooks{}, 16, thresholds_at(1e9)));
    EXPECT_EQ(quiet.first.text, plain.first.text);
    EXPECT_EQ(quiet.second.text, plain.second.text);
    const auto & probes = quiet.first.threads[0].probes;
    ASSERT_GE(probes.size(), 4u);  // the baseline, then every 16 of its 50 tokens
    for (size_t i = 1; i < probes.size(); ++i) EXPECT_EQ(probes[i].generated - probes[i - 1].generated, 16);
    EXPECT_GT(quiet.first.threads[0].probe_tokens, 0);
    EXPECT_TRUE(reasons(quiet.first.threads[0], "probe").empty());

    // A threshold every probe crosses, for a task that cannot compact: one decision per thread, and the
    // next spawn runs at half width.
    TaskHooks cannot_compact;
    cannot_compact.compact = [](const std::string &) -> std::optional<std::string> { return std::nullopt; };
    auto loud = std::make_shared<ContextRot>(std::make_shared<DefaultController>(), cannot_compact, 16, thresholds_at(-1e9));
    const auto fired = run_with(loud);
    int rot = 0;
    for (const auto & d : fired.first.threads[0].decisions) rot += d.reason.starts_with("context rot");
    EXPECT_EQ(rot, 1);
    const auto spawn = reasons(fired.second.threads[0], "spawn");
    ASSERT_EQ(spawn.size(), 1u);
    EXPECT_NE(spawn[0].find("narrowed to 1"), std::string::npos) << spawn[0];
    EXPECT_EQ(fired.second.threads.size(), 2u);  // root and one child

    // Thresholds from a calibration reach the policy make_controller builds, and its decisions say
    // where they came from.
    PolicySettings calibrated;
    calibrated.context_rot = thresholds_at(-1e9);
    calibrated.context_rot.source = "m.calibration.json";
    const auto named = run_with(make_controller("context-rot", cannot_compact, calibrated));
    const auto probe = reasons(named.first.threads[0], "probe");
    ASSERT_EQ(probe.size(), 1u);
    EXPECT_NE(probe[0].find("calibrated: m.calibration.json"), std::string::npos) << probe[0];
    EXPECT_NE(reasons(fired.first.threads[0], "probe")[0].find("built in"), std::string::npos);
}

// Split: a child whose part is worth splitting runs as a search of its own sub-problem (its own prompt,
// one level deeper than the request allows), and the parent's join reads its text back in the parent's
// terms; a child run as asked keeps the depth limit; without budget or sequences for the nested search's
// children it runs as asked.
TEST(Policies, SplitRunsAChildAsASearchOfItsOwnAndReadsItBack) {
    const std::string sub = "SUB\nMoving to Node #0\nCurrent State: 24:[10, 4], Operations: []\n";
    auto read_back = [](const std::string & text) {
        std::string out;
        for (size_t i = 0; i < text.size();) {
            if (text.compare(i, 7, "Node #0") == 0) {
                out += "Node #0,0";
                i += 7;
            } else {
                out += text[i++];
            }
        }
        return out;
    };
    TaskHooks hooks;
    hooks.split = [&](const dialects::ChildRequest & c) -> std::optional<NestedChild> {
        if (first_number(c.prompt) != 10) return std::nullopt;  // only node 0,0 is worth it
        NestedChild n;
        n.prompt = sub;
        n.read_back = read_back;
        return n;
    };
    const std::string found = "24,24 equal: Goal Reached\nMoving to Node #0,1\n24,24 equal: Goal Reached\n";
    auto run_split = [&](Limits limits, uint32_t sequences) {
        llama::BackendOptions bo = backend_options();
        bo.n_seq_max = sequences;
        llama::LlamaBackend backend(tiny_model(), bo);
        Runtime rt(backend);
        RequestOptions o;
        o.dialect = std::shared_ptr<const dialects::Dialect>(dialects::make_apr_dialect());
        o.limits = limits;
        o.controller = make_controller("split", hooks);
        o.script = [&](const ThreadRecord & t) -> std::optional<std::string> {
            const bool joined = t.text.find("<Sub Searches>") != std::string::npos;
            const bool called = t.text.find("<Calling") != std::string::npos;
            if (t.depth == 0) return joined ? (t.text.ends_with("Done\n") ? std::nullopt : std::optional<std::string>("Done\n")) : spawn_block("0", 2);
            if (t.depth == 2) return t.text.find("Goal Reached") != std::string::npos ? std::nullopt : std::optional<std::string>(found);
            if (!called && !joined) return spawn_block(t.nested ? "0" : t.label, 2);  // both try to split further
            if (t.text.ends_with("Goal Reached\n") || t.text.ends_with("found.\n")) return std::nullopt;
            return std::string(t.nested ? "24,24 equal: Goal Reached\nMoving to Node #0\n24,24 equal: Goal Reached\n" : "No solution found.\n");
        };
        const RequestId id = rt.submit(kRoot, o);
        rt.run();
        RequestResult result = rt.result(id);
        EXPECT_EQ(result.metrics.total_tokens, backend.stats().tokens);  // every decoded token accounted
        EXPECT_EQ(backend.usage().live_sequences, 0u);
        return result;
    };
    Limits limits;
    limits.max_children = 2;
    const RequestResult split = run_split(limits, 8);
    ASSERT_TRUE(split.ok) << split.end_reason;
    const auto & t = split.threads;
    ASSERT_EQ(t.size(), 5u);  // root, two children, the nested search's two
    EXPECT_NE(reasons(t[0], "spawn").at(0).find("1 of 1 worth splitting run as searches of their own"), std::string::npos)
        << reasons(t[0], "spawn").at(0);
    const ThreadRecord & nested = t[1];
    EXPECT_TRUE(nested.nested);
    EXPECT_TRUE(nested.text.starts_with(sub)) << nested.text;
    EXPECT_EQ(nested.spawns.size(), 1u);  // spawned at depth 1, past the request's max_depth of 1
    EXPECT_FALSE(t[2].nested);
    EXPECT_NE(reasons(t[2], "spawn").at(0).find("refused: depth limit 1"), std::string::npos) << reasons(t[2], "spawn").at(0);
    for (int id : nested.spawns.at(0)) {
        const ThreadRecord & g = t[static_cast<size_t>(id)];
        EXPECT_EQ(g.depth, 2);
        EXPECT_TRUE(g.text.starts_with("Moving to Node #0,")) << g.text;                 // its own terms
        EXPECT_TRUE(g.in_request_terms().starts_with("Moving to Node #0,0,")) << g.in_request_terms();  // the request's
    }
    // The root's join reads the nested search back: its path is a path from node 0,0.
    EXPECT_NE(split.text.find("<Goal Reached in Sub Search 0 at level 1 at Node #0,0>\nMoving to Node #0,0\n24,24 equal: Goal Reached\n"),
              std::string::npos)
        << split.text;
    EXPECT_NE(split.text.find("<No Solution in Sub Search 1 at level 1 at Node #0,1>"), std::string::npos) << split.text;

    // Not enough budget for the nested search's children, or no sequences for them: run as asked.
    Limits poor = limits;
    poor.total_token_budget = t[0].generated_tokens + 3 * 256;
    const RequestResult unsplit = run_split(poor, 8);
    EXPECT_NE(reasons(unsplit.threads[0], "spawn").at(0).find("0 of 1 worth splitting"), std::string::npos) << reasons(unsplit.threads[0], "spawn").at(0);
    EXPECT_EQ(unsplit.threads.size(), 3u);
    const RequestResult crowded = run_split(limits, 4);
    EXPECT_NE(reasons(crowded.threads[0], "spawn").at(0).find("0 of 1 worth splitting"), std::string::npos);
    EXPECT_FALSE(crowded.threads[1].nested);
}

TEST(Policies, PercentileInterpolatesBetweenRanks) {
    EXPECT_DOUBLE_EQ(percentile({3.0, 1.0, 2.0}, 50), 2.0);
    EXPECT_DOUBLE_EQ(percentile({2.0, 3.0}, 10), 2.1);
    EXPECT_DOUBLE_EQ(percentile({5.0}, 90), 5.0);
    EXPECT_DOUBLE_EQ(percentile({1.0, 2.0, 3.0, 4.0, 5.0}, 100), 5.0);
    EXPECT_THROW(percentile({}, 10), Error);
}

// DeepConf's pruning as a policy: no stop before the warm-up roots ended, a threshold at the 10th
// percentile of their lowest group confidence, cancelled roots and children never counted or judged.
TEST(Policies, ConfidenceCalibratesOnTheFirstRootsThenStopsThoseBelow) {
    ConfidencePruning p(std::make_shared<DefaultController>(), TaskHooks{}, ConfidencePruning::kKeepHigh, /*warmup=*/2, /*window=*/8);
    auto root = [](int id, ThreadState state, double lowest) {
        ThreadRecord t;
        t.id = id;
        t.state = state;
        t.confidence = {.window = 8, .tokens = 40, .mean = lowest + 1, .last_group = lowest + 1, .lowest_group = lowest};
        return t;
    };
    ThreadRecord child = root(1, ThreadState::running, 0);
    child.parent = 0;
    EXPECT_EQ(p.confidence_plan(root(0, ThreadState::running, 0)).top_k, ConfidencePruning::kTopK);
    EXPECT_EQ(p.confidence_plan(root(0, ThreadState::running, 0)).window, 8);
    EXPECT_EQ(p.confidence_plan(child).top_k, 0);
    const ThreadRecord running = root(0, ThreadState::running, 0);
    EXPECT_FALSE(p.on_confidence({.thread = running, .group = 0.01}).stop);  // not calibrated yet
    p.on_thread_ended(root(0, ThreadState::cancelled, 0.5));  // stopped or cut by its job: not a whole trace
    p.on_thread_ended(root(0, ThreadState::done, 2.0));
    EXPECT_FALSE(p.threshold());
    EXPECT_FALSE(p.on_confidence({.thread = running, .group = 0.01}).stop);
    p.on_thread_ended(root(0, ThreadState::failed, 3.0));  // a trace cut by its window is a whole trace
    ASSERT_TRUE(p.threshold());
    EXPECT_DOUBLE_EQ(*p.threshold(), 2.1);
    const auto low = p.on_confidence({.thread = running, .group = 2.05});
    EXPECT_TRUE(low.stop);
    EXPECT_NE(low.reason.find("below 2.100"), std::string::npos) << low.reason;
    EXPECT_FALSE(p.on_confidence({.thread = running, .group = 2.2}).stop);
    EXPECT_FALSE(p.on_confidence({.thread = child, .group = 0.01}).stop);
    p.on_thread_ended(root(0, ThreadState::done, 0.1));  // later roots do not move the threshold
    EXPECT_DOUBLE_EQ(*p.threshold(), 2.1);
}

// DeepConf-low: the same warm-up sets the threshold at the 90th percentile, so it stops a trace that
// DeepConf-high lets run; both are policies by name, and the strategies see either as confidence.
TEST(Policies, ConfidenceLowStopsAtTheNinetiethPercentileOfTheWarmup) {
    auto ended = [](double lowest) {
        ThreadRecord t;
        t.state = ThreadState::done;
        t.confidence = {.window = 8, .tokens = 40, .mean = lowest + 1, .last_group = lowest + 1, .lowest_group = lowest};
        return t;
    };
    ConfidencePruning high(std::make_shared<DefaultController>(), TaskHooks{}, ConfidencePruning::kKeepHigh, 2, 8);
    ConfidencePruning low(std::make_shared<DefaultController>(), TaskHooks{}, ConfidencePruning::kKeepLow, 2, 8);
    for (ConfidencePruning * p : {&high, &low}) {
        p->on_thread_ended(ended(2.0));
        p->on_thread_ended(ended(3.0));
    }
    ASSERT_TRUE(low.threshold());
    EXPECT_DOUBLE_EQ(*low.threshold(), 2.9);
    ThreadRecord running = ended(0);
    running.state = ThreadState::running;
    EXPECT_FALSE(high.on_confidence({.thread = running, .group = 2.5}).stop);
    const auto stop = low.on_confidence({.thread = running, .group = 2.5});
    EXPECT_TRUE(stop.stop);
    EXPECT_NE(stop.reason.find("below 2.900 (the 90th percentile"), std::string::npos) << stop.reason;
    EXPECT_FALSE(low.on_confidence({.thread = running, .group = 2.95}).stop);

    auto made = make_controller("confidence-low");
    EXPECT_EQ(made->confidence_plan(running).top_k, ConfidencePruning::kTopK);
    EXPECT_TRUE(has_confidence_policy("early-stop,confidence-low"));
    EXPECT_TRUE(has_confidence_policy("confidence"));
    EXPECT_FALSE(has_confidence_policy("all"));
}

// Measuring confidence changes no token (the top-k read-out is beside the sampler), measures every
// sampled token, and a stop ends the thread where the controller said, with its reason in the trace.
TEST(Policies, ConfidenceIsMeasuredOnEveryTokenAndAStopEndsTheThread) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    struct Measure : Policy {
        Measure() : Policy(std::make_shared<DefaultController>(), TaskHooks{}) {}
        int stop_at = -1;  // tokens; -1: never
        std::vector<double> groups;
        ConfidencePlan confidence_plan(const ThreadRecord &) override { return {20, 16}; }
        ConfidenceDecision on_confidence(const ConfidenceContext & c) override {
            groups.push_back(c.group);
            if (stop_at >= 0 && c.thread.confidence.tokens >= stop_at) return {true, "enough"};
            return {};
        }
    };
    auto run_with = [&](std::shared_ptr<Controller> controller) {
        Runtime rt(backend);
        RequestOptions o = budgeted(80, std::move(controller));
        o.sampling.temperature = 0.8f;
        o.sampling.seed = 5;
        const RequestId id = rt.submit("a question to be sure about: ", o);
        rt.run();
        return rt.result(id);
    };
    const auto plain = run_with(nullptr);
    auto measure = std::make_shared<Measure>();
    const auto measured = run_with(measure);
    EXPECT_EQ(measured.text, plain.text);
    const Confidence & c = measured.threads[0].confidence;
    EXPECT_EQ(c.window, 16);
    EXPECT_EQ(c.tokens, 80);
    // Asked once per token from the first full window on, while the thread runs: the 80th token ends
    // it at its budget, so its group is recorded but not asked about.
    EXPECT_EQ(measure->groups.size(), 80u - 16u);
    EXPECT_GT(c.lowest_group, 0.0);
    EXPECT_LE(c.lowest_group, *std::min_element(measure->groups.begin(), measure->groups.end()));
    EXPECT_GE(c.last_group, c.lowest_group);
    EXPECT_EQ(plain.threads[0].confidence.tokens, 0);  // not asked for: not measured

    auto stopper = std::make_shared<Measure>();
    stopper->stop_at = 30;
    const auto stopped = run_with(stopper);
    const ThreadRecord & root = stopped.threads[0];
    EXPECT_EQ(root.state, ThreadState::cancelled);
    EXPECT_EQ(root.end_reason, "low confidence: enough");
    EXPECT_EQ(root.generated_tokens, 30);
    EXPECT_EQ(reasons(root, "confidence"), std::vector<std::string>{"enough"});
    EXPECT_EQ(backend.usage().live_sequences, 0u);
}

// Compaction: past the threshold the monitor replaces the thread's context by the task's compacted
// one (here the last 8 bytes of its text, after a marker), the runtime records what was dropped,
// takes the next probe as the new baseline, and the thread goes on to its budget; at most
// kMaxCompactions times. With a reference context the monitor measures against it.
TEST(Policies, ContextRotCompactsTheThreadAndMeasuresAgainstTheReference) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    struct Capture : Policy {
        Capture() : Policy(std::make_shared<DefaultController>(), TaskHooks{}) {}
        std::vector<std::optional<double>> references;
        std::vector<double> baselines;
        ProbeDecision on_probe(const ProbeResult & p) override {
            references.push_back(p.reference);
            baselines.push_back(p.baseline);
            return {};
        }
    };
    auto capture = std::make_shared<Capture>();
    TaskHooks hooks;
    hooks.probe_reference = [](const std::string &) { return std::string("a clean start: "); };
    hooks.compact = [](const std::string & text) -> std::optional<std::string> { return "compacted: " + text.substr(text.size() - 8); };
    Runtime rt(backend);
    const RequestOptions o = budgeted(80, std::make_shared<ContextRot>(capture, hooks, 16, thresholds_at(-1e9)));  // fires on every probe
    const RequestId id = rt.submit("a question for the monitor, long enough to drop: ", o);
    rt.run();
    const ThreadRecord & t = rt.result(id).threads[0];
    EXPECT_EQ(t.state, ThreadState::failed);  // at its budget
    EXPECT_EQ(t.generated_tokens, 80);
    EXPECT_EQ(t.compactions, ContextRot::kMaxCompactions);
    const auto compacted = reasons(t, "compact");
    ASSERT_EQ(compacted.size(), 2u);
    EXPECT_NE(compacted[0].find("dropped"), std::string::npos) << compacted[0];
    EXPECT_TRUE(t.text.starts_with("compacted: ")) << t.text;
    // Every probe saw the reference, scored once, until the first compaction (the context is clean
    // then: the next probe is the baseline); the thread's record keeps it.
    ASSERT_GE(capture->references.size(), 2u);
    ASSERT_TRUE(capture->references.front().has_value());
    EXPECT_FALSE(capture->references.back().has_value());
    ASSERT_TRUE(t.probe_reference.has_value());
    EXPECT_DOUBLE_EQ(*t.probe_reference, *capture->references.front());
    // After each compaction the next probe is the new baseline.
    ASSERT_GE(t.probes.size(), 4u);
    EXPECT_NE(capture->baselines.back(), capture->baselines.front());
    EXPECT_EQ(backend.usage().live_sequences, 0u);
}

// Free text has no compaction of its own: past the threshold a summarizer (a forked child in no spawn,
// label "summary") writes a summary while the thread waits, and the thread's context becomes its prompt,
// the lead and the summary; at most kMaxCompactions times, then its request's spawns are narrowed.
// Scripted: the text is exact.
TEST(Policies, ContextRotSummarizesFreeTextOnAForkAndGoesOnFromTheSummary) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    Runtime rt(backend);
    RequestOptions o;
    o.controller = std::make_shared<ContextRot>(std::make_shared<DefaultController>(), TaskHooks{}, 16, thresholds_at(-1e9));
    o.script = [](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.label == "summary") {
            return t.text.ends_with(ContextRot::summary_plan().instruction) ? std::optional<std::string>(" The answer so far is 42.\n") : std::nullopt;
        }
        return t.generated_tokens < 40 ? std::optional<std::string>(" step.") : std::nullopt;
    };
    const std::string prompt = "a question whose reasoning gets long: ";
    const RequestId id = rt.submit(prompt, o);
    rt.run();
    const RequestResult & res = rt.result(id);
    ASSERT_EQ(res.threads.size(), 3u);
    const ThreadRecord & root = res.threads[0];
    EXPECT_EQ(root.state, ThreadState::done) << root.end_reason;
    EXPECT_EQ(root.compactions, ContextRot::kMaxCompactions);
    EXPECT_TRUE(root.spawns.empty());
    for (size_t i = 1; i < 3; ++i) {
        EXPECT_EQ(res.threads[i].label, "summary");
        EXPECT_EQ(res.threads[i].parent, 0);
        EXPECT_EQ(res.threads[i].state, ThreadState::done) << res.threads[i].end_reason;
        EXPECT_TRUE(res.threads[i].probes.empty());  // a summary is not probed
    }
    EXPECT_TRUE(root.text.starts_with(prompt + ContextRot::summary_plan().lead + "The answer so far is 42.\n")) << root.text;
    const auto compacted = reasons(root, "compact");
    ASSERT_EQ(compacted.size(), 4u);  // two summaries asked for, two contexts replaced
    EXPECT_NE(compacted[0].find("summarizing: thread 1"), std::string::npos) << compacted[0];
    EXPECT_NE(compacted[1].find("dropped"), std::string::npos) << compacted[1];
    // After both, the next crossing narrows instead.
    bool narrowed = false;
    for (const auto & r : reasons(root, "probe")) narrowed |= r.find("half width") != std::string::npos;
    EXPECT_TRUE(narrowed);
    // Every token accounted: the summaries' count in the request's.
    int64_t generated = 0;
    for (const auto & t : res.threads) generated += t.generated_tokens;
    EXPECT_EQ(generated, res.metrics.generated_tokens);
    // The thread waited on each summary: all of it is on the dependency chain.
    EXPECT_EQ(res.metrics.sequential_tokens, generated);
    EXPECT_EQ(backend.usage().live_sequences, 0u);
}

// Sampled: a summary ends at its length as written (not failed), the thread goes on to its own budget;
// a request cancelled while its thread waits on a summary ends both and leaves no sequence behind.
TEST(Policies, ContextRotSummaryEndsAtItsLengthAndDiesWithItsRequest) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    Runtime rt(backend);
    const auto loud = [] { return std::make_shared<ContextRot>(std::make_shared<DefaultController>(), TaskHooks{}, 16, thresholds_at(-1e9)); };
    const std::string prompt = "a question for the summarizer: ";
    const RequestId id = rt.submit(prompt, budgeted(60, loud()));
    rt.run();
    const RequestResult & res = rt.result(id);
    ASSERT_EQ(res.threads.size(), 3u);
    const ThreadRecord & root = res.threads[0];
    EXPECT_EQ(root.generated_tokens, 60);  // its own budget, summaries apart
    EXPECT_EQ(root.compactions, 2);
    EXPECT_TRUE(root.text.starts_with(prompt + ContextRot::summary_plan().lead)) << root.text;
    for (size_t i = 1; i < 3; ++i) {
        EXPECT_EQ(res.threads[i].state, ThreadState::done) << res.threads[i].end_reason;
        // Its own length, within the request's per-thread budget.
        EXPECT_EQ(res.threads[i].generated_tokens, std::min(ContextRot::summary_plan().max_tokens, 60));
        EXPECT_NE(res.threads[i].end_reason.find("summary length"), std::string::npos) << res.threads[i].end_reason;
    }
    EXPECT_EQ(backend.usage().live_sequences, 0u);

    // Cancelled mid-summary.
    const RequestId c = rt.submit(prompt, budgeted(60, loud()));
    for (int i = 0; i < 1000 && rt.stats().threads_waiting == 0; ++i) rt.step();
    ASSERT_EQ(rt.stats().threads_waiting, 1);
    for (int i = 0; i < 3; ++i) rt.step();  // the summarizer is decoding
    rt.cancel(c, "client went away");
    rt.run();
    const RequestResult & cancelled = rt.result(c);
    ASSERT_EQ(cancelled.threads.size(), 2u);
    EXPECT_EQ(cancelled.threads[1].label, "summary");
    EXPECT_EQ(cancelled.threads[1].state, ThreadState::cancelled);
    EXPECT_EQ(backend.usage().live_sequences, 0u);
}

// A thread that ends while its summarizer writes takes the summarizer with it: here early stop cancels
// a child waiting on its summary when its sibling settles the question; the summary is cancelled, not
// left to write to its budget, and no sequence is left behind.
TEST(Policies, AThreadEndedWhileSummarizedTakesItsSummarizerWithIt) {
    llama::LlamaBackend backend(tiny_model(), backend_options());
    Runtime rt(backend);
    TaskHooks hooks;
    hooks.settles = settles_on_goal;
    RequestOptions o;
    o.dialect = std::shared_ptr<const dialects::Dialect>(dialects::make_apr_dialect());
    Limits limits;
    limits.thread_token_budget = 400;
    o.limits = limits;
    o.controller = std::make_shared<EarlyStop>(std::make_shared<ContextRot>(std::make_shared<DefaultController>(), hooks, 16, thresholds_at(-1e9)), hooks);
    o.script = [](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.label == "summary") {
            // It reads its thread's context: the child at 10 gets a summary that never ends on its own,
            // the others an empty one (they go on at once).
            if (first_number(t.text) != 10) return std::nullopt;
            return std::string("still summarizing ");
        }
        if (t.depth == 0) {
            if (t.text.find("<Sub Searches>") != std::string::npos) return t.text.ends_with("Done\n") ? std::nullopt : std::optional<std::string>("Done\n");
            return spawn_block("0", 2);
        }
        if (first_number(t.text) == 11) {  // thread 2 finds it
            if (t.text.find("Goal Reached") != std::string::npos) return std::nullopt;
            return std::string(t.text.find("step\n") == std::string::npos ? "step\n" : "24,24 equal: Goal Reached\n");
        }
        return std::string("step\n");
    };
    const RequestId id = rt.submit(kRoot, o);
    rt.run();
    const RequestResult & res = rt.result(id);
    ASSERT_TRUE(res.ok) << res.end_reason;
    const ThreadRecord * summary_of_1 = nullptr;
    for (const auto & t : res.threads) {
        if (t.label == "summary" && t.parent > 0 && first_number(res.threads[static_cast<size_t>(t.parent)].text) == 10) summary_of_1 = &t;
    }
    ASSERT_NE(summary_of_1, nullptr) << "the child at 10 was never summarized: nothing tested";
    EXPECT_EQ(res.threads[static_cast<size_t>(summary_of_1->parent)].state, ThreadState::cancelled);
    EXPECT_EQ(summary_of_1->state, ThreadState::cancelled) << summary_of_1->end_reason;
    EXPECT_EQ(summary_of_1->end_reason, "parent ended");
    EXPECT_LT(summary_of_1->generated_tokens, ContextRot::summary_plan().max_tokens);
    EXPECT_EQ(backend.usage().live_sequences, 0u);
}
