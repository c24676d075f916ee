#include "backends/llama/model.h"

#include "backends/llama/gguf_check.h"
#include "backends/llama/llama_log.h"
#include "base/error.h"

#include <llama.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace forkjoin::llama {
namespace {

[[noreturn]] void fail_load(const std::string & path, const std::string & why) {
    throw Error(ErrorCode::model_load, "cannot load model '" + path + "': " + why);
}

// Checks what llama.cpp would only log: that the file exists, is readable, and that its structure is
// whole (gguf_check.h), naming the first thing wrong.
void check_gguf_file(const std::string & path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::exists(path, ec)) fail_load(path, "no such file");
    if (fs::is_directory(path, ec)) fail_load(path, "is a directory, not a GGUF file");
    const GgufCheck c = inspect_gguf_file(path);
    if (!c.ok()) fail_load(path, c.message);
}

size_t utf8_length(unsigned char lead) {
    if (lead < 0x80) return 1;
    if ((lead >> 5) == 0x6) return 2;
    if ((lead >> 4) == 0xE) return 3;
    if ((lead >> 3) == 0x1E) return 4;
    return 1;  // stray continuation or invalid lead byte: treat as one unit
}

std::string describe_codepoint(std::string_view ch) {
    uint32_t cp = 0;
    const auto lead = static_cast<unsigned char>(ch[0]);
    if (ch.size() == 1) cp = lead;
    else if (ch.size() == 2) cp = lead & 0x1F;
    else if (ch.size() == 3) cp = lead & 0x0F;
    else cp = lead & 0x07;
    for (size_t i = 1; i < ch.size(); ++i) cp = (cp << 6) | (static_cast<unsigned char>(ch[i]) & 0x3F);
    char buf[16];
    std::snprintf(buf, sizeof buf, "U+%04X", cp);
    std::string printable = (cp < 0x20 || cp == 0x7F) ? std::string("control character") : "'" + std::string(ch) + "'";
    return std::string(buf) + " " + printable;
}

}  // namespace

std::shared_ptr<Model> Model::load(const std::string & path, bool vocab_only) {
    install_llama_log();
    check_gguf_file(path);
    clear_llama_error();
    llama_model_params params = llama_model_default_params();
    params.vocab_only = vocab_only;
    llama_model * model = nullptr;
    try {
        model = llama_model_load_from_file(path.c_str(), params);
    } catch (const std::exception & e) {
        fail_load(path, e.what());
    }
    if (model == nullptr) {
        std::string cause = last_llama_error();
        fail_load(path, cause.empty() ? "llama.cpp rejected the file" : "llama.cpp: " + cause);
    }
    return std::shared_ptr<Model>(new Model(path, model));
}

Model::Model(std::string path, llama_model * model)
    : path_(std::move(path)), model_(model), vocab_(llama_model_get_vocab(model)),
      n_vocab_(llama_vocab_n_tokens(vocab_)) {
    pieces_.resize(static_cast<size_t>(n_vocab_));
    std::vector<char> buf(64);
    for (Token t = 0; t < n_vocab_; ++t) {
        int32_t n = llama_token_to_piece(vocab_, t, buf.data(), static_cast<int32_t>(buf.size()), 0, true);
        if (n < 0) {
            buf.resize(static_cast<size_t>(-n));
            n = llama_token_to_piece(vocab_, t, buf.data(), static_cast<int32_t>(buf.size()), 0, true);
        }
        pieces_[static_cast<size_t>(t)].assign(buf.data(), static_cast<size_t>(std::max(n, 0)));
        if (llama_vocab_is_eog(vocab_, t)) end_of_generation_.push_back(t);
    }
}

Model::~Model() {
    llama_model_free(model_);
}

std::vector<Token> Model::tokenize_raw(std::string_view text, bool add_bos, bool parse_special) const {
    const int32_t len = static_cast<int32_t>(text.size());
    std::vector<Token> tokens(text.size() + 2);
    int32_t n = llama_tokenize(vocab_, text.data(), len, tokens.data(), static_cast<int32_t>(tokens.size()),
                               add_bos, parse_special);
    if (n < 0) {
        tokens.resize(static_cast<size_t>(-n));
        n = llama_tokenize(vocab_, text.data(), len, tokens.data(), static_cast<int32_t>(tokens.size()),
                           add_bos, parse_special);
    }
    if (n < 0) {
        throw Error(ErrorCode::invalid_argument, "tokenization failed for a text of " +
                                                     std::to_string(text.size()) + " bytes");
    }
    tokens.resize(static_cast<size_t>(n));
    return tokens;
}

size_t Model::find_unencodable(std::string_view text) const {
    for (size_t i = 0; i < text.size();) {
        const size_t n = std::min(utf8_length(static_cast<unsigned char>(text[i])), text.size() - i);
        const std::string_view ch = text.substr(i, n);
        try {
            const auto tokens = tokenize_raw(ch, false, false);
            std::string back = detokenize(tokens, false);
            // SPM vocabularies may prepend a space marker: compare without it.
            if (back.size() == ch.size() + 1 && back[0] == ' ' && ch != " ") back.erase(0, 1);
            if (tokens.empty() || back != ch) return i;
        } catch (const std::out_of_range &) {
            return i;
        }
        i += n;
    }
    return std::string_view::npos;
}

std::vector<Token> Model::tokenize(std::string_view text, bool add_bos, bool parse_special) const {
    auto unknown = [&](size_t at) {
        const size_t n = std::min(utf8_length(static_cast<unsigned char>(text[at])), text.size() - at);
        return Error(ErrorCode::unknown_character,
                     "the model's vocabulary cannot encode " + describe_codepoint(text.substr(at, n)) +
                         " at byte " + std::to_string(at) + " of the text");
    };
    std::vector<Token> tokens;
    try {
        tokens = tokenize_raw(text, add_bos, parse_special);
    } catch (const std::out_of_range &) {
        const size_t at = find_unencodable(text);
        if (at != std::string_view::npos) throw unknown(at);
        throw Error(ErrorCode::unknown_character, "the model's vocabulary cannot encode the text");
    }
    // BPE vocabularies drop unknown characters silently: a lossy round trip exposes them. Only a
    // character that fails on its own is reported, so normalisation differences are not errors.
    // Special tokens parsed from the text are rendered back as their text.
    {
        const size_t skip = add_bos && !tokens.empty() && tokens[0] == bos() ? 1 : 0;
        std::string back = detokenize(std::span<const Token>(tokens).subspan(skip), parse_special);
        if (back.size() == text.size() + 1 && back[0] == ' ' && (text.empty() || text[0] != ' ')) back.erase(0, 1);
        if (back != text) {
            const size_t at = find_unencodable(text);
            if (at != std::string_view::npos) throw unknown(at);
        }
    }
    return tokens;
}

std::string Model::detokenize(std::span<const Token> tokens, bool render_special) const {
    for (Token t : tokens) {
        if (!valid(t)) {
            throw Error(ErrorCode::invalid_argument, "token id " + std::to_string(t) +
                                                         " is outside the vocabulary (size " +
                                                         std::to_string(n_vocab_) + ")");
        }
    }
    std::string text(tokens.size() * 8 + 16, '\0');
    auto run = [&] {
        return llama_detokenize(vocab_, tokens.data(), static_cast<int32_t>(tokens.size()), text.data(),
                                static_cast<int32_t>(text.size()), false, render_special);
    };
    int32_t n = run();
    if (n < 0) {
        text.resize(static_cast<size_t>(-n));
        n = run();
    }
    text.resize(static_cast<size_t>(std::max(n, 0)));
    return text;
}

int32_t Model::n_ctx_train() const { return llama_model_n_ctx_train(model_); }
int32_t Model::n_embd() const { return llama_model_n_embd(model_); }
int32_t Model::n_layer() const { return llama_model_n_layer(model_); }
uint64_t Model::n_params() const { return llama_model_n_params(model_); }
Token Model::bos() const { return llama_vocab_bos(vocab_); }

std::optional<Token> Model::start_token() const {
    if (!llama_vocab_get_add_bos(vocab_) || llama_vocab_bos(vocab_) < 0) return std::nullopt;
    return llama_vocab_bos(vocab_);
}
Token Model::eos() const { return llama_vocab_eos(vocab_); }
bool Model::is_end_of_generation(Token token) const { return llama_vocab_is_eog(vocab_, token); }

std::optional<std::string> Model::render_chat(const std::vector<std::pair<std::string, std::string>> & messages) const {
    const char * tmpl = llama_model_chat_template(model_, nullptr);
    if (tmpl == nullptr) return std::nullopt;
    std::vector<llama_chat_message> chat;
    size_t chars = 0;
    for (const auto & [role, content] : messages) {
        chat.push_back({role.c_str(), content.c_str()});
        chars += role.size() + content.size();
    }
    std::vector<char> buf(2 * chars + 256);
    int32_t n = llama_chat_apply_template(tmpl, chat.data(), chat.size(), true, buf.data(), static_cast<int32_t>(buf.size()));
    if (n > static_cast<int32_t>(buf.size())) {
        buf.resize(static_cast<size_t>(n));
        n = llama_chat_apply_template(tmpl, chat.data(), chat.size(), true, buf.data(), static_cast<int32_t>(buf.size()));
    }
    if (n < 0) throw Error(ErrorCode::invalid_argument, "the model's chat template is not one llama.cpp can apply without Jinja");
    return std::string(buf.data(), static_cast<size_t>(n));
}

std::string Model::description() const {
    char buf[256];
    llama_model_desc(model_, buf, sizeof buf);
    return buf;
}

}  // namespace forkjoin::llama
