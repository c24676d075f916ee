// Calibration files: written beside the model, read back for the model they name, a stale one ignored
// (or refused when named explicitly), a malformed one refused with its path.
#include "app/calibration_file.h"

#include "base/error.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace forkjoin::app {
namespace {

namespace fs = std::filesystem;

struct Files : ::testing::Test {
    fs::path dir;
    std::string model;
    void SetUp() override {
        dir = fs::temp_directory_path() / ("forkjoin-calibration-" + std::to_string(::getpid()) + "-" +
                                           ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(dir);
        model = (dir / "m.gguf").string();
        write_model(std::string(5u << 20, 'x'));  // over 4 MiB: its last bytes are read apart from its first
    }
    void TearDown() override { fs::remove_all(dir); }
    void write_model(const std::string & bytes) const { std::ofstream(model, std::ios::binary) << bytes; }
    runtime::ContextRotCalibration calibration() const {
        runtime::ContextRotCalibration c;
        c.every = c.thresholds.every = 64;
        c.by_position = {{30, 0.25, 0.625, 0.75}, {25, 0.5, 1.375, 2.0}};
        c.thresholds.by_position = {0.625, 1.375};
        return c;
    }
};

TEST_F(Files, BesideTheModelAndReadBackForIt) {
    EXPECT_EQ(calibration_path_for("models/countdown.gguf"), "models/countdown.calibration.json");
    EXPECT_EQ(calibration_path_for("weights.bin"), "weights.bin.calibration.json");
    // No file: the built-in thresholds, said as such.
    runtime::PolicySettings s = policy_settings_for(model, "");
    EXPECT_EQ(s.context_rot.reference, runtime::ContextRotThresholds::kReference);
    EXPECT_TRUE(s.context_rot.source.empty());

    const std::string beside = calibration_path_for(model);
    write_calibration(beside, model, calibration(), {{"problems", "test"}});
    s = policy_settings_for(model, "");
    EXPECT_EQ(s.context_rot.every, 64);
    EXPECT_EQ(s.context_rot.by_position, (std::vector<double>{0.625, 1.375}));
    EXPECT_EQ(s.context_rot.at(false, 64), 1.375);
    EXPECT_EQ(s.context_rot.source, beside);
    // Named explicitly, the same; "none" keeps the built-in ones.
    EXPECT_EQ(policy_settings_for(model, beside).context_rot.by_position.size(), 2u);
    EXPECT_TRUE(policy_settings_for(model, "none").context_rot.by_position.empty());
    EXPECT_EQ(policy_settings_for(model, "none").context_rot.at(false, 64), runtime::ContextRotThresholds::kDrift);
}

TEST_F(Files, AStaleFileIsIgnoredBesideTheModelAndRefusedWhenNamed) {
    const std::string beside = calibration_path_for(model);
    write_calibration(beside, model, calibration(), {});
    const ModelIdentity before = identify_model(model);
    // The model replaced: its last byte differs, same size.
    std::string bytes(5u << 20, 'x');
    bytes.back() = 'y';
    write_model(bytes);
    EXPECT_EQ(identify_model(model).bytes, before.bytes);
    EXPECT_NE(identify_model(model).digest, before.digest);
    EXPECT_TRUE(policy_settings_for(model, "").context_rot.source.empty());
    try {
        policy_settings_for(model, beside);
        FAIL() << "a calibration of another model was applied";
    } catch (const Error & e) {
        EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
        EXPECT_NE(std::string(e.what()).find("another model"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("forkjoin calibrate context-rot"), std::string::npos) << e.what();
    }
}

TEST_F(Files, MalformedOrMissingFilesAreRefusedByName) {
    const std::string bad = (dir / "bad.json").string();
    for (const std::string & text : {std::string("{\"format\": 1, \"model\": "), std::string("{\"format\": 1}"),
                                     std::string("{\"format\": 7, \"model\": {}}")}) {
        std::ofstream(bad) << text;
        try {
            policy_settings_for(model, bad);
            FAIL() << "accepted: " << text;
        } catch (const Error & e) {
            EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
            EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
        }
    }
    EXPECT_THROW(policy_settings_for(model, (dir / "missing.json").string()), Error);
    // A malformed file beside the model is an error too: it is not stale, it is broken.
    std::ofstream(calibration_path_for(model)) << "not json";
    EXPECT_THROW(policy_settings_for(model, ""), Error);
}

}  // namespace
}  // namespace forkjoin::app
