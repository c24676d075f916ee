// Line by line, what a thread of an APR-format Countdown search got wrong: the failure analysis an
// expert-iteration round needs to aim its next data (which line kinds the model writes wrong), and a
// check stricter than the verdict (a solved trace can still carry wrong lines).
//
// A thread's text starts with its prompt ("Moving to Node #id", "Current State: ..."), which defines
// its start node and is not checked. Every later line is one of these kinds, checked against the
// nodes the text itself generated:
//   root expansion   "Exploring Operation" / "Generated Node" lines at the root's node #0: operands
//                    available, arithmetic right, resulting numbers right, no operation twice, node
//                    ids in order, node numbers and operation as explored
//   operation        "Exploring Operation" elsewhere, the same checks
//   generated node   "Generated Node" elsewhere, the same checks
//   equality         "x,T equal: Goal Reached" / "x,T unequal: No Solution": x is the explored result,
//                    T the target, equal exactly when x == T
//   move             "Moving to Node #id": a node the text generated (or its start)
//   state            "Current State: T:[...], Operations: [...]": the moved-to node's numbers (as a
//                    multiset) and operations
//   join             the line after a join: "T,T equal: Goal Reached" when a sub search reached the
//                    goal, "No solution found." when none did
//   path             "Exploring Operation" / "Generated Node" lines of the clean path written after a
//                    goal: the same arithmetic checks, repeats allowed, nodes those generated before
//   format           a line of none of these forms
// After a goal is reached the search writes its clean path again from its start: there, operations
// may repeat and node ids are those generated before. Join text (the runtime's) and spawn blocks are
// not the model's lines of this thread and are not counted; a join's winning path makes its nodes
// known. "No solution found." elsewhere is counted under `end` and never wrong (a beam search may miss).
//
// Pure; thread-safe.
#pragma once

#include "tasks/countdown/problem.h"

#include <map>
#include <string>
#include <string_view>

namespace forkjoin::countdown {

struct LineCount {
    int lines = 0;
    int wrong = 0;
};

struct LineCheck {
    std::map<std::string, LineCount> by_kind;  // kind name -> lines seen, lines wrong
    std::string first_error;                    // "line N (kind): what"; empty when nothing is wrong
    int wrong() const;
};

// `thread_text`: a thread's whole context (a leading mode tag line "<|...|>" is skipped; a last line
// without its newline, where a window or a cancel cut the thread, is not checked);
// `problem`: the root's problem (its target; a root's start numbers).
LineCheck check_trace_lines(std::string_view thread_text, const Problem & problem);

// Adds b's counts into a (a run's total over threads and problems).
void add_counts(LineCheck & a, const LineCheck & b);

}  // namespace forkjoin::countdown
