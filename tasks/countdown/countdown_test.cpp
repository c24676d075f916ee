// Countdown: arithmetic rules, solver, generator, strict verifier, JSONL, and APR-format traces.
#include "base/error.h"
#include "tasks/countdown/arithmetic.h"
#include "tasks/countdown/held_out.h"
#include "tasks/countdown/problem.h"
#include "tasks/countdown/search_trace.h"
#include "tasks/countdown/prompts.h"
#include "tasks/countdown/re_exploration.h"
#include "tasks/countdown/solver.h"
#include "tasks/countdown/sub_problem.h"
#include "tasks/countdown/trace_check.h"
#include "tasks/countdown/verifier.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

using namespace forkjoin;
using namespace forkjoin::countdown;

namespace {
std::vector<Operation> ops(std::initializer_list<const char *> texts) {
    std::vector<Operation> out;
    for (const char * t : texts) out.push_back(*parse_operation(t));
    return out;
}
}  // namespace

TEST(Countdown, CombineFollowsAprsRules) {
    std::vector<std::string> got;
    for (const auto & o : combine(5, 25)) got.push_back(o.to_string());
    EXPECT_EQ(got, (std::vector<std::string>{"5+25=30", "5*25=125", "25-5=20", "25/5=5"}));
    got.clear();
    for (const auto & o : combine(7, 3)) got.push_back(o.to_string());
    EXPECT_EQ(got, (std::vector<std::string>{"7+3=10", "7*3=21", "7-3=4"}));  // 7/3 is not exact
    got.clear();
    for (const auto & o : combine(0, 4)) got.push_back(o.to_string());
    EXPECT_EQ(got, (std::vector<std::string>{"0+4=4", "0*4=0", "4-0=4"}));  // no division by 0
}

TEST(Countdown, ParseAndCheckOperations) {
    EXPECT_EQ(parse_operation("25-5=20")->to_string(), "25-5=20");
    EXPECT_EQ(parse_operation(" 3 * 4 = 12")->result, 12);
    EXPECT_FALSE(parse_operation("3x4=12"));
    EXPECT_FALSE(parse_operation("3*4=12 extra"));
    EXPECT_FALSE(arithmetic_error(*parse_operation("12/4=3")));
    EXPECT_NE(arithmetic_error(*parse_operation("3-7=-4"))->find("negative"), std::string::npos);
    EXPECT_NE(arithmetic_error(*parse_operation("7/2=3"))->find("not exact"), std::string::npos);
    EXPECT_NE(arithmetic_error(*parse_operation("3+4=8"))->find("wrong result"), std::string::npos);
    EXPECT_NE(arithmetic_error(*parse_operation("3/0=0"))->find("division by zero"), std::string::npos);
}

TEST(Countdown, SolverFindsAVerifiedSolutionOrNone) {
    const Problem p{{3, 7, 9, 5}, 24};
    const auto s = solve(p);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->size(), 3u);
    EXPECT_TRUE(verify(p, *s).ok) << verify(p, *s).reason;
    EXPECT_FALSE(solve(Problem{{1, 1, 1}, 100}));
}

TEST(Countdown, GeneratorIsDeterministicSolvableAndInRange) {
    GeneratorOptions o;
    o.count = 4;
    ProblemGenerator a(42, o), b(42, o), c(43, o);
    bool differs = false;
    for (int i = 0; i < 50; ++i) {
        const Problem x = a.next(), y = b.next(), z = c.next();
        EXPECT_EQ(x, y);
        differs |= !(x == z);
        ASSERT_EQ(x.nums.size(), 4u);
        for (int n : x.nums) EXPECT_TRUE(n >= 1 && n <= 99);
        EXPECT_TRUE(x.target >= 10 && x.target <= 100);
        EXPECT_TRUE(solve(x));
    }
    EXPECT_TRUE(differs);
}

TEST(Countdown, VerifierGivesTheReason) {
    const Problem p{{3, 7, 9, 5}, 24};
    EXPECT_TRUE(verify(p, ops({"9-5=4", "7-4=3", "3*3=9"})).reason.find("target") != std::string::npos);
    EXPECT_TRUE(verify(p, ops({"7+5=12", "9+3=12", "12+12=24"})).ok);
    EXPECT_NE(verify(p, ops({"7+5=12", "12*2=24"})).reason.find("2 is not available"), std::string::npos);
    EXPECT_NE(verify(p, ops({"7+7=14", "9+3=12"})).reason.find("7 is not available"), std::string::npos);  // reuse
    EXPECT_NE(verify(p, ops({"7*3=21", "9-5=4"})).reason.find("not every number was used"), std::string::npos);
    EXPECT_NE(verify(p, ops({"5-9=-4"})).reason.find("negative"), std::string::npos);
    EXPECT_NE(verify(p, ops({"9/5=1"})).reason.find("not exact"), std::string::npos);
    EXPECT_NE(verify(p, ops({"7+5=13"})).reason.find("wrong result"), std::string::npos);
}

TEST(Countdown, ExpressionReadsNaturally) {
    const Problem p{{3, 7, 9, 5}, 24};
    EXPECT_EQ(to_expression(p, ops({"7+5=12", "9+3=12", "12+12=24"})), "(7+5)+(9+3)");
}

TEST(Countdown, JsonLinesRoundTripAndClearErrors) {
    const Problem p = parse_problem(R"({"nums": [3, 7, 9, 5], "target": 24, "solution": "ignored"})");
    EXPECT_EQ(p, (Problem{{3, 7, 9, 5}, 24}));
    EXPECT_EQ(parse_problem(to_json_line(p)), p);
    auto fails = [](const char * line, const char * needle) {
        try {
            parse_problem(line);
            ADD_FAILURE() << "accepted " << line;
        } catch (const Error & e) {
            EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    fails(R"({"nums": [3, 7], )", "not valid JSON");
    fails(R"({"nums": [3, 7], "target": 1e999})", "not valid JSON");  // fuzz finding: threw out_of_range
    fails(R"({"target": 24})", "\"nums\"");
    fails(R"({"nums": [3, "7"], "target": 24})", "integers");
    fails(R"({"nums": [3, 7], "target": 2.5})", "\"target\"");
    fails(R"({"nums": [3], "target": 3})", "2 to 8 numbers");
    fails(R"([1, 2])", "JSON object");

    const std::string path = std::filesystem::temp_directory_path() / "forkjoin-countdown-test.jsonl";
    std::ofstream(path) << to_json_line(p) << "\n\n" << R"({"nums": [1, 2], "target": "x"})" << "\n";
    try {
        load_problems(path);
        ADD_FAILURE() << "accepted a bad file";
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find(":3:"), std::string::npos) << e.what();  // names the line
    }
}

TEST(Countdown, SequentialTraceIsAprFormatAndItsPathVerifies) {
    ProblemGenerator gen(7, GeneratorOptions{});
    int solved = 0;
    for (int i = 0; i < 200; ++i) {
        const Problem p = gen.next();
        SearchOptions o;
        o.seed = static_cast<uint64_t>(i);
        const SearchTrace t = write_search_trace(p, o);
        ASSERT_EQ(t.main_calls.size(), 1u);
        const std::string & text = t.main_calls[0];
        ASSERT_EQ(text.rfind(root_prompt(p), 0), 0u) << text;
        EXPECT_EQ(text.find("<Calling Sub Searches>"), std::string::npos);
        if (!t.solved) {
            EXPECT_TRUE(text.ends_with("No solution found.\n")) << text;
            continue;
        }
        ++solved;
        const auto path = extract_solution(text);
        ASSERT_TRUE(path.error.empty()) << path.error << "\n" << text;
        EXPECT_EQ(path.steps, t.solution);
        EXPECT_TRUE(verify(p, path.steps).ok) << verify(p, path.steps).reason << "\n" << text;
    }
    EXPECT_GT(solved, 100);  // beam 3 solves most 3-number problems
}

TEST(Countdown, ParallelTraceSpawnsJoinsAndVerifies) {
    ProblemGenerator gen(11, GeneratorOptions{});
    int spawned = 0;
    for (int i = 0; i < 200; ++i) {
        const Problem p = gen.next();
        SearchOptions o;
        o.parallel = true;
        o.seed = static_cast<uint64_t>(i);
        const SearchTrace t = write_search_trace(p, o);
        if (t.sub_calls.empty()) continue;
        ++spawned;
        ASSERT_EQ(t.main_calls.size(), 2u);
        const std::string & spawn = t.main_calls[0];
        const std::string & joined = t.main_calls[1];
        EXPECT_TRUE(spawn.ends_with("<End Calling Sub Searches>\n")) << spawn;
        const size_t block = spawn.find("<Calling Sub Searches>\n");
        ASSERT_NE(block, std::string::npos);
        // The join replaces the spawn block: the text before it is kept byte for byte.
        EXPECT_EQ(joined.substr(0, block), spawn.substr(0, block));
        EXPECT_EQ(joined.compare(block, 15, "<Sub Searches>\n"), 0) << joined;
        const auto & kids = t.sub_calls[0];
        for (size_t c = 0; c < kids.size(); ++c) {
            const std::string line_start = "<Start Sub Search " + std::to_string(c) + " at level 1> Moving to Node #";
            const size_t at = spawn.find(line_start);
            ASSERT_NE(at, std::string::npos) << spawn;
            const std::string id = spawn.substr(at + line_start.size(), spawn.find('\n', at) - at - line_start.size());
            EXPECT_EQ(kids[c].main_calls[0].rfind("Moving to Node #" + id + "\nCurrent State: ", 0), 0u);
            const std::string verdict = std::string(kids[c].solved ? "<Goal Reached" : "<No Solution") + " in Sub Search " +
                                        std::to_string(c) + " at level 1 at Node #" + id + ">\n";
            EXPECT_NE(joined.find(verdict), std::string::npos) << joined;
        }
        if (t.solved) {
            const auto path = extract_solution(joined);
            ASSERT_TRUE(path.error.empty()) << path.error << "\n" << joined;
            EXPECT_TRUE(verify(p, path.steps).ok) << joined;
        } else {
            EXPECT_TRUE(joined.ends_with("No solution found.\n"));
        }
    }
    EXPECT_GT(spawned, 150);
}

// One trace, byte for byte, checked by hand against APR's generator (src/data/search.py).
TEST(Countdown, ParallelTraceGolden) {
    SearchOptions o;
    o.parallel = true;
    o.beam_size = 2;
    o.sub_beam_size = 2;
    o.seed = 3;
    const SearchTrace t = write_search_trace(Problem{{4, 6, 2}, 12}, o);
    const std::string head =
        "Moving to Node #0\n"
        "Current State: 12:[4, 6, 2], Operations: []\n"
        "Exploring Operation: 6-4=2, Resulting Numbers: [2, 2]\n"
        "Generated Node #0,0: 12:[2, 2] Operation: 6-4=2\n"
        "Exploring Operation: 4+2=6, Resulting Numbers: [6, 6]\n"
        "Generated Node #0,1: 12:[6, 6] Operation: 4+2=6\n";
    ASSERT_EQ(t.main_calls.size(), 2u);
    EXPECT_EQ(t.main_calls[0], head +
                                   "<Calling Sub Searches>\n"
                                   "<Start Sub Search 0 at level 1> Moving to Node #0,0\n"
                                   "<Start Sub Search 1 at level 1> Moving to Node #0,1\n"
                                   "<End Calling Sub Searches>\n");
    EXPECT_EQ(t.main_calls[1], head +
                                   "<Sub Searches>\n"
                                   "<No Solution in Sub Search 0 at level 1 at Node #0,0>\n"
                                   "<Goal Reached in Sub Search 1 at level 1 at Node #0,1>\n"
                                   "Moving to Node #0,1\n"
                                   "Current State: 12:[6, 6], Operations: ['4+2=6']\n"
                                   "Exploring Operation: 6+6=12, Resulting Numbers: [12]\n"
                                   "12,12 equal: Goal Reached\n"
                                   "<End Sub Searches>\n"
                                   "12,12 equal: Goal Reached\n"
                                   "Moving to Node #0\n"
                                   "Current State: 12:[4, 6, 2], Operations: []\n"
                                   "Exploring Operation: 4+2=6, Resulting Numbers: [6, 6]\n"
                                   "Generated Node #0,1: 12:[6, 6] Operation: 4+2=6\n"
                                   "Moving to Node #0,1\n"
                                   "Current State: 12:[6, 6], Operations: ['4+2=6']\n"
                                   "Exploring Operation: 6+6=12, Resulting Numbers: [12]\n"
                                   "12,12 equal: Goal Reached\n");
    const auto & kids = t.sub_calls.at(0);
    ASSERT_EQ(kids.size(), 2u);
    EXPECT_EQ(kids[0].main_calls[0],
              "Moving to Node #0,0\n"
              "Current State: 12:[2, 2], Operations: ['6-4=2']\n"
              "Exploring Operation: 2*2=4, Resulting Numbers: [4]\n"
              "4,12 unequal: No Solution\n"
              "Exploring Operation: 2+2=4, Resulting Numbers: [4]\n"
              "4,12 unequal: No Solution\n"
              "No solution found.\n");
    EXPECT_EQ(kids[1].main_calls[0],
              "Moving to Node #0,1\n"
              "Current State: 12:[6, 6], Operations: ['4+2=6']\n"
              "Exploring Operation: 6/6=1, Resulting Numbers: [1]\n"
              "1,12 unequal: No Solution\n"
              "Exploring Operation: 6+6=12, Resulting Numbers: [12]\n"
              "12,12 equal: Goal Reached\n"
              "Moving to Node #0,1\n"
              "Current State: 12:[6, 6], Operations: ['4+2=6']\n"
              "Exploring Operation: 6+6=12, Resulting Numbers: [12]\n"
              "12,12 equal: Goal Reached\n");
}

// A sub search's claimed path: its node's Operations, then the operation that reached the goal, so
// the root's problem verifies the whole of it.
TEST(Verifier, SubSearchPathsAreReadFromTheirNode) {
    const std::string child = "Moving to Node #0,1\n"
                              "Current State: 12:[6, 6], Operations: ['4+2=6']\n"
                              "Exploring Operation: 6/6=1, Resulting Numbers: [1]\n"
                              "1,12 unequal: No Solution\n"
                              "Exploring Operation: 6+6=12, Resulting Numbers: [12]\n"
                              "12,12 equal: Goal Reached\n";
    const auto path = extract_subsearch_solution(child);
    ASSERT_TRUE(path.error.empty()) << path.error;
    ASSERT_EQ(path.steps.size(), 2u);
    EXPECT_EQ(path.steps[0].to_string(), "4+2=6");
    EXPECT_EQ(path.steps[1].to_string(), "6+6=12");
    EXPECT_TRUE(verify({{4, 6, 2}, 12}, path.steps).ok);
    EXPECT_FALSE(verify({{4, 6, 3}, 12}, path.steps).ok);  // another problem: the path does not hold
    EXPECT_FALSE(extract_subsearch_solution("Moving to Node #0,0\nCurrent State: 12:[2, 2], Operations: ['6-4=2']\nNo solution found.\n")
                     .error.empty());
    EXPECT_EQ(state_numbers(child), (std::vector<int>{6, 6}));
    EXPECT_TRUE(state_numbers("no state here").empty());
}

// The split policy's read-back: a search of a node's sub-problem (ids from #0, operations from []),
// rewritten, is a search from that node: its path verifies against the original problem, in both the
// sequential and the parallel (joined) form.
TEST(SubProblem, ASearchOfANodesStateReadsBackAsASearchFromTheNode) {
    GeneratorOptions four;
    four.count = 4;
    ProblemGenerator gen(5, four);
    int checked = 0;
    for (int i = 0; i < 60; ++i) {
        const Problem p = gen.next();
        const auto solution = solve(p);
        ASSERT_TRUE(solution);
        // The node after the solution's first step: its state is a 3-number problem with a solution.
        const Operation first = solution->front();
        std::vector<int> rest = p.nums;
        rest.erase(std::find(rest.begin(), rest.end(), first.lhs));
        rest.erase(std::find(rest.begin(), rest.end(), first.rhs));
        rest.push_back(first.result);
        const std::string context = std::string(kSequentialTag) + child_prompt("0,2", p.target, rest, {first});
        const auto node = node_problem(context);
        ASSERT_TRUE(node) << context;
        EXPECT_EQ(node->node_id, "0,2");
        EXPECT_EQ(node->ops, "['" + first.to_string() + "']");
        EXPECT_EQ(node->problem, (Problem{rest, p.target}));
        for (bool parallel : {false, true}) {
            SearchOptions o;
            o.parallel = parallel;
            o.seed = static_cast<uint64_t>(i);
            const SearchTrace t = write_search_trace(node->problem, o);
            const std::string read = read_back(t.main_calls.back(), *node);
            // It starts where the parent's child would: at the node, with the node's operations.
            ASSERT_EQ(read.rfind(child_prompt("0,2", p.target, rest, {first}), 0), 0u) << read;
            EXPECT_EQ(read.find("Node #0\n"), std::string::npos) << read;
            EXPECT_EQ(read.find("Operations: []"), std::string::npos) << read;
            if (!t.solved) continue;
            ++checked;
            const auto path = extract_subsearch_solution(read);
            ASSERT_TRUE(path.error.empty()) << path.error << "\n" << read;
            EXPECT_EQ(path.steps.front(), first);
            EXPECT_TRUE(verify(p, path.steps).ok) << verify(p, path.steps).reason << "\n" << read;
            // Unread, the sub-problem's own path does not verify against the problem.
            EXPECT_FALSE(verify(p, extract_subsearch_solution(t.main_calls.back()).steps).ok);
            // Its own path, twice: the first is what the verifier reads, the second what APR's join takes.
            EXPECT_EQ(read.find("<Sub Searches>"), std::string::npos) << read;
            EXPECT_EQ(read.substr(0, read.size() / 2), read.substr(read.size() / 2)) << read;
        }
    }
    EXPECT_GT(checked, 40);
    // A search cancelled inside its own sub searches: its children's goals are not its own.
    const NodeProblem node{"0,2", "['3*2=6']", {{4, 6, 9}, 24}};
    const std::string cancelled = "<|parallel|>\nMoving to Node #0\nCurrent State: 24:[4, 6, 9], Operations: []\n<Sub Searches>\n"
                                  "<Goal Reached in Sub Search 0 at level 1 at Node #0,0>\nMoving to Node #0,0\n24,24 equal: Goal Reached\n"
                                  "<End Sub Searches>\nExploring Operation: 9-4=5";
    EXPECT_EQ(read_back(cancelled, node), "Moving to Node #0,2\nCurrent State: 24:[4, 6, 9], Operations: ['3*2=6']\nNo solution found.\n");
    EXPECT_FALSE(node_problem("no node here"));
    EXPECT_FALSE(node_problem("Moving to Node #0\nCurrent State: x:[1, 2], Operations: []\n"));
}

TEST(HeldOut, EvalSetsAreHeldOutUnlessDroppedAndNamedFilesAddToThem) {
    const auto dir = std::filesystem::temp_directory_path() / "forkjoin-held-out-test";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const auto write = [&](const std::string & name, const std::string & text) {
        std::ofstream(dir / name) << text;
        return (dir / name).string();
    };
    const std::string b = write("b-eval.jsonl", "{\"nums\":[3,7,9],\"target\":24}\n");
    const std::string a = write("a-eval.jsonl", "{\"nums\":[10,2,5],\"target\":25}\n");
    write("train.jsonl", "{\"nums\":[1,2,3],\"target\":6}\n");  // not an eval set: not held out
    const std::string extra = write("extra.jsonl", "{\"nums\":[4,4,4],\"target\":48}\n");
    const std::string models = dir.string();

    EXPECT_EQ(held_out_files("", models), (std::vector<std::string>{a, b}));
    EXPECT_EQ(held_out_files(extra, models), (std::vector<std::string>{a, b, extra}));  // adds, never replaces
    EXPECT_EQ(held_out_files("none", models), std::vector<std::string>{});
    EXPECT_EQ(held_out_files("none," + extra, models), (std::vector<std::string>{extra}));
    // A problem is its numbers in any order and its target.
    const auto keys = load_held_out(held_out_files("", models));
    EXPECT_EQ(keys.size(), 2u);
    EXPECT_TRUE(keys.contains(key_of(Problem{{9, 3, 7}, 24})));
    EXPECT_FALSE(keys.contains(key_of(Problem{{9, 3, 7}, 25})));
    // Wanting the eval sets and finding none is an error, not a stream that holds nothing out.
    EXPECT_THROW(held_out_files("", (dir / "missing").string()), Error);
    std::filesystem::remove(a);
    std::filesystem::remove(b);
    EXPECT_THROW(held_out_files("", models), Error);
    EXPECT_EQ(held_out_files("none", models), std::vector<std::string>{});
    std::filesystem::remove_all(dir);
}

// Re-exploration (validate): the nodes a root expanded are read by their states, and the next
// expansion writes the best first steps none of them holds, in the lines a root writes.
TEST(ReExploration, TheNextExpansionHoldsTheBestFirstStepsNotYetExpanded) {
    ProblemGenerator gen(23, GeneratorOptions{.count = 4});
    for (int i = 0; i < 50; ++i) {
        const Problem p = gen.next();
        // A symbolic APR root expands 5 nodes: those are its states, in order.
        SearchOptions o;
        o.parallel = true;
        o.beam_size = o.sub_beam_size = 5;
        o.seed = static_cast<uint64_t>(i);
        const std::string root = write_search_trace(p, o).main_calls[0];
        const auto first = expanded_states(root);
        ASSERT_FALSE(first.empty()) << root;
        for (const auto & s : first) EXPECT_EQ(s.size(), 3u);

        // Ranked as APR ranks: the best ten unexplored are the best five, then the next five.
        const std::string next = reexpansion(p, first, 5);
        const auto second = expanded_states(next);
        const auto ten = expanded_states(reexpansion(p, {}, 10));
        auto firsts = expanded_states(reexpansion(p, {}, 5));
        for (const auto & s : second) {
            EXPECT_EQ(std::find(first.begin(), first.end(), s), first.end()) << "expanded twice\n" << next;
            EXPECT_NE(std::find(ten.begin(), ten.end(), s), ten.end()) << "not among the best ten\n" << next;
        }
        auto both = expanded_states(reexpansion(p, firsts, 5));
        firsts.insert(firsts.end(), both.begin(), both.end());
        EXPECT_EQ(firsts, ten);

        // The lines are a root's: the line checker finds nothing wrong in them after the root's prompt.
        const LineCheck check = check_trace_lines(root_prompt(p) + next, p);
        EXPECT_EQ(check.wrong(), 0) << check.first_error << "\n" << next;
        EXPECT_EQ(check.by_kind.at("root expansion").lines, 2 * static_cast<int>(second.size()));
        EXPECT_EQ(next.rfind("Exploring Operation: ", 0), 0u);
        EXPECT_NE(next.find("Generated Node #0,0: " + std::to_string(p.target) + ":["), std::string::npos) << next;
    }
}

TEST(ReExploration, ExploredIsWhatTheRootWroteAndNothingAfterItsSpawn) {
    const Problem p{{3, 7, 9, 5}, 24};
    // A wrong state counts as the state searched; deeper ids and anything after the spawn block do not count.
    const std::string root = "<|parallel|>\nMoving to Node #0\nCurrent State: 24:[3, 7, 9, 5], Operations: []\n"
                             "Exploring Operation: 3+7=10, Resulting Numbers: [9, 5, 11]\n"
                             "Generated Node #0,0: 24:[9, 5, 11] Operation: 3+7=10\n"
                             "Generated Node #0,1,0: 24:[1, 2] Operation: 1+1=2\n"
                             "Generated Node #0,1: 24:[3, 7, 14] Operation: 9+5=14\n"
                             "<Calling Sub Searches>\n<Start Sub Search 0 at level 1> Moving to Node #0,0\n"
                             "Generated Node #0,2: 24:[1, 1, 1] Operation: 1+1=2\n";
    const std::vector<std::vector<int>> want = {{5, 9, 11}, {3, 7, 14}};
    EXPECT_EQ(expanded_states(root), want);
    // The step the root named (3+7, giving [9, 5, 10]) was not searched: it is still there to explore.
    const auto all = expanded_states(reexpansion(p, {}, 100));
    const auto left = expanded_states(reexpansion(p, want, 100));
    EXPECT_EQ(left.size(), all.size() - 1);
    EXPECT_NE(std::find(left.begin(), left.end(), std::vector<int>{5, 9, 10}), left.end());
    EXPECT_EQ(std::find(left.begin(), left.end(), std::vector<int>{3, 7, 14}), left.end());
    // Each state once: steps that leave the same numbers are one node to search.
    for (size_t i = 0; i < all.size(); ++i) {
        for (size_t j = i + 1; j < all.size(); ++j) EXPECT_NE(all[i], all[j]);
    }
    // Fewer than 2 steps left: no expansion (APR's root spawns for 2 or more nodes).
    EXPECT_EQ(reexpansion(p, all, 5), "");
    EXPECT_EQ(reexpansion(p, std::vector<std::vector<int>>(all.begin() + 1, all.end()), 5), "");
    EXPECT_EQ(reexpansion(Problem{{3, 5}, 8}, {}, 5), "");  // every step leaves one number
}
