#include "base/parallel_for.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace tl::engine {
namespace {

TEST(ParallelForTest, RunsEveryIndexOnce) {
  for (int threads : {1, 2, 4, 9}) {
    std::vector<std::atomic<int>> runs(100);
    EXPECT_TRUE(ParallelFor(100, threads, [&](int64_t i) { ++runs[i]; }));
    for (size_t i = 0; i < runs.size(); ++i) EXPECT_EQ(runs[i], 1) << i << ", " << threads;
  }
}

TEST(ParallelForTest, NothingToDoIsDone) {
  EXPECT_TRUE(ParallelFor(0, 4, [](int64_t) { FAIL() << "no index to run"; }));
}

TEST(ParallelForTest, UsesTheThreadsItIsGivenAndNoMore) {
  std::mutex mutex;
  std::set<std::thread::id> seen;
  ParallelFor(64, 3, [&](int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::lock_guard<std::mutex> lock(mutex);
    seen.insert(std::this_thread::get_id());
  });
  EXPECT_GE(seen.size(), 2u);
  EXPECT_LE(seen.size(), 3u);
  EXPECT_EQ(seen.count(std::this_thread::get_id()), 0u);
}

TEST(ParallelForTest, OneThreadOrOneIndexRunsOnTheCaller) {
  for (auto [count, threads] : {std::pair{3, 1}, std::pair{1, 8}}) {
    std::set<std::thread::id> seen;
    ParallelFor(count, threads, [&](int64_t) { seen.insert(std::this_thread::get_id()); });
    EXPECT_EQ(seen, std::set<std::thread::id>{std::this_thread::get_id()});
  }
}

TEST(ParallelForTest, AStopRequestEndsItBeforeTheNextIndex) {
  for (int threads : {1, 3}) {
    std::atomic<int> runs{0};
    std::atomic<int> polls{0};
    EXPECT_FALSE(ParallelFor(1000, threads, [&](int64_t) { ++runs; },
                             [&] { return ++polls > 10; }));
    // Every poll that said go ran its index; none ran after the first stop.
    EXPECT_EQ(runs, 10) << threads << " threads";
  }
}

TEST(ParallelForTest, TheFirstExceptionIsRethrownAfterEveryThreadEnded) {
  std::atomic<int> running{0};
  std::atomic<int> runs{0};
  try {
    ParallelFor(1000, 4, [&](int64_t i) {
      ++running;
      ++runs;
      if (i == 5) throw std::runtime_error("image 5 is broken");
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      --running;
    });
    FAIL() << "the exception was lost";
  } catch (const std::runtime_error& error) {
    EXPECT_STREQ(error.what(), "image 5 is broken");
  }
  EXPECT_EQ(running, 1);  // only the failed body never finished
  EXPECT_LT(runs, 1000);  // the others stopped taking indices
}

}  // namespace
}  // namespace tl::engine
