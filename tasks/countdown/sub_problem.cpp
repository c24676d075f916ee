#include "tasks/countdown/sub_problem.h"

#include "tasks/countdown/verifier.h"

namespace forkjoin::countdown {

namespace {
constexpr std::string_view kMoving = "Moving to Node #";
constexpr std::string_view kState = "Current State: ";
constexpr std::string_view kOperations = "Operations: [";
}  // namespace

std::optional<NodeProblem> node_problem(std::string_view context) {
    const size_t moving = context.find(kMoving);
    if (moving == std::string_view::npos) return std::nullopt;
    const size_t id_end = context.find('\n', moving);
    const size_t state = context.find(kState, moving);
    if (id_end == std::string_view::npos || state == std::string_view::npos) return std::nullopt;
    NodeProblem n;
    n.node_id = std::string(context.substr(moving + kMoving.size(), id_end - moving - kMoving.size()));
    // "24:[4, 6, 9], Operations: ['3*2=6']"
    const size_t colon = context.find(":[", state);
    const size_t ops = context.find(kOperations, state);
    const size_t line_end = context.find('\n', state);
    if (n.node_id.empty() || colon == std::string_view::npos || ops == std::string_view::npos || ops > line_end) return std::nullopt;
    const size_t ops_end = context.find(']', ops);
    if (ops_end == std::string_view::npos || ops_end > line_end) return std::nullopt;
    n.ops = std::string(context.substr(ops + kOperations.size() - 1, ops_end - ops - kOperations.size() + 2));
    try {
        n.problem.target = std::stoi(std::string(context.substr(state + kState.size(), colon - state - kState.size())));
    } catch (const std::exception &) {
        return std::nullopt;
    }
    n.problem.nums = state_numbers(context.substr(state));
    if (n.problem.nums.empty()) return std::nullopt;
    return n;
}

std::string read_back(std::string_view sub_search, const NodeProblem & node) {
    const std::string ops_inside = node.ops.size() >= 2 ? node.ops.substr(1, node.ops.size() - 2) : std::string();
    std::string out;
    out.reserve(sub_search.size() + sub_search.size() / 4);
    size_t i = 0;
    while (i < sub_search.size()) {
        // "Node #0" (any id of the sub-search: "#0", "#0,1", ...) -> "Node #<node id>..."
        if (sub_search.compare(i, 7, "Node #0") == 0 && (i + 7 == sub_search.size() || sub_search[i + 7] < '0' || sub_search[i + 7] > '9')) {
            out.append("Node #").append(node.node_id);
            i += 7;
            continue;
        }
        // "Operations: [" -> "Operations: [<node's ops>" and a separator unless the list was empty
        if (!ops_inside.empty() && sub_search.compare(i, kOperations.size(), kOperations) == 0) {
            out.append(kOperations).append(ops_inside);
            i += kOperations.size();
            if (i < sub_search.size() && sub_search[i] != ']') out.append(", ");
            continue;
        }
        out.push_back(sub_search[i++]);
    }
    return out;
}

}  // namespace forkjoin::countdown
