#include "worker/worker_id.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tl::worker {
namespace {

using ::testing::HasSubstr;

TEST(ResolveWorkerIdTest, WithoutAFlagTheIdIsTheHostnameAndPid) {
  EXPECT_EQ(*ResolveWorkerId("", "box", 42), "box-42");
}

TEST(ResolveWorkerIdTest, PlaceholdersAreFilledInAndTheRestIsKept) {
  EXPECT_EQ(*ResolveWorkerId("cpu-{hostname}", "3f2a9c", 1), "cpu-3f2a9c");
  EXPECT_EQ(*ResolveWorkerId("{pid}@{hostname}/x", "h", 7), "7@h/x");
  EXPECT_EQ(*ResolveWorkerId("gpu-0", "h", 7), "gpu-0");
}

TEST(ResolveWorkerIdTest, AnUnknownOrUnclosedPlaceholderIsRefusedNamingTheFlag) {
  for (const char* bad : {"cpu-{host}", "cpu-{hostname", "cpu-}", "{}"}) {
    const auto id = ResolveWorkerId(bad, "h", 1);
    ASSERT_FALSE(id.ok()) << bad;
    EXPECT_THAT(std::string(id.status().message()), HasSubstr("--worker_id")) << bad;
  }
}

TEST(ResolveWorkerIdTest, AnIdThatResolvesToNothingIsRefused) {
  EXPECT_FALSE(ResolveWorkerId("{hostname}", "", 1).ok());
}

TEST(ResolveWorkerIdTest, AnIdThatReadsAsAnotherWorkersSlotIsRefused) {
  const auto id = ResolveWorkerId("{hostname}/slot3", "gpu-1", 1);
  ASSERT_FALSE(id.ok());
  EXPECT_THAT(std::string(id.status().message()),
              HasSubstr("reads as slot 3 of worker \"gpu-1\""));
  EXPECT_TRUE(ResolveWorkerId("{hostname}/slots", "gpu-1", 1).ok());
}

}  // namespace
}  // namespace tl::worker
