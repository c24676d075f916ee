// Plan-execute's plan as a dependency graph.
//
// A plan item may name the items it needs: "3. (needs 1, 2) combine them" runs after items 1 and 2,
// with their results in its context. A worker that finds it needs another item's result says so with
// "NEEDS: k" (the default work template asks for that marker); the program then re-queues it after
// item k (reorder) or, when item k has not started yet, merges it into k (merge). Items are 0-based here,
// 1-based in the text the model reads and writes.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace forkjoin::strategies {

struct PlanGraph {
    std::vector<std::string> items;        // the items' text, "(needs ...)" removed
    std::vector<std::vector<int>> needs;   // per item: the items it needs
    std::string error;                     // a cycle or an unknown item: then every item needs the one before
};

// The numbered items of a planner's outline ("1. a", "2) b", "3: c"), at most max_items.
std::vector<std::string> parse_outline(const std::string & text, int max_items);

// Reads "(needs 1, 2)" (also "(needs 1 and 2)", "(needs: 1)") at the start of each item.
PlanGraph make_plan_graph(const std::vector<std::string> & items);

// The item a worker's output says it needs ("NEEDS: 2" -> 1), if any.
std::optional<int> needs_marker(const std::string & output);

// A validator's verdict on the workers' results (the validate policy on plan-execute).
struct Verdict {
    bool read = false;          // false: neither "OK" nor "REDO:" in it
    std::vector<int> redo;      // the items to run again, 0-based, each once, in order; empty: OK
    std::vector<int> unknown;   // items it named that the plan does not have (1-based, as written)
};
// "REDO: 2, 3" (the first line that has it) -> items 1 and 2; "OK" -> none.
Verdict read_verdict(const std::string & output, int n_items);

}  // namespace forkjoin::strategies
