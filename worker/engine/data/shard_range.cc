#include "data/shard_range.h"

#include <algorithm>

namespace tl::engine {

std::pair<int64_t, int64_t> ShardRange(int64_t count, int world_size, int rank) {
  const int64_t base = count / world_size;
  const int64_t larger = count % world_size;  // ranks below this take base + 1
  const int64_t begin = rank * base + std::min<int64_t>(rank, larger);
  return {begin, begin + base + (rank < larger ? 1 : 0)};
}

}  // namespace tl::engine
