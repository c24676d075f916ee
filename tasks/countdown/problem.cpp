#include "tasks/countdown/problem.h"

#include "base/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>

namespace forkjoin::countdown {

namespace {
constexpr int kMaxNumbers = 8;  // the solver is exponential in the count; more is not Countdown
}

ProblemKey key_of(const Problem & p) {
    std::vector<int> nums = p.nums;
    std::sort(nums.begin(), nums.end());
    return {std::move(nums), p.target};
}

Problem parse_problem(std::string_view line) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception & e) {  // parse_error; out_of_range for a number like 1e999
        throw Error(ErrorCode::invalid_argument, std::string("not valid JSON: ") + e.what());
    }
    if (!j.is_object()) throw Error(ErrorCode::invalid_argument, "a problem must be a JSON object");
    if (!j.contains("nums") || !j["nums"].is_array()) {
        throw Error(ErrorCode::invalid_argument, "a problem needs \"nums\": an array of integers");
    }
    if (!j.contains("target") || !j["target"].is_number_integer()) {
        throw Error(ErrorCode::invalid_argument, "a problem needs \"target\": an integer");
    }
    Problem p;
    for (const auto & n : j["nums"]) {
        if (!n.is_number_integer() || n.get<long long>() < 0 || n.get<long long>() > 1000000) {
            throw Error(ErrorCode::invalid_argument, "\"nums\" must hold integers in 0..1000000, got " + n.dump());
        }
        p.nums.push_back(n.get<int>());
    }
    if (p.nums.size() < 2 || p.nums.size() > kMaxNumbers) {
        throw Error(ErrorCode::invalid_argument, "\"nums\" must hold 2 to " + std::to_string(kMaxNumbers) +
                                                     " numbers, got " + std::to_string(p.nums.size()));
    }
    const long long t = j["target"].get<long long>();
    if (t < 0 || t > 1000000) throw Error(ErrorCode::invalid_argument, "\"target\" must be in 0..1000000");
    p.target = static_cast<int>(t);
    return p;
}

std::string to_json_line(const Problem & p) {
    return nlohmann::json{{"nums", p.nums}, {"target", p.target}}.dump();
}

std::vector<Problem> load_problems(const std::string & path) {
    std::ifstream in(path);
    if (!in) throw Error(ErrorCode::io, "cannot read problems file '" + path + "'");
    std::vector<Problem> out;
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        try {
            out.push_back(parse_problem(line));
        } catch (const Error & e) {
            throw Error(e.code(), path + ":" + std::to_string(n) + ": " + e.what());
        }
    }
    return out;
}

void save_problems(const std::string & path, const std::vector<Problem> & problems) {
    std::ofstream out(path);
    if (!out) throw Error(ErrorCode::io, "cannot write problems file '" + path + "'");
    for (const auto & p : problems) out << to_json_line(p) << "\n";
    if (!out) throw Error(ErrorCode::io, "error writing '" + path + "'");
}

}  // namespace forkjoin::countdown
