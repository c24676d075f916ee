#include "app/calibration_file.h"

#include "base/error.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

namespace forkjoin::app {

namespace {
constexpr uint64_t kEdgeBytes = 4u << 20;
constexpr int kFormat = 1;

void fnv1a(uint64_t & h, const std::vector<char> & bytes, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        h ^= static_cast<unsigned char>(bytes[i]);
        h *= 1099511628211ull;
    }
}

nlohmann::json spread_json(const runtime::RiseSpread & s) {
    return {{"threads", s.threads}, {"p50", s.p50}, {"p95", s.p95}, {"max", s.max}};
}

// The thresholds in a calibration file, or nullopt with `why` set when it is not for this model.
std::optional<runtime::ContextRotThresholds> read_thresholds(const std::string & path, const std::string & model_path, std::string & why) {
    std::ifstream in(path);
    if (!in) throw Error(ErrorCode::invalid_argument, "cannot read calibration file '" + path + "'");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
        if (j.at("format").get<int>() != kFormat) {
            throw Error(ErrorCode::invalid_argument, "calibration file '" + path + "' has format " + j.at("format").dump() +
                                                         ", this forkjoin reads " + std::to_string(kFormat));
        }
        const ModelIdentity wanted{j.at("model").at("bytes").get<uint64_t>(), j.at("model").at("digest").get<std::string>()};
        if (!(wanted == identify_model(model_path))) {
            why = "calibration file '" + path + "' was measured on another model file (" + std::to_string(wanted.bytes) + " bytes, digest " +
                  wanted.digest + ") than '" + model_path + "'; measure it again: `forkjoin calibrate context-rot --model " + model_path +
                  " --problems FILE.jsonl` (the shipped model's problems: models/countdown-calibration.jsonl)";
            return std::nullopt;
        }
        runtime::ContextRotThresholds t;
        t.every = j.at("context_rot").at("every").get<int>();
        t.by_position = j.at("context_rot").at("thresholds_by_position").get<std::vector<double>>();
        bool positive = t.every > 0 && !t.by_position.empty();
        for (double x : t.by_position) positive = positive && x > 0;
        if (!positive) {
            throw Error(ErrorCode::invalid_argument,
                        "calibration file '" + path + "': context_rot needs a positive 'every' and positive thresholds_by_position");
        }
        t.source = path;
        return t;
    } catch (const nlohmann::json::exception & e) {
        throw Error(ErrorCode::invalid_argument, "calibration file '" + path + "' is malformed: " + e.what());
    }
}
}  // namespace

ModelIdentity identify_model(const std::string & model_path) {
    std::ifstream in(model_path, std::ios::binary);
    if (!in) throw Error(ErrorCode::io, "cannot read model '" + model_path + "'");
    in.seekg(0, std::ios::end);
    const uint64_t size = static_cast<uint64_t>(in.tellg());
    uint64_t h = 14695981039346656037ull;
    std::vector<char> buf(static_cast<size_t>(std::min(size, kEdgeBytes)));
    in.seekg(0);
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    fnv1a(h, buf, static_cast<size_t>(in.gcount()));
    if (size > kEdgeBytes) {
        // The last 4 MiB, overlapping the first when the file is smaller than 8 MiB.
        in.clear();
        in.seekg(static_cast<std::streamoff>(size - kEdgeBytes));
        in.read(buf.data(), static_cast<std::streamsize>(kEdgeBytes));
        fnv1a(h, buf, static_cast<size_t>(in.gcount()));
    }
    if (in.bad()) throw Error(ErrorCode::io, "cannot read model '" + model_path + "'");
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    return {size, hex};
}

std::string calibration_path_for(const std::string & model_path) {
    const std::string suffix = ".gguf";
    std::string stem = model_path;
    if (stem.size() > suffix.size() && stem.compare(stem.size() - suffix.size(), suffix.size(), suffix) == 0) stem.resize(stem.size() - suffix.size());
    return stem + ".calibration.json";
}

void write_calibration(const std::string & path, const std::string & model_path, const runtime::ContextRotCalibration & c,
                       const nlohmann::json & measured_on) {
    const ModelIdentity id = identify_model(model_path);
    const nlohmann::json j = {
        {"format", kFormat},
        {"model", {{"file", std::filesystem::path(model_path).filename().string()}, {"bytes", id.bytes}, {"digest", id.digest}}},
        {"context_rot",
         {{"every", c.every},
          {"thresholds_by_position", c.thresholds.by_position},
          {"rule", "per bucket of 'every' generated tokens after the clean start: the " +
                       std::to_string(static_cast<int>(runtime::ContextRotCalibration::kPercentile)) +
                       "th percentile of clean threads' rise of the probe NLL (nats per token), non-decreasing, at least " +
                       std::to_string(runtime::ContextRotCalibration::kFloor) + "; buckets of fewer than " +
                       std::to_string(runtime::ContextRotCalibration::kMinThreads) + " threads keep the last threshold"},
          {"rise_by_position", [&] {
               nlohmann::json a = nlohmann::json::array();
               for (const auto & s : c.by_position) a.push_back(spread_json(s));
               return a;
           }()}}},
        {"measured_on", measured_on}};
    std::ofstream out(path);
    out << j.dump(2) << "\n";
    if (!out) throw Error(ErrorCode::io, "cannot write calibration file '" + path + "'");
}

runtime::PolicySettings policy_settings_for(const std::string & model_path, const std::string & calibration_arg) {
    runtime::PolicySettings s;
    if (calibration_arg == "none") return s;
    std::string why;
    if (!calibration_arg.empty()) {
        auto t = read_thresholds(calibration_arg, model_path, why);
        if (!t) throw Error(ErrorCode::invalid_argument, why);
        s.context_rot = *t;
        return s;
    }
    const std::string beside = calibration_path_for(model_path);
    if (!std::filesystem::exists(beside)) return s;
    if (auto t = read_thresholds(beside, model_path, why)) {
        s.context_rot = *t;
    } else {
        std::fprintf(stderr, "warning: %s; the context-rot monitor uses its built-in thresholds\n", why.c_str());
    }
    return s;
}

}  // namespace forkjoin::app
