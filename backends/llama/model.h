// A GGUF model loaded through llama.cpp, and its vocabulary.
//
// Contract:
// - Model::load() either returns a usable model or throws forkjoin::Error(model_load) whose message
//   names the file and the cause (missing, unreadable, not GGUF, rejected by llama.cpp and why).
// - tokenize() either returns tokens that detokenize back to the text, or throws
//   forkjoin::Error(unknown_character) naming the first character the vocabulary cannot encode and
//   its byte offset. (llama.cpp's SPM tokenizer throws std::out_of_range on such characters and its
//   BPE tokenizer silently drops them; both are turned into this one error.)
// - A Model is immutable after load and may be shared by several backends (std::shared_ptr).
#pragma once

#include "backends/backend.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

struct llama_model;
struct llama_vocab;

namespace forkjoin::llama {

using forkjoin::Token;  // = llama_token

class Model : public Vocabulary {
public:
    // vocab_only: load the vocabulary but no weights (for tokenizing only).
    static std::shared_ptr<Model> load(const std::string & path, bool vocab_only = false);
    ~Model();
    Model(const Model &) = delete;
    Model & operator=(const Model &) = delete;

    llama_model * get() const { return model_; }
    const llama_vocab * vocab() const { return vocab_; }
    const std::string & path() const { return path_; }

    // parse_special: recognise the vocabulary's control tokens written as text (e.g. "</s>"); see
    // Vocabulary::tokenize.
    std::vector<Token> tokenize(std::string_view text, bool add_bos = false,
                                bool parse_special = false) const override;
    std::string detokenize(std::span<const Token> tokens, bool render_special = true) const override;
    // The text of one token as it appears in generated output (cached; cheap in the hot loop).
    const std::string & piece(Token token) const override { return pieces_[static_cast<size_t>(token)]; }

    int32_t n_vocab() const override { return n_vocab_; }
    int32_t n_ctx_train() const;
    int32_t n_embd() const;
    int32_t n_layer() const;
    uint64_t n_params() const;
    Token bos() const;
    Token eos() const;
    bool is_end_of_generation(Token token) const override;
    std::optional<Token> start_token() const override;
    const std::vector<Token> & end_of_generation_tokens() const { return end_of_generation_; }
    bool valid(Token token) const { return token >= 0 && token < n_vocab_; }
    std::string description() const;  // llama.cpp's one-line description, e.g. "llama ?B F32"
    // The GGUF's chat template applied to (role, content) messages, ending with the assistant's turn
    // (llama.cpp's built-in template matcher, not a Jinja engine). nullopt: the model has no template.
    // Throws invalid_argument when the template is one llama.cpp does not know.
    std::optional<std::string> render_chat(const std::vector<std::pair<std::string, std::string>> & messages) const;

private:
    Model(std::string path, llama_model * model);
    std::vector<Token> tokenize_raw(std::string_view text, bool add_bos, bool parse_special) const;
    // Finds the first codepoint of text the vocabulary cannot encode; npos if none.
    size_t find_unencodable(std::string_view text) const;

    std::string path_;
    llama_model * model_ = nullptr;
    const llama_vocab * vocab_ = nullptr;
    int32_t n_vocab_ = 0;
    std::vector<std::string> pieces_;
    std::vector<Token> end_of_generation_;
};

}  // namespace forkjoin::llama
