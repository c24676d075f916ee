#include "app/model_file.h"

#include "base/error.h"

#include <filesystem>

namespace forkjoin::app {

std::string model_path(const std::string & model_arg) {
    return model_arg.empty() ? std::string(FORKJOIN_DEFAULT_MODEL) : model_arg;
}

std::shared_ptr<const llama::Model> load_model(const std::string & model_arg, bool vocab_only) {
    const std::string p = model_path(model_arg);
    if (model_arg.empty() && !std::filesystem::exists(p)) {
        throw Error(ErrorCode::model_load, "no model named (--model) and the shipped model " + p + " is not there");
    }
    return llama::Model::load(p, vocab_only);
}

}  // namespace forkjoin::app
