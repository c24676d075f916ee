// Model loading and the vocabulary: clear errors for bad files and unencodable text.
#include "backends/llama/model.h"
#include "base/error.h"
#include "tools/testmodel/test_model.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

using namespace forkjoin;
using forkjoin::llama::Model;

namespace {

std::shared_ptr<Model> tiny_model() {
    static std::shared_ptr<Model> model =
        Model::load(testmodel::ensure_test_model(FORKJOIN_TEST_MODEL_DIR, testmodel::test_model_spec("1M")));
    return model;
}

// Runs f, expects forkjoin::Error with `code` whose message contains `needle`.
template <typename F>
void expect_error(F && f, ErrorCode code, const std::string & needle) {
    try {
        f();
        FAIL() << "expected an error containing '" << needle << "'";
    } catch (const Error & e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(Model, TokenizeRoundTripsAsciiText) {
    const auto m = tiny_model();
    const std::string text = "the answer: 24 = (3 + 5) * 3\nthen stop.";
    const auto tokens = m->tokenize(text);
    EXPECT_LT(tokens.size(), text.size());  // the merges ("the", "th", ...) were used
    EXPECT_EQ(m->detokenize(tokens), text);
    std::string pieces;
    for (auto t : tokens) pieces += m->piece(t);
    EXPECT_EQ(pieces, text);
}

TEST(Model, AddBosPrependsIt) {
    const auto m = tiny_model();
    const auto tokens = m->tokenize("abc", true);
    ASSERT_EQ(tokens.size(), 4u);
    EXPECT_EQ(tokens[0], m->bos());
}

TEST(Model, UnknownCharacterIsNamedWithItsOffset) {
    const auto m = tiny_model();
    expect_error([&] { m->tokenize("caf\xC3\xA9 au lait"); }, ErrorCode::unknown_character, "U+00E9");
    expect_error([&] { m->tokenize("caf\xC3\xA9 au lait"); }, ErrorCode::unknown_character, "at byte 3");
    expect_error([&] { m->tokenize("tab\there"); }, ErrorCode::unknown_character, "U+0009");
}

TEST(Model, BadTokenIdsAreRejectedOnDetokenize) {
    const auto m = tiny_model();
    const std::vector<llama::Token> bad = {5, m->n_vocab()};
    expect_error([&] { m->detokenize(bad); }, ErrorCode::invalid_argument, "outside the vocabulary");
}

TEST(Model, MissingFileIsAClearError) {
    expect_error([] { Model::load("/nonexistent/model.gguf"); }, ErrorCode::model_load, "no such file");
    expect_error([] { Model::load(FORKJOIN_TEST_MODEL_DIR); }, ErrorCode::model_load, "is a directory");
}

TEST(Model, NonGgufFileIsAClearError) {
    const std::string path = std::string(FORKJOIN_TEST_MODEL_DIR) + "/not-a-model.gguf";
    std::ofstream(path) << "this is plain text, not a model";
    expect_error([&] { Model::load(path); }, ErrorCode::model_load, "not a GGUF file");
}

TEST(Model, TruncatedGgufIsAClearError) {
    const std::string good = testmodel::ensure_test_model(FORKJOIN_TEST_MODEL_DIR, testmodel::test_model_spec("1M"));
    const std::string bad = std::string(FORKJOIN_TEST_MODEL_DIR) + "/truncated.gguf";
    std::filesystem::copy_file(good, bad, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::resize_file(bad, std::filesystem::file_size(good) / 2);
    expect_error([&] { Model::load(bad); }, ErrorCode::model_load, "truncated.gguf");
    // Named before llama.cpp reads it (gguf_check.h): the tensor whose data is cut, and what to do.
    expect_error([&] { Model::load(bad); }, ErrorCode::model_load, "ends past the end of the file");
    expect_error([&] { Model::load(bad); }, ErrorCode::model_load, "download it again");
}

// A GGUF's chat template is applied through llama.cpp (ChatML here, recognised by its markers); a
// model without one says so (the server then passes the messages' text as-is).
TEST(Model, ChatTemplateFromTheGguf) {
    auto spec = testmodel::test_model_spec("1M");
    spec.chat_template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    const auto chat = Model::load(testmodel::ensure_test_model(FORKJOIN_TEST_MODEL_DIR, spec));
    const auto rendered = chat->render_chat({{"system", "be brief"}, {"user", "2+2?"}});
    ASSERT_TRUE(rendered.has_value());
    EXPECT_EQ(*rendered, "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
    const auto plain = Model::load(testmodel::ensure_test_model(FORKJOIN_TEST_MODEL_DIR, testmodel::test_model_spec("1M")));
    EXPECT_FALSE(plain->render_chat({{"user", "2+2?"}}).has_value());
}
