// The line checker: silent on the symbolic search's own traces (every kind, both modes, children
// included), and each kind of mistake the model makes is counted under its kind.
#include "tasks/countdown/trace_check.h"

#include "tasks/countdown/search_trace.h"
#include "tasks/countdown/solver.h"

#include <gtest/gtest.h>

using namespace forkjoin::countdown;

namespace {

int lines_of(const LineCheck & c, const std::string & kind) {
    const auto it = c.by_kind.find(kind);
    return it == c.by_kind.end() ? 0 : it->second.lines;
}
int wrong_of(const LineCheck & c, const std::string & kind) {
    const auto it = c.by_kind.find(kind);
    return it == c.by_kind.end() ? 0 : it->second.wrong;
}

void replace_once(std::string & text, const std::string & from, const std::string & to) {
    const size_t at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from << " in\n" << text;
    text.replace(at, from.size(), to);
}

// 21 from [84, 88, 17] the way the shipped model wrote it in parallel mode (the root after its join).
const Problem kProblem{{84, 88, 17}, 21};
const std::string kRoot =
    "<|parallel|>\nMoving to Node #0\nCurrent State: 21:[84, 88, 17], Operations: []\n"
    "Exploring Operation: 88-84=4, Resulting Numbers: [17, 4]\n"
    "Generated Node #0,0: 21:[17, 4] Operation: 88-84=4\n"
    "Exploring Operation: 88-17=71, Resulting Numbers: [84, 71]\n"
    "Generated Node #0,1: 21:[84, 71] Operation: 88-17=71\n"
    "<Sub Searches>\n"
    "<Goal Reached in Sub Search 0 at level 1 at Node #0,0>\n"
    "Moving to Node #0,0\nCurrent State: 21:[17, 4], Operations: ['88-84=4']\n"
    "Exploring Operation: 17+4=21, Resulting Numbers: [21]\n21,21 equal: Goal Reached\n"
    "<No Solution in Sub Search 1 at level 1 at Node #0,1>\n"
    "<End Sub Searches>\n"
    "21,21 equal: Goal Reached\nMoving to Node #0\nCurrent State: 21:[84, 88, 17], Operations: []\n"
    "Exploring Operation: 88-84=4, Resulting Numbers: [17, 4]\nGenerated Node #0,0: 21:[17, 4] Operation: 88-84=4\n"
    "Moving to Node #0,0\nCurrent State: 21:[17, 4], Operations: ['88-84=4']\n"
    "Exploring Operation: 17+4=21, Resulting Numbers: [21]\n21,21 equal: Goal Reached\n";

}  // namespace

TEST(TraceCheck, TheSymbolicSearchsOwnTracesHaveNoWrongLine) {
    LineCheck all;
    for (int count : {3, 4}) {
        GeneratorOptions g;
        g.count = count;
        ProblemGenerator gen(77 + static_cast<uint64_t>(count), g);
        for (int i = 0; i < 40; ++i) {
            const Problem p = gen.next();
            for (bool parallel : {false, true}) {
                SearchOptions o;
                o.beam_size = o.sub_beam_size = 5;
                o.parallel = parallel;
                o.seed = static_cast<uint64_t>(i);
                const SearchTrace t = write_search_trace(p, o);
                std::vector<std::string> texts(t.main_calls.begin(), t.main_calls.end());
                for (const auto & spawn : t.sub_calls) {
                    for (const auto & child : spawn) texts.push_back(child.main_calls.front());
                }
                for (const auto & text : texts) {
                    const LineCheck c = check_trace_lines(text, p);
                    ASSERT_EQ(c.wrong(), 0) << c.first_error << "\n" << text;
                    add_counts(all, c);
                }
            }
        }
    }
    // Every kind the format has was seen, so none of them is silent only by never being reached.
    for (const char * kind : {"root expansion", "operation", "generated node", "equality", "move", "state", "join", "path", "end"}) {
        EXPECT_GT(lines_of(all, kind), 0) << kind;
    }
    EXPECT_EQ(lines_of(all, "format"), 0);
}

TEST(TraceCheck, EachMistakeCountsUnderItsKind) {
    EXPECT_EQ(check_trace_lines(kRoot, kProblem).wrong(), 0) << check_trace_lines(kRoot, kProblem).first_error;
    struct Case {
        std::string from, to, kind;
    };
    const std::vector<Case> cases = {
        // the root expanded one operation twice (the shipped model does)
        {"Generated Node #0,1: 21:[84, 71] Operation: 88-17=71\n",
         "Generated Node #0,1: 21:[84, 71] Operation: 88-17=71\nExploring Operation: 88-84=4, Resulting Numbers: [17, 4]\n",
         "root expansion"},
        {"Exploring Operation: 88-17=71, Resulting Numbers: [84, 71]", "Exploring Operation: 88-17=70, Resulting Numbers: [84, 70]",
         "root expansion"},
        {"Generated Node #0,1: 21:[84, 71]", "Generated Node #0,2: 21:[84, 71]", "root expansion"},
        {"Moving to Node #0,0\nCurrent State: 21:[17, 4], Operations: ['88-84=4']\nExploring Operation: 17+4=21, Resulting Numbers: [21]\n21,21 equal: Goal Reached\n",
         "Moving to Node #0,5\nCurrent State: 21:[17, 4], Operations: ['88-84=4']\nExploring Operation: 17+4=21, Resulting Numbers: [21]\n21,21 equal: Goal Reached\n",
         "move"},
        {"Moving to Node #0\nCurrent State: 21:[84, 88, 17]", "Moving to Node #0\nCurrent State: 21:[84, 88, 18]", "state"},
        {"Operation: 88-84=4\nMoving to Node #0,0", "Operation: 88-84=4\nThe answer is 4\nMoving to Node #0,0", "format"},
    };
    for (const auto & c : cases) {
        std::string text = kRoot;
        // The join's copy of a line is the runtime's: the mistake goes into the model's own lines,
        // which come after it where the root's line also occurs in the join.
        const size_t join_end = text.find("<End Sub Searches>");
        const size_t at = text.find(c.from, c.kind == "move" || c.kind == "state" ? join_end : 0);
        ASSERT_NE(at, std::string::npos) << c.from;
        text.replace(at, c.from.size(), c.to);
        const LineCheck check = check_trace_lines(text, kProblem);
        EXPECT_EQ(check.wrong(), wrong_of(check, c.kind)) << c.kind << ": " << check.first_error;
        EXPECT_GE(wrong_of(check, c.kind), 1) << c.kind << " not counted in\n" << text;
    }
    // A join with a goal, answered as if none had reached it.
    const std::string no_goal = kRoot.substr(0, kRoot.find("<End Sub Searches>")) + "<End Sub Searches>\nNo solution found.\n";
    EXPECT_EQ(check_trace_lines(no_goal, kProblem).wrong(), 1);
    EXPECT_EQ(wrong_of(check_trace_lines(no_goal, kProblem), "join"), 1);
    // A child: its prompt defines its node; a wrong sum and a wrong verdict are its own lines.
    const std::string child = "<|sequential|>\nMoving to Node #0,1\nCurrent State: 21:[84, 71], Operations: ['88-17=71']\n"
                              "Exploring Operation: 84-71=13, Resulting Numbers: [13]\n13,21 unequal: No Solution\nNo solution found.\n";
    EXPECT_EQ(check_trace_lines(child, kProblem).wrong(), 0) << check_trace_lines(child, kProblem).first_error;
    std::string bad = child;
    replace_once(bad, "84-71=13, Resulting Numbers: [13]", "84-71=12, Resulting Numbers: [12]");
    EXPECT_EQ(wrong_of(check_trace_lines(bad, kProblem), "operation"), 1);
    bad = child;
    replace_once(bad, "13,21 unequal: No Solution", "13,21 equal: Goal Reached");
    EXPECT_EQ(wrong_of(check_trace_lines(bad, kProblem), "equality"), 1);
}
