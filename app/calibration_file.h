// A model's calibration on disk (runtime/calibration.h): where it lives, how it is written, and which
// policy settings a command runs with.
//
// The file sits beside the model, named after it (models/countdown.gguf ->
// models/countdown.calibration.json), and names the model it was measured on by its size and a digest
// of its first and last 4 MiB (a fine-tune rewrites tensors throughout; hashing a whole multi-GB file at
// every start would not pay). A stale file (the model was replaced) is ignored with a warning, never
// applied to another model.
#pragma once

#include "runtime/calibration.h"
#include "runtime/policies.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace forkjoin::app {

struct ModelIdentity {
    uint64_t bytes = 0;
    std::string digest;  // FNV-1a 64 of the first and last 4 MiB, hex
    bool operator==(const ModelIdentity &) const = default;
};
// Throws Error(io) naming the file when it cannot be read.
ModelIdentity identify_model(const std::string & model_path);

// models/x.gguf -> models/x.calibration.json (any other name: the name + ".calibration.json").
std::string calibration_path_for(const std::string & model_path);

// Writes the calibration for `model_path` to `path`, with what it was measured on (free-form, kept as
// given). Throws Error(io) when it cannot write.
void write_calibration(const std::string & path, const std::string & model_path, const runtime::ContextRotCalibration & c,
                       const nlohmann::json & measured_on);

// The settings a command on `model_path` runs with, by --calibration:
//   "none"  the built-in thresholds;
//   ""      the file beside the model when there is one and it names this model; a stale one is
//           ignored (a warning on stderr says so and what to run);
//   a path  that file; Error(invalid_argument) when it is unreadable, malformed, or measured on
//           another model (an explicit choice must not be silently dropped).
runtime::PolicySettings policy_settings_for(const std::string & model_path, const std::string & calibration_arg);

}  // namespace forkjoin::app
