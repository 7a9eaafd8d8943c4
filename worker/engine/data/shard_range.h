// Data-parallel training splits every global batch among the replicas;
// this is how, for the sources that deliver each replica its slice and for
// anyone who needs to know which images a replica takes.
#pragma once

#include <cstdint>
#include <utility>

namespace tl::engine {

// The contiguous slice [first, second) of the `count` images of one global
// batch that replica `rank` of `world_size` takes: sizes differ by at most
// one, lower ranks taking the larger ones, so that the slices of all ranks
// cover the batch exactly once.
std::pair<int64_t, int64_t> ShardRange(int64_t count, int world_size, int rank);

}  // namespace tl::engine
