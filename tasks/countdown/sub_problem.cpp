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

namespace {
std::string rewrite(std::string_view sub_search, const NodeProblem & node) {
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
}  // namespace

std::string read_back(std::string_view sub_search, const NodeProblem & node) {
    const std::string text = rewrite(sub_search, node);
    // The node's own two lines: "Moving to Node #id\nCurrent State: ...\n".
    const size_t moving = text.find(kMoving);
    size_t head_end = moving == std::string::npos ? std::string::npos : text.find('\n', text.find(kState, moving));
    const std::string head = moving == std::string::npos ? std::string() : text.substr(moving, head_end == std::string::npos ? std::string::npos : head_end - moving) + "\n";
    // What the search wrote itself, after its last joined block of sub search results (whose
    // "Goal Reached" lines are its children's, not its own).
    constexpr std::string_view kEndResults = "<End Sub Searches>\n";
    const size_t last_join = text.rfind(kEndResults);
    const std::string_view own = std::string_view(text).substr(last_join == std::string::npos ? 0 : last_join + kEndResults.size());
    // Its own goal line and then its clean path: that path is the answer, written twice as a
    // search from the node that went straight to the goal would write it (the search, then its path).
    constexpr std::string_view kGoal = "Goal Reached";
    const size_t last = own.rfind(kGoal);
    const size_t before = last == std::string_view::npos || last == 0 ? std::string_view::npos : own.rfind(kGoal, last - 1);
    if (before == std::string_view::npos) return head + "No solution found.\n";
    std::string_view path = own.substr(before + kGoal.size());
    if (!path.empty() && path.front() == '\n') path.remove_prefix(1);
    std::string out(path.substr(0, path.find(kGoal) + kGoal.size()));
    out += "\n";
    return out + out;
}

}  // namespace forkjoin::countdown
