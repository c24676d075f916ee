#include "dialects/apr.h"
#include "dialects/dialect.h"
#include "base/error.h"

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

std::unique_ptr<Dialect> make_dialect(const std::string & name) {
    if (name == "plain") return make_plain_dialect();
    if (name == "apr") return make_apr_dialect();
    if (name == "multiverse") return make_multiverse_dialect();
    if (name == "threadweaver") return make_threadweaver_dialect();
    if (name == "npr") return make_npr_dialect();
    if (name == "parallel-r1") return make_parallel_r1_dialect();
    throw Error(ErrorCode::invalid_argument,
                "unknown dialect '" + name + "' (plain, apr, multiverse, threadweaver, npr, parallel-r1)");
}

}  // namespace forkjoin::dialects
