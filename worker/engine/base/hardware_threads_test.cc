#include "base/hardware_threads.h"

#include <gtest/gtest.h>

#include <thread>

namespace tl::engine {
namespace {

TEST(QuotaThreadsTest, ReadsCgroupV2sCpuMaxRoundingUp) {
  EXPECT_EQ(QuotaThreads("200000 100000\n"), 2);
  EXPECT_EQ(QuotaThreads("150000 100000"), 2);  // 1.5 CPUs: two threads, one half idle
  EXPECT_EQ(QuotaThreads("50000 100000"), 1);
  EXPECT_EQ(QuotaThreads("max 100000\n"), 0);  // no quota
  for (const char* unusable : {"", "garbage", "100000", "-1 100000", "100000 0", "x 100000"}) {
    EXPECT_EQ(QuotaThreads(unusable), 0) << unusable;
  }
}

TEST(QuotaThreadsTest, ReadsCgroupV1sQuotaAndPeriod) {
  EXPECT_EQ(QuotaThreads(400000, 100000), 4);
  EXPECT_EQ(QuotaThreads(-1, 100000), 0);  // v1's "no quota"
}

TEST(HardwareThreadsTest, IsAtLeastOneAndNoMoreThanTheMachineHas) {
  EXPECT_GE(HardwareThreads(), 1);
  EXPECT_LE(static_cast<unsigned>(HardwareThreads()),
            std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace
}  // namespace tl::engine
