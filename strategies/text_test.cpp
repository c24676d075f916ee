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
