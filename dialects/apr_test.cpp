// The apr dialect against APR's own data generator (our byte-faithful port in tasks/countdown),
// on streamed input, and on malformed and random bytes.
#include "base/random.h"
#include "dialects/apr.h"
#include "tasks/countdown/prompts.h"
#include "tasks/countdown/search_trace.h"
#include "tasks/countdown/solver.h"

#include <gtest/gtest.h>

using namespace forkjoin;
using namespace forkjoin::dialects;

namespace {

// Feeds text in random-sized pieces; returns the events seen (with the offset they came at).
std::vector<Event> feed_in_pieces(ThreadParser & p, std::string_view text, uint64_t seed) {
    SplitMix64 rng(seed);
    std::vector<Event> events;
    for (size_t i = 0; i < text.size();) {
        const size_t n = std::min<size_t>(1 + rng.next() % 7, text.size() - i);
        if (auto e = p.feed(text.substr(i, n))) events.push_back(*e);
        i += n;
    }
    return events;
}

std::string first_two_lines(const std::string & s) { return s.substr(0, s.find('\n', s.find('\n') + 1) + 1); }

}  // namespace

// For every parallel trace APR's generator writes, the dialect finds the spawn at its end, rebuilds
// each child's context exactly, and its join reproduces the generator's joined context byte for byte.
TEST(AprDialect, ReproducesAprsGeneratorSpawnsAndJoins) {
    const auto apr = make_apr_dialect();
    countdown::GeneratorOptions g;
    int checked = 0;
    for (int count : {3, 4}) {
        g.count = count;
        countdown::ProblemGenerator gen(21 + static_cast<uint64_t>(count), g);
        for (int i = 0; i < 100; ++i) {
            const auto problem = gen.next();
            countdown::SearchOptions o;
            o.parallel = true;
            o.beam_size = o.sub_beam_size = 2 + i % 3;
            o.seed = static_cast<uint64_t>(i);
            const auto trace = countdown::write_search_trace(problem, o);
            if (trace.sub_calls.empty()) continue;
            ++checked;
            const std::string prompt = countdown::root_prompt(problem);
            auto parser = apr->parser(prompt);
            const auto events = feed_in_pieces(*parser, std::string_view(trace.main_calls[0]).substr(prompt.size()),
                                               static_cast<uint64_t>(i));
            ASSERT_EQ(events.size(), 1u) << trace.main_calls[0];
            ASSERT_EQ(events[0].kind, EventKind::spawn) << events[0].reason;
            const auto & spawn = events[0].spawn;
            // The event comes as soon as the closing tag is complete; its newline may still be unsent.
            EXPECT_GE(spawn.block_end + 1, trace.main_calls[0].size());
            EXPECT_LE(spawn.block_end, trace.main_calls[0].size());
            const auto & kids = trace.sub_calls[0];
            ASSERT_EQ(spawn.children.size(), kids.size());
            std::vector<ChildResult> results;
            for (size_t c = 0; c < kids.size(); ++c) {
                EXPECT_EQ(spawn.children[c].prompt, first_two_lines(kids[c].main_calls[0]));
                results.push_back({kids[c].main_calls[0], true});
            }
            const std::string joined = apr->join(parser->text(), spawn, results);
            const std::string & expected = trace.main_calls[1];
            const std::string end = "<End Sub Searches>\n";
            EXPECT_EQ(joined, expected.substr(0, expected.find(end) + end.size()));
        }
    }
    EXPECT_GT(checked, 150);
}

TEST(AprDialect, ChildPrefixAndATagSplitAcrossPieces) {
    AprOptions options;
    options.child_prefix = "<|sequential|>\n";
    const auto apr = make_apr_dialect(options);
    const std::string prompt = "Moving to Node #0\nCurrent State: 12:[4, 6, 2], Operations: []\n";
    auto p = apr->parser(prompt);
    const std::string body =
        "Exploring Operation: 4+2=6, Resulting Numbers: [6, 6]\n"
        "Generated Node #0,0: 12:[6, 6] Operation: 4+2=6\n"
        "<Calling Sub Searches>\n<Start Sub Search 0 at level 1> Moving to Node #0,0\n<End Calling Sub Searches>";
    std::optional<Event> event;
    for (char c : body) {  // one byte at a time: the closing tag arrives split
        ASSERT_FALSE(event) << "spawned before the block closed";
        event = p->feed(std::string_view(&c, 1));
    }
    ASSERT_TRUE(event);
    ASSERT_EQ(event->kind, EventKind::spawn);
    EXPECT_EQ(event->spawn.children.at(0).prompt,
              "<|sequential|>\nMoving to Node #0,0\nCurrent State: 12:[6, 6], Operations: ['4+2=6']\n");
    EXPECT_EQ(event->spawn.block_end, p->text().size());  // the newline has not come yet
    const std::string joined = apr->join(p->text(), event->spawn, {{"<|sequential|>\nMoving to Node #0,0\nNo solution found.\n", true}});
    EXPECT_TRUE(joined.ends_with("Generated Node #0,0: 12:[6, 6] Operation: 4+2=6\n<Sub Searches>\n"
                                 "<No Solution in Sub Search 0 at level 1 at Node #0,0>\n<End Sub Searches>\n"))
        << joined;
    // A parser made from the joined context does not see the old block again.
    auto again = apr->parser(joined);
    EXPECT_FALSE(again->feed("12,12 equal: Goal Reached\n"));
}

// APR's engine ends a child's context before the state line's newline (construct_sub_search_prefix)
// and its root prompt too (eval_apr.py): the apr prompt style.
TEST(AprDialect, AprsOwnContextsEndBeforeTheStateLinesNewline) {
    AprOptions options;
    options.state_line_newline = false;
    const auto apr = make_apr_dialect(options);
    const std::string root = countdown::root_context({{4, 6, 2}, 12}, /*parallel=*/true, countdown::PromptStyle::apr);
    EXPECT_EQ(root, "Moving to Node #0\nCurrent State: 12:[4, 6, 2], Operations: []");
    auto p = apr->parser(root);
    const auto event = p->feed("\nExploring Operation: 4+2=6, Resulting Numbers: [6, 6]\nGenerated Node #0,0: 12:[6, 6] Operation: 4+2=6\n"
                               "<Calling Sub Searches>\n<Start Sub Search 0 at level 1> Moving to Node #0,0\n<End Calling Sub Searches>\n");
    ASSERT_TRUE(event && event->kind == EventKind::spawn);
    EXPECT_EQ(event->spawn.children.at(0).prompt, "Moving to Node #0,0\nCurrent State: 12:[6, 6], Operations: ['4+2=6']");
    // forkjoin's own rendering keeps the newline.
    EXPECT_TRUE(countdown::root_context({{4, 6, 2}, 12}, true, countdown::PromptStyle::forkjoin).ends_with("Operations: []\n"));
}

TEST(AprDialect, MalformedSpawnsSayWhy) {
    const auto apr = make_apr_dialect();
    const std::string prompt = "Moving to Node #0\nCurrent State: 12:[4, 6, 2], Operations: []\n";
    auto reason = [&](const std::string & body) {
        auto p = apr->parser(prompt);
        auto e = p->feed(body);
        EXPECT_TRUE(e) << body;
        if (!e) return std::string();
        EXPECT_EQ(e->kind, EventKind::malformed);
        return e->reason;
    };
    EXPECT_NE(reason("<End Calling Sub Searches>\n").find("without"), std::string::npos);
    EXPECT_NE(reason("<Calling Sub Searches>\n<Start Sub Search 0 at level 1> Moving to Node #0,7\n<End Calling Sub Searches>\n")
                  .find("never generated"),
              std::string::npos);
}

// Where APR's engine does not fail, neither does the dialect (src/eval/parallel_infernce_utils.py
// _get_subsearch_info, src/eval/eval_apr.py decode_trace): stray lines in a spawn block are skipped,
// an empty block runs nothing and joins empty, and a "<Sub Searches>" the model writes itself is
// repaired into "<Calling Sub Searches>".
TEST(AprDialect, StrayLinesEmptyBlocksAndWrittenResultsAreHandledAsUpstream) {
    const auto apr = make_apr_dialect();
    const std::string prompt = "Moving to Node #0\nCurrent State: 12:[4, 6, 2], Operations: []\n"
                               "Generated Node #0,0: 12:[6, 6] Operation: 4+2=6\n";
    auto stray = apr->parser(prompt)->feed(
        "<Calling Sub Searches>\nhello\n<Start Sub Search 0 at level 1> Moving to Node #0,0\n<End Calling Sub Searches>\n");
    ASSERT_TRUE(stray && stray->kind == EventKind::spawn);
    ASSERT_EQ(stray->spawn.children.size(), 1u);
    EXPECT_EQ(stray->spawn.children[0].label, "0,0");

    auto p = apr->parser(prompt);
    auto empty = p->feed("<Calling Sub Searches>\n<End Calling Sub Searches>\n");
    ASSERT_TRUE(empty && empty->kind == EventKind::spawn);
    EXPECT_TRUE(empty->spawn.children.empty());
    EXPECT_EQ(apr->join(p->text(), empty->spawn, {}), prompt + "<Sub Searches>\n<End Sub Searches>\n");

    auto q = apr->parser(prompt);
    EXPECT_FALSE(q->feed("<Sub Sear"));
    auto repair = q->feed("ches>\n<Goal Reached");
    ASSERT_TRUE(repair);
    ASSERT_EQ(repair->kind, EventKind::repair);
    EXPECT_EQ(repair->repair_from, prompt.size());
    EXPECT_EQ(repair->repair_text, "<Calling Sub Searches>");
    // The engine's own "<Sub Searches>" (in the context after a join) is never repaired.
    auto after_join = apr->parser(prompt + "<Sub Searches>\n<End Sub Searches>\n");
    EXPECT_FALSE(after_join->feed("next\n"));
}

// Any bytes: no exception, and every event is a spawn or a malformed report with a reason.
TEST(AprDialect, SurvivesRandomBytesAndMarkupFragments) {
    const auto apr = make_apr_dialect();
    const std::vector<std::string> fragments = {
        "<Calling Sub Searches>\n", "<End Calling Sub Searches>\n", "<Start Sub Search 0 at level 1> Moving to Node #0,0\n",
        "Generated Node #0,0: 12:[6, 6] Operation: 4+2=6\n", "Moving to Node #0\n", "Current State: 1:[", "]\n", "\n", "<",
        ">", "#", ",", "Goal Reached", "\xff\xfe", std::string(1, '\0')};
    SplitMix64 rng(99);
    for (int trial = 0; trial < 2000; ++trial) {
        auto p = apr->parser(trial % 2 ? "Moving to Node #0\nCurrent State: 12:[4, 6, 2], Operations: []\n" : "");
        for (int k = 0; k < 20; ++k) {
            std::string piece = rng.next() % 3 ? fragments[rng.next() % fragments.size()]
                                               : std::string(1 + rng.next() % 5, static_cast<char>(rng.next() % 256));
            auto e = p->feed(piece);
            if (!e) continue;
            if (e->kind == EventKind::malformed) {
                EXPECT_FALSE(e->reason.empty());
            }
            if (e->kind == EventKind::repair) {
                EXPECT_LT(e->repair_from, p->text().size());
                EXPECT_EQ(e->repair_text, "<Calling Sub Searches>");
            }
            if (e->kind == EventKind::spawn) {
                EXPECT_LE(e->spawn.block_end, p->text().size());
                std::vector<ChildResult> results(e->spawn.children.size(), ChildResult{"Goal Reached x Goal Reached\n", true});
                EXPECT_NO_THROW(apr->join(p->text(), e->spawn, results));
            }
            break;  // a real thread stops at its first event
        }
    }
}

TEST(PlainDialect, NeverSpawns) {
    const auto plain = make_plain_dialect();
    auto p = plain->parser("q: ");
    EXPECT_FALSE(p->feed("<Calling Sub Searches>\n<End Calling Sub Searches>\n"));
    EXPECT_EQ(p->text(), "q: <Calling Sub Searches>\n<End Calling Sub Searches>\n");
}
