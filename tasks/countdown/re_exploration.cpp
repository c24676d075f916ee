#include "tasks/countdown/re_exploration.h"

#include "tasks/countdown/arithmetic.h"
#include "tasks/countdown/search_trace.h"
#include "tasks/countdown/verifier.h"

#include <algorithm>

namespace forkjoin::countdown {

std::vector<std::vector<int>> expanded_states(std::string_view root_text) {
    const size_t spawn = root_text.find("<Calling Sub Searches>");
    const std::string_view expansion = root_text.substr(0, spawn);
    constexpr std::string_view kGenerated = "Generated Node #0,";
    std::vector<std::vector<int>> states;
    for (size_t at = expansion.find(kGenerated); at != std::string_view::npos; at = expansion.find(kGenerated, at + 1)) {
        // Only lines that start with it (a deeper "Generated Node #0,1,0" is not the root's).
        if (at > 0 && expansion[at - 1] != '\n') continue;
        const size_t id_end = expansion.find(':', at);
        const size_t line_end = expansion.find('\n', at);
        if (id_end == std::string_view::npos || id_end > line_end) continue;
        if (expansion.substr(at + kGenerated.size(), id_end - at - kGenerated.size()).find(',') != std::string_view::npos) continue;
        std::vector<int> nums = bracket_numbers(expansion.substr(id_end, line_end - id_end));
        if (nums.empty()) continue;
        std::sort(nums.begin(), nums.end());
        states.push_back(std::move(nums));
    }
    return states;
}

std::string reexpansion(const Problem & p, const std::vector<std::vector<int>> & explored, int width) {
    struct Step {
        Operation op;
        std::vector<int> nums;  // as APR writes them: the others in order, the result last
        std::vector<int> key;   // sorted
        double h = 0;
    };
    std::vector<Step> steps;
    for (Successor & next : successors(p.nums)) {
        if (next.nums.size() < 2) continue;  // a last step: no node to search
        Step s;
        s.op = next.op;
        s.key = next.nums;
        std::sort(s.key.begin(), s.key.end());
        if (std::find(explored.begin(), explored.end(), s.key) != explored.end()) continue;
        if (std::any_of(steps.begin(), steps.end(), [&](const Step & t) { return t.key == s.key; })) continue;
        s.nums = std::move(next.nums);
        s.h = mult_heuristic(s.nums, p.target);
        steps.push_back(std::move(s));
    }
    std::stable_sort(steps.begin(), steps.end(), [](const Step & a, const Step & b) { return a.h < b.h; });
    if (static_cast<int>(steps.size()) > width) steps.resize(static_cast<size_t>(std::max(0, width)));
    if (steps.size() < 2) return {};
    std::string out;
    const std::string target = std::to_string(p.target);
    for (size_t i = 0; i < steps.size(); ++i) {
        const std::string op = steps[i].op.to_string();
        out += "Exploring Operation: " + op + ", Resulting Numbers: " + format_numbers(steps[i].nums) + "\n";
        out += "Generated Node #0," + std::to_string(i) + ": " + target + ":" + format_numbers(steps[i].nums) + " Operation: " + op + "\n";
    }
    return out;
}

}  // namespace forkjoin::countdown
