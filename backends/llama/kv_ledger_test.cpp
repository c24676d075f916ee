// KvLedger: cell counting for a unified KV cache with shared (forked) cells.
#include "backends/llama/kv_ledger.h"

#include <gtest/gtest.h>

using forkjoin::llama::KvLedger;

TEST(KvLedger, AppendCountsCells) {
    KvLedger l(100);
    l.append(0, 10);
    l.append(0, 5);
    l.append(1, 7);
    EXPECT_EQ(l.used(), 22u);
    EXPECT_EQ(l.free(), 78u);
    EXPECT_EQ(l.length(0), 15u);
}

TEST(KvLedger, ForksShareThePrefix) {
    KvLedger l(1000);
    l.append(0, 100);
    for (int c = 1; c <= 8; ++c) {
        l.share_prefix(0, c, 100);
        l.append(c, 10);
    }
    EXPECT_EQ(l.used(), 100u + 8u * 10u);  // not 8 x 100
    l.release(0);
    EXPECT_EQ(l.used(), 180u);  // the children still hold the prefix
    for (int c = 1; c <= 8; ++c) l.release(c);
    EXPECT_EQ(l.used(), 0u);
}

TEST(KvLedger, PartialShareSplitsChunks) {
    KvLedger l(1000);
    l.append(0, 50);
    l.share_prefix(0, 1, 30);  // a throwaway fork of the first 30 positions
    EXPECT_EQ(l.used(), 50u);
    l.append(1, 5);
    EXPECT_EQ(l.used(), 55u);
    l.release(0);
    EXPECT_EQ(l.used(), 35u);  // positions 30..49 were only the parent's
    EXPECT_EQ(l.length(1), 35u);
}

TEST(KvLedger, TruncateDropsOnlyUnsharedCells) {
    KvLedger l(1000);
    l.append(0, 40);
    l.share_prefix(0, 1, 40);
    l.append(1, 20);
    l.truncate(1, 10);  // child keeps 10 shared positions
    EXPECT_EQ(l.used(), 40u);
    EXPECT_EQ(l.length(1), 10u);
    l.truncate(0, 5);
    EXPECT_EQ(l.used(), 10u);  // 0..9 are still the child's
    l.append(0, 3);            // parent grows again on fresh cells
    EXPECT_EQ(l.used(), 13u);
}

TEST(KvLedger, AdoptSuffixIsAKvJoin) {
    KvLedger l(1000);
    l.append(0, 64);
    l.share_prefix(0, 1, 64);
    l.share_prefix(0, 2, 64);
    l.append(1, 30);
    l.append(2, 20);
    EXPECT_EQ(l.used(), 114u);
    l.adopt_suffix(0, 1, 64);
    l.adopt_suffix(0, 2, 64);
    l.release(1);
    l.release(2);
    EXPECT_EQ(l.used(), 114u);  // nothing copied, nothing lost
    EXPECT_EQ(l.length(0), 114u);
    l.append(0, 1);  // the parent's next token is a new cell, not a growth of a child's chunk
    EXPECT_EQ(l.used(), 115u);
    l.release(0);
    EXPECT_EQ(l.used(), 0u);
}
