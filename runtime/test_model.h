// The runtime tests' model: the deterministic 1M-parameter test model, made once per build
// (tools/testmodel) and loaded once per test binary.
#pragma once

#include "backends/llama/model.h"
#include "tools/testmodel/test_model.h"

#include <memory>

namespace forkjoin::runtime::test_support {

inline std::shared_ptr<const llama::Model> tiny_model() {
    static std::shared_ptr<const llama::Model> model = llama::Model::load(
        testmodel::ensure_test_model(FORKJOIN_TEST_MODEL_DIR, testmodel::test_model_spec("1M")));
    return model;
}

}  // namespace forkjoin::runtime::test_support
