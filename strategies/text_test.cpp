// Text strategies on the real runtime and backend, driven by scripted streams (no instruct model
// ships offline), plus answer extraction and outline parsing.
#include "backends/llama/backend.h"
#include "strategies/text.h"
#include "tasks/answer.h"
#include "tools/testmodel/test_model.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

using namespace forkjoin;
using namespace forkjoin::strategies;

namespace {
llama::LlamaBackend & backend() {
    static auto model = llama::Model::load(testmodel::ensure_test_model(FORKJOIN_TEST_MODEL_DIR, testmodel::test_model_spec("1M")));
    static llama::LlamaBackend b(model, [] {
        llama::BackendOptions o;
        o.n_ctx = 8192;
        o.n_seq_max = 16;
        o.n_batch = o.n_ubatch = 2048;  // every worker's prompt fits one step: starting together means one batch
        return o;
    }());
    return b;
}
}  // namespace

TEST(Answer, ExtractsBoxedThenStatedThenLastNumber) {
    EXPECT_EQ(tasks::extract_answer("so \\boxed{\\frac{1}{2}} then \\boxed{42}."), "42");
    EXPECT_EQ(tasks::extract_answer("The answer is 1,234.\nmore"), "1,234");
    EXPECT_EQ(tasks::extract_answer("Final Answer: Paris.\n"), "Paris");
    EXPECT_EQ(tasks::extract_answer("we get -3.5 and then 17 apples"), "17");
    EXPECT_EQ(tasks::extract_answer("no numbers here"), "");
    EXPECT_EQ(tasks::majority_vote({"7", "", "8", "7", "8", "8"}), "8");
    EXPECT_EQ(tasks::majority_vote({"", ""}), "");
}

TEST(PlanExecute, OutlinesParseInCommonForms) {
    EXPECT_EQ(parse_outline("1. a\n2) b\n  3: c\nnot an item\n4.\n5. e", 10), (std::vector<std::string>{"a", "b", "c", "e"}));
    EXPECT_EQ(parse_outline("1. a\n2. b\n3. c", 2).size(), 2u);
}

TEST(PlanExecute, TemplatesLoadAndUnknownKeysAreErrors) {
    const auto dir = std::filesystem::temp_directory_path();
    std::ofstream(dir / "fj-templates.json") << R"({"work": "Q {question} #{index}: {item}\n"})";
    EXPECT_EQ(load_templates((dir / "fj-templates.json").string()).work, "Q {question} #{index}: {item}\n");
    std::ofstream(dir / "fj-templates-bad.json") << R"({"wrok": "x"})";
    EXPECT_THROW(load_templates((dir / "fj-templates-bad.json").string()), Error);
}

// The planner's items each get a worker with the question and the whole outline; workers run in
// flight together; the summarizer sees every result; the chain is plan + longest worker + summary.
TEST(PlanExecute, RunsPlannerWorkersAndSummarizer) {
    TextOptions o;
    o.strategy = "plan-execute";
    o.limits.thread_token_budget = 400;
    bool workers_saw_outline = true, summary_saw_results = false;
    std::map<int, int64_t> worker_fed_at;  // the backend's step count when each worker got its text
    o.script = [&](const std::string & phase, int index, const runtime::ThreadRecord & t) -> std::optional<std::string> {
        const bool started = t.text.ends_with(":") || t.text.ends_with("1.");
        if (!started) return std::nullopt;  // one piece each, then stop
        if (phase == "plan") return std::string(" add the tens\n2. add the ones\n3. combine them\n");
        if (phase == "work") {
            worker_fed_at[index] = backend().stats().steps;
            workers_saw_outline &= t.text.find("Plan:\n1. add the tens\n2. add the ones\n3. combine them\n") != std::string::npos &&
                                   t.text.find("sub-task " + std::to_string(index + 1) + ":") != std::string::npos;
            return " part " + std::to_string(index + 1);
        }
        summary_saw_results = t.text.find("Sub-task 2: add the ones\nResult: part 2\n") != std::string::npos;
        return std::string(" the answer is 57");
    };
    const auto r = run_text(backend(), "What is 23 + 34?", o);
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.items, (std::vector<std::string>{"add the tens", "add the ones", "combine them"}));
    EXPECT_TRUE(workers_saw_outline);
    EXPECT_TRUE(summary_saw_results);
    EXPECT_EQ(r.answer, "57");
    EXPECT_EQ(r.outputs.size(), 3u);
    EXPECT_EQ(r.metrics.threads, 5);
    EXPECT_LT(r.metrics.sequential_tokens, r.metrics.generated_tokens);
    // The workers overlapped: all three got their text before the same decode step, so it was decoded
    // in one batch (run one after another, each would have waited for the previous one's steps).
    ASSERT_EQ(worker_fed_at.size(), 3u);
    EXPECT_EQ(worker_fed_at[0], worker_fed_at[1]);
    EXPECT_EQ(worker_fed_at[1], worker_fed_at[2]);
}

TEST(SelfConsistency, MajorityOverExtractedAnswers) {
    TextOptions o;
    o.strategy = "self-consistency";
    o.samples = 5;
    o.sampling.temperature = 0.8f;
    const char * said[] = {"answer: 7", "I think 8", "so 7", "\\boxed{7}", "answer: 9"};
    o.script = [&](const std::string &, int index, const runtime::ThreadRecord & t) -> std::optional<std::string> {
        if (t.text.find(said[index]) != std::string::npos) return std::nullopt;
        return std::string(said[index]);
    };
    const auto r = run_text(backend(), "Q: ", o);
    EXPECT_TRUE(r.ok);
    EXPECT_EQ(r.answer, "7");
    EXPECT_EQ(r.outputs.size(), 5u);
    o.sampling.temperature = 0.0f;
    EXPECT_THROW(run_text(backend(), "Q: ", o), Error);
}

TEST(Answer, WeightedVoteWeighsAnswersAndBreaksTiesByWhoGotThereFirst) {
    const auto v = tasks::weighted_vote({"7", "8", "", "8", "7"}, {3.0, 1.0, 9.0, 1.5, 0.5});
    EXPECT_EQ(v.answer, "7");  // 3.5 against 2.5; the empty answer's weight counts for nothing
    EXPECT_EQ(v.count, 2);
    EXPECT_DOUBLE_EQ(v.weight, 3.5);
    EXPECT_DOUBLE_EQ(v.share, 3.5 / 6.0);
    // All weights 1: the majority; a tie goes to the answer that reached it first.
    EXPECT_EQ(tasks::weighted_vote({"a", "b", "b", "a"}).answer, "b");
    EXPECT_EQ(tasks::weighted_vote({"", ""}).answer, "");
    EXPECT_DOUBLE_EQ(tasks::weighted_vote({"", ""}).share, 0.0);
    EXPECT_THROW(tasks::weighted_vote({"a"}, {1.0, 2.0}), Error);
}

// Self-consistency under the confidence policy runs as DeepConf does online: the warm-up samples
// first, the rest once they ended, and it stops once the answers agree (the samples still running are
// cancelled and said so). Scripted samples carry no confidence, so each weighs 1.
TEST(SelfConsistency, WithConfidenceWarmsUpFirstAndStopsAtConsensus) {
    TextOptions o;
    o.strategy = "self-consistency";
    o.samples = 5;
    o.sampling.temperature = 0.8f;
    o.controller = "confidence";
    std::vector<bool> ended(5, false);
    bool waited_for_warmup = true;
    std::vector<bool> seen(5, false);
    o.script = [&](const std::string &, int index, const runtime::ThreadRecord & t) -> std::optional<std::string> {
        const size_t i = static_cast<size_t>(index);
        if (!seen[i] && index >= 2) waited_for_warmup &= ended[0] && ended[1];
        seen[i] = true;
        if (index <= 2) {  // three quick samples that agree
            if (t.text.find("answer: 7") != std::string::npos) {
                ended[i] = true;
                return std::nullopt;
            }
            return std::string("answer: 7");
        }
        return std::string(" still thinking");  // two slow ones, until their budget
    };
    o.limits.thread_token_budget = 200;
    const auto r = run_text(backend(), "Q: ", o);
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.answer, "7");
    EXPECT_TRUE(waited_for_warmup);
    ASSERT_EQ(r.notes.size(), 1u);
    EXPECT_NE(r.notes[0].find("consensus after 3 of 5 samples: 3 gave the leading answer"), std::string::npos) << r.notes[0];
    EXPECT_NE(r.notes[0].find("2 samples not needed"), std::string::npos) << r.notes[0];
    // Without the policy all five start at once and all are waited for.
    o.controller = "default";
    std::fill(ended.begin(), ended.end(), false);
    std::fill(seen.begin(), seen.end(), false);
    waited_for_warmup = true;
    const auto plain = run_text(backend(), "Q: ", o);
    EXPECT_EQ(plain.answer, "7");
    EXPECT_FALSE(waited_for_warmup);
    EXPECT_TRUE(plain.notes.empty());
    EXPECT_GT(plain.metrics.generated_tokens, r.metrics.generated_tokens);
}

TEST(PlanGraph, NeedsAreReadAndBadGraphsRunInOrder) {
    const auto g = make_plan_graph({"add the tens", "(needs 1) add the ones", "(needs 1, 2) combine them"});
    EXPECT_EQ(g.items, (std::vector<std::string>{"add the tens", "add the ones", "combine them"}));
    EXPECT_EQ(g.needs, (std::vector<std::vector<int>>{{}, {0}, {0, 1}}));
    EXPECT_TRUE(g.error.empty());
    const auto cycle = make_plan_graph({"(needs 2) a", "(needs 1) b"});
    EXPECT_NE(cycle.error.find("cycle"), std::string::npos) << cycle.error;
    EXPECT_EQ(cycle.needs, (std::vector<std::vector<int>>{{}, {0}}));  // in order
    const auto unknown = make_plan_graph({"a", "(needs 7) b"});
    EXPECT_NE(unknown.error.find("needs item 7"), std::string::npos) << unknown.error;
    EXPECT_EQ(needs_marker("I cannot. NEEDS: 3"), 2);
    EXPECT_FALSE(needs_marker("the result is 12").has_value());
}

namespace {
// Runs plan-execute with a scripted planner `plan`, workers answering by `work` (given their item
// index and context), and a summarizer that echoes; returns the result and, per item, the decode step
// at which its worker got its text.
struct PlanRun {
    TextResult r;
    std::map<int, std::vector<int64_t>> fed_at;
    std::map<int, std::string> context;  // each item's last worker context
    std::string summary_context;
};
// With `verdict`, the validate policy is on and the validator answers verdict(round) (rounds from 1).
PlanRun run_plan(const std::string & plan, std::function<std::string(int, const std::string &, int attempt)> work,
                 std::function<std::string(int round)> verdict = {}) {
    PlanRun out;
    TextOptions o;
    o.strategy = "plan-execute";
    int rounds = 0;
    if (verdict) o.controller = "validate";
    o.limits.thread_token_budget = 400;
    std::map<int, std::vector<std::string>> pieces;  // per item: what its worker still has to write
    o.script = [&](const std::string & phase, int index, const runtime::ThreadRecord & t) -> std::optional<std::string> {
        if (phase == "work" && !pieces[index].empty() && !t.text.ends_with("Result:")) {
            std::string next = pieces[index].front();
            pieces[index].erase(pieces[index].begin());
            return next;
        }
        if (!(t.text.ends_with(":") || t.text.ends_with("1."))) return std::nullopt;
        if (phase == "plan") return plan;
        if (phase == "validate") return " " + verdict(++rounds);
        if (phase == "work") {
            out.fed_at[index].push_back(backend().stats().steps);
            out.context[index] = t.text;
            // "a|b|c": one piece per step, so a worker can take longer than another.
            const std::string all = " " + work(index, t.text, static_cast<int>(out.fed_at[index].size()) - 1);
            std::vector<std::string> parts;
            size_t from = 0;
            for (size_t bar = all.find('|'); bar != std::string::npos; from = bar + 1, bar = all.find('|', from)) parts.push_back(all.substr(from, bar - from));
            parts.push_back(all.substr(from));
            pieces[index].assign(parts.begin() + 1, parts.end());
            return parts[0];
        }
        out.summary_context = t.text;
        return std::string(" done");
    };
    out.r = run_text(backend(), "What is 23 + 34?", o);
    return out;
}
}  // namespace

// A dependent item runs after its inputs, with their results in its context; independent ones together.
TEST(PlanExecute, DependentItemsRunAfterTheirInputs) {
    const auto p = run_plan(" add the tens\n2. add the ones\n3. (needs 1, 2) combine them\n",
                            [](int i, const std::string &, int) { return "part " + std::to_string(i + 1); });
    ASSERT_TRUE(p.r.ok) << p.r.error;
    EXPECT_EQ(p.r.items.back(), "combine them");
    EXPECT_EQ(p.fed_at.at(0), p.fed_at.at(1));       // together
    EXPECT_GT(p.fed_at.at(2)[0], p.fed_at.at(1)[0]);  // after them
    EXPECT_NE(p.context.at(2).find("Results it needs:\nSub-task 1: add the tens\nResult: part 1\nSub-task 2: add the ones\nResult: part 2\n"),
              std::string::npos)
        << p.context.at(2);
    EXPECT_EQ(p.context.at(0).find("Results it needs"), std::string::npos);
}

// A worker that says it needs another item's result is re-queued after it (that item was running).
TEST(PlanExecute, AWorkerThatNeedsAnotherItemIsReorderedAfterIt) {
    const auto p = run_plan(" add the tens\n2. add the ones\n", [](int i, const std::string & ctx, int attempt) -> std::string {
        if (i == 1 && attempt == 0) return "NEEDS: 1";
        if (i == 1) return ctx.find("Result: part 1") != std::string::npos ? "part 2 using part 1" : "part 2 blind";
        return "part 1";
    });
    ASSERT_TRUE(p.r.ok) << p.r.error;
    ASSERT_EQ(p.fed_at.at(1).size(), 2u);
    EXPECT_EQ(p.r.outputs.at(1), " part 2 using part 1");
    ASSERT_EQ(p.r.notes.size(), 1u);
    EXPECT_EQ(p.r.notes[0], "item 2 needs item 1's result: re-queued after it");
}

// A worker that needs an item that has not started is merged into it.
TEST(PlanExecute, AWorkerThatNeedsAnUnstartedItemIsMergedIntoIt) {
    const auto p = run_plan(" add the tens\n2. (needs 1) add the ones\n3. combine them\n",
                            [](int i, const std::string &, int) -> std::string {
                                if (i == 2) return "NEEDS: 2";  // item 2 waits for item 1: not started yet
                                if (i == 0) return "part| 1| still| going";  // item 1 takes longer than item 3
                                return "part " + std::to_string(i + 1);
                            });
    ASSERT_TRUE(p.r.ok) << p.r.error;
    ASSERT_EQ(p.r.notes.size(), 1u);
    EXPECT_EQ(p.r.notes[0], "item 3 needs item 2, which had not started: merged into it");
    EXPECT_EQ(p.r.items.at(1), "add the ones; then: combine them");
    EXPECT_NE(p.context.at(1).find("Solve only sub-task 2: add the ones; then: combine them"), std::string::npos) << p.context.at(1);
    EXPECT_EQ(p.r.outputs.at(2), "(merged into sub-task 2) part 2");
    EXPECT_NE(p.summary_context.find("Sub-task 3: combine them\nResult: (merged into sub-task 2) part 2\n"), std::string::npos)
        << p.summary_context;
}

// A plan whose needs form a cycle says so and runs its items in order.
TEST(PlanExecute, ACyclicPlanFallsBackToOrder) {
    const auto p = run_plan(" (needs 2) add the tens\n2. (needs 1) add the ones\n",
                            [](int i, const std::string &, int) { return "part " + std::to_string(i + 1); });
    ASSERT_TRUE(p.r.ok) << p.r.error;
    ASSERT_EQ(p.r.notes.size(), 1u);
    EXPECT_NE(p.r.notes[0].find("cycle"), std::string::npos);
    EXPECT_GT(p.fed_at.at(1)[0], p.fed_at.at(0)[0]);
}

// The validate policy on plan-execute: a validator reads the workers' results before the summary; the
// items it names run again (a second worker call), and it reads again; at most two rounds.
TEST(PlanExecute, AValidatorNamesItemsToRedoInBoundedRounds) {
    auto work = [](int i, const std::string &, int attempt) { return "part " + std::to_string(i + 1) + (attempt > 0 ? " again" : ""); };
    const auto redone = run_plan(" add the tens\n2. add the ones\n", work, [](int round) {
        return round == 1 ? std::string("REDO: 2") : std::string("OK");
    });
    ASSERT_TRUE(redone.r.ok) << redone.r.error;
    EXPECT_EQ(redone.fed_at.at(0).size(), 1u);
    ASSERT_EQ(redone.fed_at.at(1).size(), 2u);  // item 2 ran again
    EXPECT_EQ(redone.r.outputs.at(1), " part 2 again");
    EXPECT_EQ(redone.r.notes, (std::vector<std::string>{"validator: redo item 2 (round 1 of 2), sampled at 0.7 with new seeds",
                                                        "validator: the results hold (round 2 of 2)"}));
    EXPECT_NE(redone.summary_context.find("Result: part 2 again"), std::string::npos) << redone.summary_context;

    // A validator that never approves: two rounds, then the summary of what there is; items the plan
    // does not have are named in a note and not run.
    const auto stubborn = run_plan(" add the tens\n2. add the ones\n", work, [](int) { return std::string("REDO: 1, 9"); });
    ASSERT_TRUE(stubborn.r.ok) << stubborn.r.error;
    EXPECT_EQ(stubborn.fed_at.at(0).size(), 3u);
    EXPECT_EQ(stubborn.fed_at.at(1).size(), 1u);
    ASSERT_EQ(stubborn.r.notes.size(), 4u);
    EXPECT_EQ(stubborn.r.notes[0], "validator named items the plan does not have: 9 (round 1 of 2)");
    EXPECT_EQ(stubborn.r.notes[3], "validator: redo item 1 (round 2 of 2), sampled at 0.7 with new seeds");

    // No verdict in its answer: said so, and the summary goes on.
    const auto vague = run_plan(" add the tens\n2. add the ones\n", work, [](int) { return std::string("hmm"); });
    ASSERT_TRUE(vague.r.ok) << vague.r.error;
    ASSERT_EQ(vague.r.notes.size(), 1u);
    EXPECT_TRUE(vague.r.notes[0].starts_with("validator: no verdict")) << vague.r.notes[0];

    // Without the policy there is no validator at all.
    const auto plain = run_plan(" add the tens\n2. add the ones\n", work);
    EXPECT_TRUE(plain.r.notes.empty());
    EXPECT_EQ(plain.fed_at.at(1).size(), 1u);
}

TEST(PlanGraph, VerdictsAreRead) {
    EXPECT_EQ(read_verdict(" REDO: 2, 3\nbecause", 3).redo, (std::vector<int>{1, 2}));
    EXPECT_EQ(read_verdict("REDO: 3 and 3", 3).redo, (std::vector<int>{2}));
    EXPECT_EQ(read_verdict("REDO: 4", 3).unknown, (std::vector<int>{4}));
    EXPECT_TRUE(read_verdict(" OK", 3).read);
    EXPECT_TRUE(read_verdict(" OK", 3).redo.empty());
    EXPECT_FALSE(read_verdict("REDO: none", 3).read);
    EXPECT_FALSE(read_verdict("no idea", 3).read);
}
