#include "dialects/dialect.h"

namespace forkjoin::dialects {
namespace {

class PlainParser : public ThreadParser {
public:
    explicit PlainParser(std::string prompt) { text_ = std::move(prompt); }
    std::optional<Event> feed(std::string_view piece) override {
        text_.append(piece);
        return std::nullopt;
    }
};

class PlainDialect : public Dialect {
public:
    std::string name() const override { return "plain"; }
    std::unique_ptr<ThreadParser> parser(std::string prompt) const override {
        return std::make_unique<PlainParser>(std::move(prompt));
    }
    std::string join(std::string_view parent_text, const SpawnRequest &, const std::vector<ChildResult> &) const override {
        return std::string(parent_text);
    }
};

}  // namespace

std::unique_ptr<Dialect> make_plain_dialect() { return std::make_unique<PlainDialect>(); }

}  // namespace forkjoin::dialects
