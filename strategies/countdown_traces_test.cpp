// Training examples from the model's own runs: what is kept, how it is cut, and the JSONL round trip.
// The threads are hand-built in the shapes the runtime records (a native run of 21 from [84, 88, 17]
// as the shipped model wrote it), so every kept and refused case is exact.
#include "strategies/countdown_traces.h"

#include "base/error.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

using namespace forkjoin;
using strategies::TracePart;

namespace {

const countdown::Problem kProblem{{84, 88, 17}, 21};
const std::string kRootHead = "<|parallel|>\nMoving to Node #0\nCurrent State: 21:[84, 88, 17], Operations: []\n";
const std::string kExpansion =
    "Exploring Operation: 88-84=4, Resulting Numbers: [17, 4]\n"
    "Generated Node #0,0: 21:[17, 4] Operation: 88-84=4\n"
    "Exploring Operation: 88-17=71, Resulting Numbers: [84, 71]\n"
    "Generated Node #0,1: 21:[84, 71] Operation: 88-17=71\n";
const std::string kJoin =
    "<Sub Searches>\n"
    "<Goal Reached in Sub Search 0 at level 1 at Node #0,0>\n"
    "Moving to Node #0,0\nCurrent State: 21:[17, 4], Operations: ['88-84=4']\n"
    "Exploring Operation: 17+4=21, Resulting Numbers: [21]\n21,21 equal: Goal Reached\n"
    "<No Solution in Sub Search 1 at level 1 at Node #0,1>\n"
    "<End Sub Searches>\n";
const std::string kAfter =
    "21,21 equal: Goal Reached\nMoving to Node #0\nCurrent State: 21:[84, 88, 17], Operations: []\n"
    "Exploring Operation: 88-84=4, Resulting Numbers: [17, 4]\nGenerated Node #0,0: 21:[17, 4] Operation: 88-84=4\n"
    "Moving to Node #0,0\nCurrent State: 21:[17, 4], Operations: ['88-84=4']\n"
    "Exploring Operation: 17+4=21, Resulting Numbers: [21]\n21,21 equal: Goal Reached\n";
const std::string kGoalChild =
    "<|sequential|>\nMoving to Node #0,0\nCurrent State: 21:[17, 4], Operations: ['88-84=4']\n"
    "Exploring Operation: 17+4=21, Resulting Numbers: [21]\n21,21 equal: Goal Reached\n"
    "Moving to Node #0,0\nCurrent State: 21:[17, 4], Operations: ['88-84=4']\n"
    "Exploring Operation: 17+4=21, Resulting Numbers: [21]\n21,21 equal: Goal Reached\n";
const std::string kNoSolutionChild =
    "<|sequential|>\nMoving to Node #0,1\nCurrent State: 21:[84, 71], Operations: ['88-17=71']\n"
    "Exploring Operation: 84-71=13, Resulting Numbers: [13]\n13,21 unequal: No Solution\nNo solution found.\n";

runtime::ThreadRecord thread(int id, int parent, std::string label, std::string text,
                             runtime::ThreadState state = runtime::ThreadState::done) {
    runtime::ThreadRecord t;
    t.id = id;
    t.parent = parent;
    t.label = std::move(label);
    t.text = std::move(text);
    t.state = state;
    return t;
}

strategies::CountdownOutcome native_run(std::vector<runtime::ThreadRecord> children, bool solved = true) {
    strategies::CountdownOutcome o;
    o.problem = kProblem;
    o.solved = solved;
    o.threads.push_back(thread(0, -1, "", kRootHead + kExpansion + kJoin + kAfter));
    for (auto & c : children) o.threads.push_back(std::move(c));
    return o;
}

}  // namespace

TEST(CountdownTraces, ANativeRunGivesTheRootsTwoContextsAndItsRightChildren) {
    strategies::TraceYield yield;
    const auto traces = strategies::training_traces(
        native_run({thread(1, 0, "0,0", kGoalChild), thread(2, 0, "0,1", kNoSolutionChild)}), strategies::CountdownStrategy::native,
        yield);
    ASSERT_EQ(traces.size(), 4u);
    // Before the spawn: the prompt out of the loss; the expansion and the spawn block the join
    // replaced, written back in APR's form, in it.
    EXPECT_EQ(traces[0].thread, "root");
    EXPECT_EQ(traces[0].mode, "parallel");
    EXPECT_EQ(traces[0].parts, (std::vector<TracePart>{{kRootHead, false},
                                                       {kExpansion + "<Calling Sub Searches>\n"
                                                                     "<Start Sub Search 0 at level 1> Moving to Node #0,0\n"
                                                                     "<Start Sub Search 1 at level 1> Moving to Node #0,1\n"
                                                                     "<End Calling Sub Searches>\n",
                                                        true}}));
    // After the join: everything up to the join's end is context; the continuation is learned.
    EXPECT_EQ(traces[1].parts, (std::vector<TracePart>{{kRootHead + kExpansion + kJoin, false}, {kAfter, true}}));
    // Children: their two first lines are their prompt.
    EXPECT_EQ(traces[2].thread, "child");
    EXPECT_EQ(traces[2].label, "0,0");
    EXPECT_EQ(traces[2].parts[0].text,
              "<|sequential|>\nMoving to Node #0,0\nCurrent State: 21:[17, 4], Operations: ['88-84=4']\n");
    EXPECT_EQ(traces[2].text(), kGoalChild);
    EXPECT_EQ(traces[3].label, "0,1");
    EXPECT_EQ(yield.roots_kept, 1);
    EXPECT_EQ(yield.children_kept, 2);
}

TEST(CountdownTraces, WrongVerdictsUnfinishedChildrenAndUnsolvedRootsGiveNothing) {
    // "No Solution" at a node that has one (17+4), a goal reached by wrong arithmetic, a child the
    // window stopped: none is kept. The root did not solve the problem: its contexts are not kept,
    // while its right child still is (a child's context is its own).
    std::string missed = kNoSolutionChild;
    const std::string node = "0,1\nCurrent State: 21:[84, 71], Operations: ['88-17=71']";
    missed.replace(missed.find(node), node.size(), "0,0\nCurrent State: 21:[17, 4], Operations: ['88-84=4']");
    std::string bad_goal = kGoalChild;
    for (size_t at; (at = bad_goal.find("17+4=21")) != std::string::npos;) bad_goal.replace(at, 7, "17*4=21");
    strategies::TraceYield yield;
    const auto traces = strategies::training_traces(native_run({thread(1, 0, "0,0", missed), thread(2, 0, "0,0", bad_goal),
                                                                thread(3, 0, "0,1", kNoSolutionChild, runtime::ThreadState::failed),
                                                                thread(4, 0, "0,1", kNoSolutionChild)},
                                                               /*solved=*/false),
                                                    strategies::CountdownStrategy::native, yield, /*correct_joins=*/false);
    ASSERT_EQ(traces.size(), 1u);
    EXPECT_EQ(traces[0].text(), kNoSolutionChild);
    EXPECT_EQ(yield.roots_unsolved, 1);
    EXPECT_EQ(yield.children_wrong_lines, 0);
    EXPECT_EQ(yield.children_wrong, 2);
    EXPECT_EQ(yield.children_unfinished, 1);
    EXPECT_EQ(yield.children_kept, 1);
}

TEST(CountdownTraces, ARightAnswerWithAWrongLineIsNotLearned) {
    // The root solved the problem but explored 88-84 twice at its node (the shipped model does); the
    // child's verdict is right (no solution at [84, 71]) but 84-71 is not 12.
    std::string twice = kRootHead + kExpansion + kJoin + kAfter;
    twice.replace(twice.find("<Sub Searches>"), 0, "Exploring Operation: 88-84=4, Resulting Numbers: [17, 4]\n");
    std::string bad_sum = kNoSolutionChild;
    bad_sum.replace(bad_sum.find("84-71=13, Resulting Numbers: [13]\n13,21"), 39, "84-71=12, Resulting Numbers: [12]\n12,21");
    strategies::CountdownOutcome o = native_run({thread(1, 0, "0,1", bad_sum), thread(2, 0, "0,0", kGoalChild)});
    o.threads[0].text = twice;
    strategies::TraceYield yield;
    const auto traces = strategies::training_traces(o, strategies::CountdownStrategy::native, yield);
    // The root's continuation after its join is right, and it is learned as a correction: the wrong
    // line before the spawn is context, not in the loss.
    ASSERT_EQ(traces.size(), 2u);
    EXPECT_EQ(traces[0].thread, "join");
    EXPECT_EQ(traces[0].parts[1], (TracePart{kAfter, true}));
    EXPECT_EQ(traces[1].label, "0,0");
    EXPECT_EQ(yield.roots_wrong_lines, 1);
    EXPECT_EQ(yield.roots_kept, 0);
    EXPECT_EQ(yield.children_wrong_lines, 1);
    EXPECT_EQ(yield.children_kept, 1);
}

TEST(CountdownTraces, AnUnsolvedRootsJoinIsContinuedAsTheSymbolicWriterWould) {
    // The root's join holds a verified goal (node #0,0), but the root copied a wrong step into its
    // clean path (the shipped model's most common fault). The correction: the root's context up to
    // the join's end, then exactly what the symbolic writer writes after that join (kAfter), in the
    // loss; the root's own continuation is not learned.
    std::string wrong_after = kAfter;
    wrong_after.replace(wrong_after.rfind("17+4=21, Resulting Numbers: [21]\n21,21 equal"), 46,
                        "17*4=68, Resulting Numbers: [68]\n68,21 unequal: No Solution\nNo solution found.");
    strategies::CountdownOutcome o = native_run({thread(1, 0, "0,0", kGoalChild)}, /*solved=*/false);
    o.threads[0].text = kRootHead + kExpansion + kJoin + wrong_after;
    strategies::TraceYield yield;
    auto traces = strategies::training_traces(o, strategies::CountdownStrategy::native, yield);
    ASSERT_EQ(traces.size(), 2u);
    EXPECT_EQ(traces[0].thread, "join");
    EXPECT_EQ(traces[0].mode, "parallel");
    EXPECT_EQ(traces[0].parts, (std::vector<TracePart>{{kRootHead + kExpansion + kJoin, false}, {kAfter, true}}));
    EXPECT_EQ(traces[1].thread, "child");
    EXPECT_EQ(yield.roots_unsolved, 1);
    EXPECT_EQ(yield.joins_corrected, 1);
    // Without corrections, only the child.
    strategies::TraceYield plain;
    EXPECT_EQ(strategies::training_traces(o, strategies::CountdownStrategy::native, plain, /*correct_joins=*/false).size(), 1u);
    EXPECT_EQ(plain.joins_corrected, 0);

    // The writer's rule: the first goal in the join's order that verifies. A first goal reached by a
    // wrong sum is passed over for the second; a join whose only goal is wrong gives no correction.
    const std::string bad_first =
        "<Sub Searches>\n"
        "<Goal Reached in Sub Search 0 at level 1 at Node #0,1>\n"
        "Moving to Node #0,1\nCurrent State: 21:[84, 71], Operations: ['88-17=71']\n"
        "Exploring Operation: 84-71=21, Resulting Numbers: [21]\n21,21 equal: Goal Reached\n"
        "<Goal Reached in Sub Search 1 at level 1 at Node #0,0>\n"
        "Moving to Node #0,0\nCurrent State: 21:[17, 4], Operations: ['88-84=4']\n"
        "Exploring Operation: 17+4=21, Resulting Numbers: [21]\n21,21 equal: Goal Reached\n"
        "<End Sub Searches>\n";
    o.threads[0].text = kRootHead + kExpansion + bad_first + wrong_after;
    traces = strategies::training_traces(o, strategies::CountdownStrategy::native, yield);
    ASSERT_EQ(traces.size(), 2u);
    EXPECT_EQ(traces[0].parts, (std::vector<TracePart>{{kRootHead + kExpansion + bad_first, false}, {kAfter, true}}));
    std::string only_bad = bad_first;
    only_bad.erase(only_bad.find("<Goal Reached in Sub Search 1"), only_bad.find("<End Sub") - only_bad.find("<Goal Reached in Sub Search 1"));
    o.threads[0].text = kRootHead + kExpansion + only_bad + wrong_after;
    EXPECT_EQ(strategies::training_traces(o, strategies::CountdownStrategy::native, yield).size(), 1u);
    // A path whose state contradicts its own operations (a wrong line) is not copied either.
    std::string bad_state = kJoin;
    bad_state.replace(bad_state.find("21:[17, 4], Operations"), 10, "21:[17, 5]");
    o.threads[0].text = kRootHead + kExpansion + bad_state + wrong_after;
    EXPECT_EQ(strategies::training_traces(o, strategies::CountdownStrategy::native, yield).size(), 1u);
    EXPECT_EQ(yield.joins_corrected, 2);
    // A solved, kept root needs no correction: its own continuation is the example.
    strategies::TraceYield solved;
    traces = strategies::training_traces(native_run({thread(1, 0, "0,0", kGoalChild)}), strategies::CountdownStrategy::native, solved);
    EXPECT_EQ(solved.joins_corrected, 0);
    for (const auto & t : traces) EXPECT_NE(t.thread, "join");
}

TEST(CountdownTraces, ASequentialRunIsOneExampleAndAnUnreadableRootIsCounted) {
    strategies::CountdownOutcome o;
    o.problem = kProblem;
    o.solved = true;
    const std::string head = "<|sequential|>\nMoving to Node #0\nCurrent State: 21:[84, 88, 17], Operations: []\n";
    const std::string search = kExpansion +
                               "Moving to Node #0,0\nCurrent State: 21:[17, 4], Operations: ['88-84=4']\n"
                               "Exploring Operation: 17+4=21, Resulting Numbers: [21]\n" +
                               kAfter;
    o.threads.push_back(thread(0, -1, "", head + search));
    strategies::TraceYield yield;
    auto traces = strategies::training_traces(o, strategies::CountdownStrategy::sequential, yield);
    ASSERT_EQ(traces.size(), 1u);
    EXPECT_EQ(traces[0].parts, (std::vector<TracePart>{{head, false}, {search, true}}));
    EXPECT_EQ(traces[0].mode, "sequential");
    // A join in a sequential run, or a text that does not start with the problem's prompt: counted,
    // never kept.
    o.threads[0].text = head + kExpansion + kJoin + kAfter;
    EXPECT_TRUE(strategies::training_traces(o, strategies::CountdownStrategy::sequential, yield).empty());
    o.threads[0].text = "<|sequential|>\nMoving to Node #0\nCurrent State: 24:[84, 88, 17], Operations: []\n" + kAfter;
    EXPECT_TRUE(strategies::training_traces(o, strategies::CountdownStrategy::sequential, yield).empty());
    EXPECT_EQ(yield.roots_kept, 1);
    EXPECT_EQ(yield.roots_unreadable, 2);
    EXPECT_THROW(strategies::training_traces(o, strategies::CountdownStrategy::best_of_n, yield), Error);
}

TEST(CountdownTraces, JsonLinesRoundTripAndMalformedLinesNameTheirPlace) {
    strategies::TraceYield yield;
    const auto traces = strategies::training_traces(native_run({thread(1, 0, "0,0", kGoalChild)}), strategies::CountdownStrategy::native, yield);
    const auto path = (std::filesystem::temp_directory_path() / "forkjoin-traces-test.jsonl").string();
    {
        std::ofstream out(path);
        for (const auto & t : traces) out << strategies::to_json_line(t) << "\n\n";
    }
    const auto back = strategies::read_training_traces(path);
    ASSERT_EQ(back.size(), traces.size());
    for (size_t i = 0; i < back.size(); ++i) {
        EXPECT_EQ(back[i].problem, traces[i].problem);
        EXPECT_EQ(back[i].mode, traces[i].mode);
        EXPECT_EQ(back[i].thread, traces[i].thread);
        EXPECT_EQ(back[i].label, traces[i].label);
        EXPECT_EQ(back[i].parts, traces[i].parts);
    }
    auto refused = [](const std::string & line) {
        try {
            strategies::parse_training_trace(line, "t.jsonl:7");
        } catch (const Error & e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_NE(refused("{\"problem\"").find("t.jsonl:7: not JSON"), std::string::npos);
    EXPECT_NE(refused("{\"problem\":{\"nums\":[1,2],\"target\":3},\"mode\":\"sequential\",\"thread\":\"root\"}").find("t.jsonl:7: not a training trace"),
              std::string::npos);
    EXPECT_NE(refused("{\"problem\":{\"nums\":[1,2],\"target\":3},\"mode\":\"both\",\"thread\":\"root\",\"parts\":[{\"text\":\"a\",\"loss\":true}]}")
                  .find("mode is sequential or parallel"),
              std::string::npos);
    EXPECT_NE(refused("{\"problem\":{\"nums\":[1,2],\"target\":3},\"mode\":\"sequential\",\"thread\":\"root\",\"parts\":[{\"text\":\"a\",\"loss\":false}]}")
                  .find("nothing to learn from"),
              std::string::npos);
    std::filesystem::remove(path);
}
