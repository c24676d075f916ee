#include "base/error.h"
#include "dialects/dialect.h"

#include <gtest/gtest.h>

using namespace forkjoin::dialects;

TEST(MultiverseDialect, GoalSpawnsOneForkedPathPerOutline) {
    const auto mv = make_multiverse_dialect();
    auto p = mv->parser("Q\n");
    EXPECT_FALSE(p->feed("<Parallel>\n<Goal>\n<Outline>1: try a</Outline>\n<Outline>2: try b</Outline>\n</Go"));
    auto e = p->feed("al>\n");
    ASSERT_TRUE(e);
    ASSERT_EQ(e->kind, EventKind::spawn);
    EXPECT_EQ(e->spawn.join, JoinKind::kv_shared_start);
    ASSERT_EQ(e->spawn.children.size(), 2u);
    EXPECT_TRUE(e->spawn.children[0].forked);
    EXPECT_EQ(e->spawn.children[1].prompt, "\n<Path>\n2:");  // the engine's encode("\n<Path>\n{n}")
    EXPECT_EQ(e->spawn.later_drop, "\n");
    EXPECT_EQ(e->spawn.inserted, "<Conclusion>\n");
    EXPECT_EQ(e->spawn.block_end, p->text().size());
    auto path = mv->child_parser(p->text() + e->spawn.children[0].prompt, e->spawn.children[0]);
    EXPECT_FALSE(path->feed(" a works\n</Pa"));
    EXPECT_FALSE(path->feed("th>"));  // the engine keeps one token after </Path>
    auto end = path->feed("\n");
    ASSERT_TRUE(end);
    EXPECT_EQ(end->kind, EventKind::end);
    EXPECT_EQ(mv->join(p->text(), e->spawn, {{"\n<Path>\n1: a</Path>\n", true}, {"<Path>\n2: b</Path>\n", true}}),
              p->text() + "\n<Path>\n1: a</Path>\n<Path>\n2: b</Path>\n<Conclusion>\n");
}

TEST(MultiverseDialect, MalformedGoalsSayWhy) {
    const auto mv = make_multiverse_dialect();
    auto reason = [&](const std::string & prompt, const std::string & body) {
        auto p = mv->parser(prompt);
        auto e = p->feed(body);
        EXPECT_TRUE(e && e->kind == EventKind::malformed) << body;
        return e ? e->reason : std::string();
    };
    EXPECT_NE(reason("", "</Goal>").find("without a <Goal>"), std::string::npos);
    EXPECT_NE(reason("<Goal>\n<Outline>1: x</Outline>\n", "</Goal>").find("without a <Goal>"), std::string::npos);  // not its own
    EXPECT_NE(reason("", "<Goal>\n</Goal>").find("no <Outline>"), std::string::npos);
    EXPECT_NE(reason("", "<Goal>\n<Outline>1: x\n</Goal>").find("not closed"), std::string::npos);
    // The root never ends at </Path>; only a path does.
    auto root = mv->parser("");
    EXPECT_FALSE(root->feed("</Path>\n"));
}

TEST(ThreadweaverDialect, OutlinesSpawnSeededThreadsThatStopAtTheirClose) {
    const auto tw = make_threadweaver_dialect();
    auto p = tw->parser("Q\n");
    auto e = p->feed("<Parallel>\n<Outlines>\n<Outline>1: left</Outline>\n<Outline>2: right</Outline>\n</Outlines>");
    ASSERT_TRUE(e && e->kind == EventKind::spawn);
    ASSERT_EQ(e->spawn.children.size(), 2u);
    EXPECT_EQ(e->spawn.children[0].prompt, "\n<Thread>\n1:");
    EXPECT_EQ(e->spawn.join, JoinKind::reread);  // its engine re-sends the merged tokens as a prompt
    EXPECT_EQ(e->spawn.inserted, "\n");
    auto t = tw->child_parser(p->text() + e->spawn.children[0].prompt, e->spawn.children[0]);
    auto end = t->feed(" done\n</Thread>");
    ASSERT_TRUE(end);
    EXPECT_EQ(end->kind, EventKind::end);
}

TEST(NprDialect, GuidelinePlansForkSteps) {
    const auto npr = make_npr_dialect();
    auto p = npr->parser("");
    auto e = p->feed("<guideline>\n<plan>1: a</plan>\n<plan>2: b</plan>\n<plan>3: c</plan>\n</guideline>\n");
    ASSERT_TRUE(e && e->kind == EventKind::spawn);
    ASSERT_EQ(e->spawn.children.size(), 3u);
    EXPECT_EQ(e->spawn.children[2].prompt, "\n<step>\n3:");
    EXPECT_EQ(e->spawn.join, JoinKind::kv_shared_start);
    EXPECT_EQ(e->spawn.inserted, "<takeaway>\n");
    auto s = npr->child_parser(p->text() + e->spawn.children[2].prompt, e->spawn.children[2]);
    EXPECT_FALSE(s->feed(" c done</step>"));
    EXPECT_EQ(s->feed("\n")->kind, EventKind::end);
}

TEST(ParallelR1Dialect, ParallelForksAFixedWidthOfPaths) {
    const auto pr1 = make_parallel_r1_dialect(3);
    auto p = pr1->parser("Q: ");
    auto e = p->feed("think <Parallel>");
    ASSERT_TRUE(e && e->kind == EventKind::spawn);
    ASSERT_EQ(e->spawn.children.size(), 3u);
    EXPECT_EQ(e->spawn.children[1].prompt, "<Path>");
    EXPECT_EQ(e->spawn.join, JoinKind::reread);
    EXPECT_EQ(e->spawn.inserted, "</Parallel>\n<Summary>");
    EXPECT_THROW(make_dialect("klingon"), forkjoin::Error);
}

// What each engine does with a plan it cannot fork: ThreadWeaver stays sequential, NPR finishes
// (0 or more than 5 plans), Multiverse has nothing to run (a malformed block here).
TEST(Dialects, PlansTheEnginesDoNotForkEndAsTheirEnginesDo) {
    // A parser reads its dialect's spec: the dialect outlives it (dialect.h).
    const auto threadweaver = make_threadweaver_dialect();
    auto tw = threadweaver->parser("Q\n");
    EXPECT_FALSE(tw->feed("<Parallel>\n<Outlines>\nno numbers here\n</Outlines>"));
    EXPECT_FALSE(tw->feed(" so it goes on"));
    const auto npr_dialect = make_npr_dialect();
    auto npr = npr_dialect->parser("");
    auto none = npr->feed("<guideline>\nthinking\n</guideline>");
    ASSERT_TRUE(none);
    EXPECT_EQ(none->kind, EventKind::end);
    std::string six = "<guideline>\n";
    for (int i = 1; i <= 6; ++i) six += "<plan>" + std::to_string(i) + ": x</plan>\n";
    auto many = npr_dialect->parser("")->feed(six + "</guideline>");
    ASSERT_TRUE(many);
    EXPECT_EQ(many->kind, EventKind::end);
    const auto multiverse = make_multiverse_dialect();
    auto mv = multiverse->parser("")->feed("<Goal>\n</Goal>");
    ASSERT_TRUE(mv);
    EXPECT_EQ(mv->kind, EventKind::malformed);
    // Parallel-R1 after its 4th block: no 5th, the summary's close ends the thread.
    const auto pr1 = make_parallel_r1_dialect();
    std::string four_blocks = "Q\n";
    for (int i = 0; i < 4; ++i) four_blocks += "<Parallel><Path> p</Path><Path> q</Path></Parallel>\n<Summary> s</Summary>";
    auto after = pr1->parser(four_blocks.substr(0, four_blocks.size() - 11));  // before the 4th </Summary>
    EXPECT_FALSE(after->feed(" <Parallel>"));
    auto end = after->feed("</Summary>");
    ASSERT_TRUE(end);
    EXPECT_EQ(end->kind, EventKind::end);
    auto third = pr1->parser(four_blocks.substr(0, four_blocks.rfind("<Parallel>")));
    auto spawn = third->feed("<Parallel>");
    ASSERT_TRUE(spawn);
    EXPECT_EQ(spawn->kind, EventKind::spawn);
    EXPECT_EQ(spawn->spawn.children.size(), 2u);
}

// Every dialect survives any byte sequence: no exception, events carry what they promise.
TEST(Dialects, SurviveRandomBytesAndFragments) {
    const std::vector<std::string> fragments = {
        "<Parallel>", "</Parallel>", "<Goal>", "</Goal>", "<Outline>", "</Outline>", "1:", "<Path>", "</Path>",
        "<Outlines>", "</Outlines>", "<Thread>", "</Thread>", "<guideline>", "</guideline>", "<plan>", "</plan>",
        "<step>", "</step>", "<Calling Sub Searches>\n", "<End Calling Sub Searches>\n", "\n", "<", ">", "/", "\xff"};
    uint64_t x = 12345;
    auto next = [&] { return x = x * 6364136223846793005ull + 1442695040888963407ull, x >> 33; };
    for (const char * name : {"plain", "apr", "multiverse", "threadweaver", "npr", "parallel-r1"}) {
        const auto d = make_dialect(name);
        for (int trial = 0; trial < 500; ++trial) {
            auto p = (trial % 2) ? d->parser("ctx\n") : d->child_parser("ctx\n", ChildRequest{"1", "", true});
            for (int k = 0; k < 30; ++k) {
                const std::string piece = next() % 4 ? fragments[next() % fragments.size()]
                                                     : std::string(1 + next() % 4, static_cast<char>(next() % 256));
                std::optional<Event> e;
                ASSERT_NO_THROW(e = p->feed(piece)) << name;
                if (!e) continue;
                if (e->kind == EventKind::malformed) {
                    EXPECT_FALSE(e->reason.empty()) << name;
                }
                if (e->kind == EventKind::spawn) {
                    if (std::string(name) != "apr") {
                        EXPECT_FALSE(e->spawn.children.empty()) << name;  // APR: an empty block joins empty
                    }
                    std::vector<ChildResult> results(e->spawn.children.size(), ChildResult{"x", true});
                    EXPECT_NO_THROW(d->join(p->text(), e->spawn, results)) << name;
                }
                break;
            }
        }
    }
}
