#include "tools/train/training_data.h"

#include "tools/train/countdown_vocabulary.h"

namespace forkjoin::train {
namespace {

struct Builder {
    const llama::Model & tok;
    Example ex;
    void add(const std::string & text, bool in_loss) {
        for (auto t : tok.tokenize(text)) {
            ex.tokens.push_back(t);
            ex.in_loss.push_back(in_loss);
        }
    }
    Example finish() {
        ex.tokens.push_back(kEosId);
        ex.in_loss.push_back(1);
        return std::move(ex);
    }
};

void add_children(const countdown::SearchTrace & t, const countdown::Problem & p, const llama::Model & tok,
                  std::vector<Example> & out) {
    for (const auto & spawn : t.sub_calls) {
        for (const auto & child : spawn) {
            const std::string & text = child.main_calls[0];
            // The child's prompt is its first two lines ("Moving to Node #..", "Current State: ..").
            const size_t cut = text.find('\n', text.find('\n') + 1) + 1;
            Builder b{tok, {}};
            b.add(kSequentialTag, false);
            b.add(text.substr(0, cut), false);
            b.add(text.substr(cut), true);
            out.push_back(b.finish());
            (void)p;
        }
    }
}

}  // namespace

Example example_from_trace(const strategies::TrainingTrace & trace, const llama::Model & tok) {
    Builder b{tok, {}};
    for (const auto & part : trace.parts) b.add(part.text, part.loss);
    return b.finish();
}

std::vector<int64_t> prompt_tokens(const std::string & tag, const std::string & prompt, const llama::Model & tok) {
    std::vector<int64_t> out;
    for (auto t : tok.tokenize(tag)) out.push_back(t);
    for (auto t : tok.tokenize(prompt)) out.push_back(t);
    return out;
}

std::vector<Example> make_examples(const countdown::Problem & p, bool parallel, const countdown::SearchOptions & search,
                                   const llama::Model & tok) {
    countdown::SearchOptions o = search;
    o.parallel = parallel;
    const countdown::SearchTrace t = countdown::write_search_trace(p, o);
    const std::string prompt = countdown::root_prompt(p);
    const std::string tag = parallel ? kParallelTag : kSequentialTag;
    std::vector<Example> out;
    {
        Builder b{tok, {}};
        b.add(tag, false);
        b.add(prompt, false);
        b.add(t.main_calls[0].substr(prompt.size()), true);
        out.push_back(b.finish());
    }
    if (t.main_calls.size() > 1) {
        const std::string & joined = t.main_calls[1];
        const std::string end = "<End Sub Searches>\n";
        const size_t cut = joined.find(end) + end.size();
        Builder b{tok, {}};
        b.add(tag, false);
        b.add(joined.substr(0, cut), false);
        b.add(joined.substr(cut), true);
        out.push_back(b.finish());
    }
    add_children(t, p, tok, out);
    return out;
}

}  // namespace forkjoin::train
