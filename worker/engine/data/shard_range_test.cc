#include "data/shard_range.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace tl::engine {
namespace {

TEST(ShardRangeTest, EveryImageOfABatchGoesToExactlyOneRank) {
  for (int64_t count = 0; count <= 23; ++count) {
    for (int world = 1; world <= 5; ++world) {
      int64_t next = 0;
      int64_t smallest = count;
      int64_t largest = 0;
      for (int rank = 0; rank < world; ++rank) {
        const auto [begin, end] = ShardRange(count, world, rank);
        EXPECT_EQ(begin, next) << count << " images, rank " << rank << " of " << world;
        EXPECT_LE(begin, end);
        smallest = std::min(smallest, end - begin);
        largest = std::max(largest, end - begin);
        next = end;
      }
      EXPECT_EQ(next, count) << count << " images over " << world;
      EXPECT_LE(largest - smallest, 1);
    }
  }
}

}  // namespace
}  // namespace tl::engine
