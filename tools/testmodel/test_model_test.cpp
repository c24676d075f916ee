// The test-model tool: deterministic bytes, loadable by llama.cpp, the named sizes it promises.
#include "backends/llama/model.h"
#include "base/error.h"
#include "tools/testmodel/test_model.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

using namespace forkjoin;

namespace {
std::string read_all(const std::string & path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
}  // namespace

TEST(TestModel, SameSeedSameBytesOtherSeedOtherBytes) {
    const std::string dir = std::string(FORKJOIN_TEST_MODEL_DIR) + "/determinism";
    std::filesystem::create_directories(dir);
    testmodel::write_test_model(dir + "/a.gguf", testmodel::test_model_spec("1M", 7));
    testmodel::write_test_model(dir + "/b.gguf", testmodel::test_model_spec("1M", 7));
    testmodel::write_test_model(dir + "/c.gguf", testmodel::test_model_spec("1M", 8));
    const auto a = read_all(dir + "/a.gguf"), b = read_all(dir + "/b.gguf"), c = read_all(dir + "/c.gguf");
    EXPECT_GT(a.size(), 1000000u);
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c);
}

TEST(TestModel, NamedSizesHaveTheirParameterCounts) {
    const std::pair<const char *, double> sizes[] = {{"1M", 1e6}, {"10M", 1e7}, {"50M", 5e7}};
    for (const auto & [name, target] : sizes) {
        const auto n = static_cast<double>(testmodel::parameter_count(testmodel::test_model_spec(name).hparams));
        EXPECT_GT(n, 0.9 * target) << name;
        EXPECT_LT(n, 1.1 * target) << name;
    }
    EXPECT_THROW(testmodel::test_model_spec("3B"), Error);
}

TEST(TestModel, LlamaCppLoadsItWithTheWrittenShape) {
    const auto spec = testmodel::test_model_spec("1M");
    const auto model = llama::Model::load(testmodel::ensure_test_model(FORKJOIN_TEST_MODEL_DIR, spec));
    EXPECT_EQ(model->n_vocab(), spec.hparams.n_vocab);
    EXPECT_EQ(model->n_embd(), spec.hparams.n_embd);
    EXPECT_EQ(model->n_layer(), spec.hparams.n_layer);
    EXPECT_EQ(model->n_params(), testmodel::parameter_count(spec.hparams));
}
