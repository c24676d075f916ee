// split_comma_list: every item in order, empty ones kept for the caller to judge.
#include "base/comma_list.h"

#include <gtest/gtest.h>

using namespace forkjoin;
using Items = std::vector<std::string>;

TEST(CommaList, SplitsEveryItemInOrderKeepingEmptyOnes) {
    EXPECT_EQ(split_comma_list("native"), Items{"native"});
    EXPECT_EQ(split_comma_list("512,1024,4096"), (Items{"512", "1024", "4096"}));
    EXPECT_EQ(split_comma_list("a,,b"), (Items{"a", "", "b"}));
    EXPECT_EQ(split_comma_list(",a,"), (Items{"", "a", ""}));
    EXPECT_EQ(split_comma_list(""), Items{""});
    EXPECT_EQ(split_comma_list(" a , b"), (Items{" a ", " b"}));  // no trimming: a caller's typo stays visible
}
