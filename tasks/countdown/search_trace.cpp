#include "tasks/countdown/search_trace.h"

#include "tasks/countdown/solver.h"

#include "base/random.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <memory>
#include <queue>

namespace forkjoin::countdown {
namespace {

struct Node {
    std::string id;
    std::vector<int> nums;
    std::vector<Operation> ops;
    double h = 0;
    std::shared_ptr<const Node> parent;
};
using NodePtr = std::shared_ptr<const Node>;

std::string state_line(int target, const Node & n) {
    return "Current State: " + std::to_string(target) + ":" + format_numbers(n.nums) +
           ", Operations: " + format_operations(n.ops) + "\n";
}

// APR's get_path_to_target: the clean path from `start` down to the goal node.
std::string path_to_goal(const NodePtr & goal, const NodePtr & start, int target) {
    std::vector<NodePtr> chain;
    for (NodePtr n = goal; n; n = n->parent) {
        chain.push_back(n);
        if (n == start) break;
    }
    std::reverse(chain.begin(), chain.end());
    std::string s = "Moving to Node #" + start->id + "\n";
    for (size_t i = 0; i + 1 < chain.size(); ++i) {
        const Node & node = *chain[i];
        const Node & next = *chain[i + 1];
        s += state_line(target, node);
        s += "Exploring Operation: " + next.ops.back().to_string() + ", Resulting Numbers: " + format_numbers(next.nums) + "\n";
        if (next.nums.size() == 1 && next.nums[0] == target) {
            return s + std::to_string(target) + "," + std::to_string(target) + " equal: Goal Reached\n";
        }
        s += "Generated Node #" + next.id + ": " + std::to_string(target) + ":" + format_numbers(next.nums) +
             " Operation: " + next.ops.back().to_string() + "\n";
        s += "Moving to Node #" + next.id + "\n";
    }
    return s;
}

struct Searcher {
    int target;
    SearchOptions options;
    SplitMix64 rng;

    SearchTrace run(const NodePtr & start, int beam, int level, NodePtr & goal) {
        SearchTrace trace;
        trace.main_calls.emplace_back();
        auto main = [&]() -> std::string & { return trace.main_calls.back(); };
        // Best-first open set: lowest heuristic first, ties in insertion order.
        using Entry = std::tuple<double, uint64_t, NodePtr>;
        auto cmp = [](const Entry & a, const Entry & b) {
            return std::get<0>(a) != std::get<0>(b) ? std::get<0>(a) > std::get<0>(b) : std::get<1>(a) > std::get<1>(b);
        };
        std::priority_queue<Entry, std::vector<Entry>, decltype(cmp)> open(cmp);
        uint64_t order = 0;
        open.emplace(start->h, order++, start);
        main() += "Moving to Node #" + start->id + "\n";

        while (!open.empty()) {
            std::vector<NodePtr> current;
            while (!open.empty() && static_cast<int>(current.size()) < beam) {
                current.push_back(std::get<2>(open.top()));
                open.pop();
            }
            for (size_t idx = 0; idx < current.size(); ++idx) {
                const NodePtr & cur = current[idx];
                main() += state_line(target, *cur);
                std::vector<std::shared_ptr<Node>> generated;
                for (Successor & next : successors(cur->nums)) {
                    auto n = std::make_shared<Node>();
                    n->nums = std::move(next.nums);
                    n->ops = cur->ops;
                    n->ops.push_back(next.op);
                    n->h = mult_heuristic(n->nums, target);
                    n->parent = cur;
                    generated.push_back(std::move(n));
                }
                std::stable_sort(generated.begin(), generated.end(),
                                 [](const auto & a, const auto & b) { return a->h < b->h; });
                if (static_cast<int>(generated.size()) > beam) generated.resize(static_cast<size_t>(beam));
                rng.shuffle(generated);

                int node_idx = 0;
                std::vector<NodePtr> to_explore;
                for (auto & n : generated) {
                    n->id = cur->id + "," + std::to_string(node_idx);
                    const Operation & op = n->ops.back();
                    main() += "Exploring Operation: " + op.to_string() + ", Resulting Numbers: " + format_numbers(n->nums) + "\n";
                    if (n->nums.size() == 1 && n->nums[0] == target) {
                        main() += std::to_string(target) + "," + std::to_string(target) + " equal: Goal Reached\n";
                        main() += path_to_goal(n, start, target);
                        goal = n;
                        trace.solved = true;
                        trace.solution = std::vector<Operation>(n->ops.begin() + static_cast<std::ptrdiff_t>(start->ops.size()), n->ops.end());
                        return trace;
                    }
                    if (n->nums.size() == 1) {
                        main() += std::to_string(n->nums[0]) + "," + std::to_string(target) + " unequal: No Solution\n";
                    } else {
                        main() += "Generated Node #" + n->id + ": " + std::to_string(target) + ":" + format_numbers(n->nums) +
                                  " Operation: " + op.to_string() + "\n";
                        ++node_idx;
                        to_explore.push_back(n);
                    }
                }
                std::stable_sort(to_explore.begin(), to_explore.end(),
                                 [](const auto & a, const auto & b) { return a->h < b->h; });

                const bool spawn = options.parallel && level == 0 && to_explore.size() > 1;
                if (spawn) {
                    std::vector<NodePtr> goals(to_explore.size());
                    std::vector<SearchTrace> subs;
                    for (size_t c = 0; c < to_explore.size(); ++c) {
                        subs.push_back(run(to_explore[c], options.sub_beam_size, level + 1, goals[c]));
                    }
                    const std::string before = main();
                    main() += "<Calling Sub Searches>\n";
                    for (size_t c = 0; c < to_explore.size(); ++c) {
                        main() += "<Start Sub Search " + std::to_string(c) + " at level " + std::to_string(level + 1) +
                                  "> Moving to Node #" + to_explore[c]->id + "\n";
                    }
                    main() += "<End Calling Sub Searches>\n";
                    std::string joined = before + "<Sub Searches>\n";
                    for (size_t c = 0; c < to_explore.size(); ++c) {
                        const std::string where = " in Sub Search " + std::to_string(c) + " at level " +
                                                  std::to_string(level + 1) + " at Node #" + to_explore[c]->id + ">\n";
                        if (goals[c]) {
                            joined += "<Goal Reached" + where + path_to_goal(goals[c], to_explore[c], target);
                        } else {
                            joined += "<No Solution" + where;
                        }
                    }
                    joined += "<End Sub Searches>\n";
                    trace.main_calls.push_back(std::move(joined));
                    trace.sub_calls.push_back(std::move(subs));
                    for (size_t c = 0; c < to_explore.size(); ++c) {
                        if (!goals[c]) continue;
                        main() += std::to_string(goals[c]->nums[0]) + "," + std::to_string(target) + " equal: Goal Reached\n";
                        main() += path_to_goal(goals[c], start, target);
                        goal = goals[c];
                        trace.solved = true;
                        trace.solution = std::vector<Operation>(goals[c]->ops.begin() + static_cast<std::ptrdiff_t>(start->ops.size()), goals[c]->ops.end());
                        return trace;
                    }
                } else {
                    for (const auto & n : to_explore) open.emplace(n->h, order++, n);
                }
                if (idx + 1 < current.size()) main() += "Moving to Node #" + current[idx + 1]->id + "\n";
            }
            if (!open.empty()) main() += "Moving to Node #" + std::get<2>(open.top())->id + "\n";
        }
        main() += "No solution found.\n";
        return trace;
    }
};

}  // namespace

double mult_heuristic(const std::vector<int> & nums, int target) {
    double sum = 0;
    for (int n : nums) {
        int best = std::abs(n - target);
        for (int f = 2; f <= target; ++f) {
            if (target % f == 0) best = std::min(best, std::abs(n - f));
        }
        sum += best;
    }
    return sum;
}

std::string root_prompt(const Problem & p) {
    return child_prompt("0", p.target, p.nums, {});
}

std::string child_prompt(const std::string & node_id, int target, const std::vector<int> & nums,
                         const std::vector<Operation> & ops) {
    return "Moving to Node #" + node_id + "\nCurrent State: " + std::to_string(target) + ":" + format_numbers(nums) +
           ", Operations: " + format_operations(ops) + "\n";
}

SearchTrace write_search_trace(const Problem & p, const SearchOptions & options) {
    Searcher s{p.target, options, SplitMix64(options.seed * 0xA24BAED4963EE407ull + 0x9FB21C651E98DF25ull)};
    auto root = std::make_shared<Node>();
    root->id = "0";
    root->nums = p.nums;
    root->h = mult_heuristic(p.nums, p.target);
    NodePtr goal;
    return s.run(root, options.beam_size, 0, goal);
}

std::string distractor_traces(uint64_t seed, size_t min_chars) {
    std::string out;
    GeneratorOptions three, four;
    four.count = 4;
    ProblemGenerator g3(seed, three), g4(seed + 1, four);
    for (uint64_t i = 0; out.size() < min_chars; ++i) {
        const Problem p = i % 2 ? g3.next() : g4.next();
        SearchOptions o;
        o.seed = seed + i;
        out += write_search_trace(p, o).main_calls.front();
    }
    return out;
}

}  // namespace forkjoin::countdown
