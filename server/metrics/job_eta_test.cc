#include "server/metrics/job_eta.h"

#include <gtest/gtest.h>

namespace tl::server {
namespace {

using namespace std::chrono_literals;
const JobEta::Clock::time_point kStart{};

TEST(JobEtaTest, UnknownUntilAProgressReportGivesTheEpochCount) {
  JobEta eta;
  EXPECT_FALSE(eta.SecondsLeft(kStart).has_value());
  eta.EpochFinished(1, 10, kStart + 10s);
  EXPECT_FALSE(eta.SecondsLeft(kStart + 10s).has_value());
  eta.Progressed(2, 4, 0, 8, kStart + 10s);
  ASSERT_TRUE(eta.SecondsLeft(kStart + 10s).has_value());
  EXPECT_DOUBLE_EQ(*eta.SecondsLeft(kStart + 10s), 30);  // three epochs of 10 s
}

TEST(JobEtaTest, FinishedEpochsGiveTheMeanDurationAndProgressTheFractionLeft) {
  JobEta eta;
  eta.Progressed(1, 3, 4, 8, kStart + 1s);
  eta.EpochFinished(1, 10, kStart + 10s);
  eta.Progressed(2, 3, 2, 8, kStart + 12s);
  eta.EpochFinished(2, 20, kStart + 30s);
  eta.Progressed(3, 3, 6, 8, kStart + 40s);
  // Mean 15 s per epoch, a quarter of the last epoch left.
  EXPECT_DOUBLE_EQ(*eta.SecondsLeft(kStart + 40s), 3.75);
  eta.EpochFinished(3, 15, kStart + 45s);
  EXPECT_DOUBLE_EQ(*eta.SecondsLeft(kStart + 45s), 0);
}

TEST(JobEtaTest, FirstEpochIsProjectedFromItsOwnProgress) {
  JobEta eta;
  eta.Progressed(1, 2, 1, 10, kStart);
  EXPECT_FALSE(eta.SecondsLeft(kStart).has_value()) << "no time has passed yet";
  eta.Progressed(1, 2, 5, 10, kStart + 4s);
  // Half an epoch in 4 s: 8 s per epoch, 1.5 epochs left.
  EXPECT_DOUBLE_EQ(*eta.SecondsLeft(kStart + 4s), 12);
}

TEST(JobEtaTest, ResumedRunCountsTheEpochsOfItsCheckpointAsDone) {
  JobEta eta;
  eta.Progressed(4, 5, 2, 4, kStart);
  eta.Progressed(4, 5, 3, 4, kStart + 3s);
  // Epoch 4 is three quarters done in 3 s (from the first report): 4 s per epoch, 1.25 left.
  EXPECT_DOUBLE_EQ(*eta.SecondsLeft(kStart + 3s), 5);
}

TEST(JobEtaTest, ProgressOfAnEpochAlreadyFinishedIsIgnored) {
  JobEta eta;
  eta.Progressed(1, 2, 8, 8, kStart + 1s);
  eta.EpochFinished(1, 6, kStart + 6s);
  eta.Progressed(1, 2, 8, 8, kStart + 7s);  // late, reordered
  EXPECT_DOUBLE_EQ(*eta.SecondsLeft(kStart + 7s), 6);
}

}  // namespace
}  // namespace tl::server
