#include "strategies/plan_graph.h"

#include <algorithm>
#include <cctype>
#include <functional>

namespace forkjoin::strategies {

namespace {
std::vector<int> numbers_in(const std::string & s) {
    std::vector<int> out;
    for (size_t i = 0; i < s.size();) {
        if (std::isdigit(static_cast<unsigned char>(s[i]))) {
            size_t j = i;
            while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
            out.push_back(std::stoi(s.substr(i, std::min<size_t>(j - i, 6))));
            i = j;
        } else {
            ++i;
        }
    }
    return out;
}
}  // namespace

PlanGraph make_plan_graph(const std::vector<std::string> & items) {
    PlanGraph g;
    const int n = static_cast<int>(items.size());
    for (const auto & raw : items) {
        std::string text = raw;
        std::vector<int> needs;
        if (text.rfind("(needs", 0) == 0) {
            const size_t close = text.find(')');
            if (close != std::string::npos) {
                for (int k : numbers_in(text.substr(6, close - 6))) needs.push_back(k - 1);
                text = text.substr(close + 1);
                while (!text.empty() && text.front() == ' ') text.erase(0, 1);
            }
        }
        g.items.push_back(text);
        g.needs.push_back(needs);
    }
    for (int i = 0; i < n && g.error.empty(); ++i) {
        for (int k : g.needs[static_cast<size_t>(i)]) {
            if (k < 0 || k >= n) g.error = "item " + std::to_string(i + 1) + " needs item " + std::to_string(k + 1) + ", which the plan does not have";
            else if (k == i) g.error = "item " + std::to_string(i + 1) + " needs itself";
        }
    }
    if (g.error.empty()) {
        // Depth-first search for a cycle: 0 unvisited, 1 on the stack, 2 done.
        std::vector<int> mark(static_cast<size_t>(n), 0);
        std::function<bool(int)> cyclic = [&](int i) {
            mark[static_cast<size_t>(i)] = 1;
            for (int k : g.needs[static_cast<size_t>(i)]) {
                if (mark[static_cast<size_t>(k)] == 1 || (mark[static_cast<size_t>(k)] == 0 && cyclic(k))) return true;
            }
            mark[static_cast<size_t>(i)] = 2;
            return false;
        };
        for (int i = 0; i < n && g.error.empty(); ++i) {
            if (mark[static_cast<size_t>(i)] == 0 && cyclic(i)) g.error = "the plan's needs form a cycle through item " + std::to_string(i + 1);
        }
    }
    if (!g.error.empty()) {
        for (int i = 0; i < n; ++i) g.needs[static_cast<size_t>(i)] = i == 0 ? std::vector<int>{} : std::vector<int>{i - 1};
    }
    return g;
}

std::optional<int> needs_marker(const std::string & output) {
    const size_t at = output.find("NEEDS:");
    if (at == std::string::npos) return std::nullopt;
    size_t i = at + 6;
    while (i < output.size() && output[i] == ' ') ++i;
    if (i >= output.size() || !std::isdigit(static_cast<unsigned char>(output[i]))) return std::nullopt;
    return numbers_in(output.substr(i, 6)).at(0) - 1;
}

Verdict read_verdict(const std::string & output, int n_items) {
    Verdict v;
    const size_t at = output.find("REDO:");
    if (at != std::string::npos) {
        v.read = true;
        const size_t eol = output.find('\n', at);
        for (int k : numbers_in(output.substr(at + 5, eol == std::string::npos ? std::string::npos : eol - at - 5))) {
            if (k < 1 || k > n_items) {
                v.unknown.push_back(k);
            } else if (std::find(v.redo.begin(), v.redo.end(), k - 1) == v.redo.end()) {
                v.redo.push_back(k - 1);
            }
        }
        if (v.redo.empty() && v.unknown.empty()) v.read = false;  // "REDO:" and nothing named
        return v;
    }
    v.read = output.find("OK") != std::string::npos;
    return v;
}

std::vector<std::string> parse_outline(const std::string & text, int max_items) {
    std::vector<std::string> items;
    size_t start = 0;
    while (start < text.size() && static_cast<int>(items.size()) < max_items) {
        size_t nl = text.find('\n', start);
        if (nl == std::string::npos) nl = text.size();
        std::string line = text.substr(start, nl - start);
        start = nl + 1;
        size_t i = 0;
        while (i < line.size() && line[i] == ' ') ++i;
        const size_t digits = i;
        while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
        if (i == digits || i >= line.size() || (line[i] != '.' && line[i] != ')' && line[i] != ':')) continue;
        std::string item = line.substr(i + 1);
        while (!item.empty() && item.front() == ' ') item.erase(0, 1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\r')) item.pop_back();
        if (!item.empty()) items.push_back(item);
    }
    return items;
}

}  // namespace forkjoin::strategies
