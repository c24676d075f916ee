// The model a command runs: --model, or the shipped Countdown model when none is named.
#pragma once

#include "backends/llama/model.h"

#include <memory>
#include <string>

namespace forkjoin::app {

// The GGUF path `model_arg` names, or the shipped model's when empty.
std::string model_path(const std::string & model_arg);
// Loads it. Throws Error(model_load) naming the file when it is missing or unreadable.
// vocab_only: the tokenizer without the weights (a remote backend's servers hold the weights).
std::shared_ptr<const llama::Model> load_model(const std::string & model_arg, bool vocab_only = false);

}  // namespace forkjoin::app
