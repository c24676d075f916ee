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
    EXPECT_TRUE(e->spawn.kv_join);
    ASSERT_EQ(e->spawn.children.size(), 2u);
    EXPECT_TRUE(e->spawn.children[0].forked);
    EXPECT_EQ(e->spawn.children[1].prompt, "<Path>\n2:");
    EXPECT_EQ(e->spawn.block_end, p->text().size());
    auto path = mv->child_parser(p->text() + e->spawn.children[0].prompt, e->spawn.children[0]);
    EXPECT_FALSE(path->feed(" a works\n</Pa"));
    auto end = path->feed("th>\n");
    ASSERT_TRUE(end);
    EXPECT_EQ(end->kind, EventKind::end);
    EXPECT_EQ(mv->join(p->text(), e->spawn, {{"<Path>\n1: a</Path>\n", true}, {"<Path>\n2: b</Path>\n", true}}),
              p->text() + "<Path>\n1: a</Path>\n<Path>\n2: b</Path>\n");
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
