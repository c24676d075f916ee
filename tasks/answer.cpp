#include "tasks/answer.h"

#include "base/error.h"

#include <algorithm>
#include <cctype>
#include <map>

namespace forkjoin::tasks {
namespace {

std::string trim(std::string_view s) {
    while (!s.empty() && (std::isspace(static_cast<unsigned char>(s.front())) || s.front() == '*')) s.remove_prefix(1);
    while (!s.empty() && (std::isspace(static_cast<unsigned char>(s.back())) || s.back() == '.' || s.back() == '*')) s.remove_suffix(1);
    return std::string(s);
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto & c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

}  // namespace

std::string extract_answer(std::string_view text) {
    const size_t boxed = text.rfind("\\boxed{");
    if (boxed != std::string_view::npos) {
        int depth = 1;
        size_t i = boxed + 7;
        const size_t start = i;
        for (; i < text.size() && depth > 0; ++i) {
            if (text[i] == '{') ++depth;
            else if (text[i] == '}') --depth;
        }
        if (depth == 0) return trim(text.substr(start, i - 1 - start));
    }
    const std::string low = lower(text);
    for (const char * key : {"answer:", "answer is"}) {
        const size_t at = low.rfind(key);
        if (at == std::string::npos) continue;
        const size_t from = at + std::string_view(key).size();
        const size_t nl = text.find('\n', from);
        const std::string a = trim(text.substr(from, nl == std::string_view::npos ? std::string_view::npos : nl - from));
        if (!a.empty()) return a;
    }
    // The last number (integer or decimal, optionally negative).
    size_t end = std::string_view::npos;
    for (size_t i = text.size(); i-- > 0;) {
        if (std::isdigit(static_cast<unsigned char>(text[i]))) {
            end = i + 1;
            break;
        }
    }
    if (end == std::string_view::npos) return "";
    size_t begin = end;
    while (begin > 0 && (std::isdigit(static_cast<unsigned char>(text[begin - 1])) || text[begin - 1] == '.' || text[begin - 1] == ',')) --begin;
    if (begin > 0 && text[begin - 1] == '-') --begin;
    std::string n = trim(text.substr(begin, end - begin));
    n.erase(std::remove(n.begin(), n.end(), ','), n.end());
    return n;
}

std::string majority_vote(const std::vector<std::string> & answers) { return weighted_vote(answers).answer; }

Vote weighted_vote(const std::vector<std::string> & answers, const std::vector<double> & weights) {
    if (!weights.empty() && weights.size() != answers.size()) {
        throw Error(ErrorCode::invalid_argument, "weighted_vote: " + std::to_string(weights.size()) + " weights for " +
                                                     std::to_string(answers.size()) + " answers");
    }
    std::map<std::string, std::pair<double, int>> totals;
    Vote best;
    double all = 0;
    for (size_t i = 0; i < answers.size(); ++i) {
        if (answers[i].empty()) continue;
        const double w = weights.empty() ? 1.0 : std::max(0.0, weights[i]);
        auto & [weight, count] = totals[answers[i]];
        weight += w;
        ++count;
        all += w;
        if (weight > best.weight || best.answer.empty()) best = {answers[i], weight, 0, count};
        else if (answers[i] == best.answer) best.count = count;
    }
    best.share = all > 0 ? best.weight / all : 0.0;
    return best;
}

}  // namespace forkjoin::tasks
