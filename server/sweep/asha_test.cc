#include "server/sweep/asha.h"

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tl::server {
namespace {


SweepObjective Maximize() {
  SweepObjective objective;
  objective.set_metric(SweepObjective::VAL_ACCURACY);
  objective.set_direction(SweepObjective::MAXIMIZE);
  return objective;
}

SweepObjective Minimize() {
  SweepObjective objective;
  objective.set_metric(SweepObjective::VAL_LOSS);
  objective.set_direction(SweepObjective::MINIMIZE);
  return objective;
}

TEST(AshaTest, RungsLieBelowTheLastEpoch) {
  EXPECT_EQ(AshaRungs(1, 3, 10), (std::vector<int>{1, 3, 9}));
  EXPECT_EQ(AshaRungs(1, 3, 9), (std::vector<int>{1, 3}));
  EXPECT_EQ(AshaRungs(2, 2, 16), (std::vector<int>{2, 4, 8}));
  EXPECT_TRUE(AshaRungs(5, 3, 5).empty());
  EXPECT_TRUE(IsAshaRung(3, 1, 3, 10));
  EXPECT_FALSE(IsAshaRung(2, 1, 3, 10));
  EXPECT_FALSE(IsAshaRung(10, 1, 3, 10));  // the last epoch ends the trial anyway
  // Rungs that would pass any int end the list rather than overflow.
  EXPECT_EQ(AshaRungs(1000, 16, 2000000000).size(), 6u);
}

// Trials report at one rung, in this order, with these accuracies; reduction factor 3.
TEST(AshaTest, ScriptedArrivalsAtOneRung) {
  const std::vector<double> arrivals = {0.50, 0.40, 0.60, 0.55, 0.30, 0.70, 0.65, 0.20, 0.58};
  // n trials have reached the rung (this one included); max(1, n / 3) of them go on.
  const std::vector<AshaDecision> expected = {
      AshaDecision::kContinue,  // n=1: the first always goes on
      AshaDecision::kStop,      // n=2, 1 goes on: 0.50 is better
      AshaDecision::kContinue,  // n=3, 1: 0.60 is the best so far
      AshaDecision::kStop,      // n=4, 1: 0.60 is better
      AshaDecision::kStop,      // n=5, 1
      AshaDecision::kContinue,  // n=6, 2: 0.70 is the best
      AshaDecision::kContinue,  // n=7, 2: only 0.70 is better than 0.65
      AshaDecision::kStop,      // n=8, 2
      AshaDecision::kStop,      // n=9, 3: 0.70, 0.65 and 0.60 are better than 0.58
  };
  std::vector<double> earlier;
  for (size_t i = 0; i < arrivals.size(); ++i) {
    EXPECT_EQ(DecideAtRung(Maximize(), 3, arrivals[i], earlier), expected[i]) << "arrival " << i;
    earlier.push_back(arrivals[i]);
  }
}

TEST(AshaTest, MinimizingPrefersLowerValuesAndTiesGoOn) {
  EXPECT_EQ(DecideAtRung(Minimize(), 2, 0.3, {0.5}), AshaDecision::kContinue);
  EXPECT_EQ(DecideAtRung(Minimize(), 2, 0.7, {0.5}), AshaDecision::kStop);
  EXPECT_EQ(DecideAtRung(Minimize(), 2, 0.5, {0.5}), AshaDecision::kContinue);
}

TEST(AshaTest, ADivergedTrialIsWorstWhateverTheDirection) {
  const double nan = std::nan("");
  EXPECT_EQ(DecideAtRung(Minimize(), 2, nan, {9.0}), AshaDecision::kStop);
  EXPECT_EQ(DecideAtRung(Maximize(), 2, nan, {0.0}), AshaDecision::kStop);
  EXPECT_EQ(DecideAtRung(Maximize(), 2, 0.1, {nan}), AshaDecision::kContinue);
  // Alone at its rung, even a diverged trial goes on: there is nothing to compare with.
  EXPECT_EQ(DecideAtRung(Maximize(), 3, nan, {}), AshaDecision::kContinue);
}

}  // namespace
}  // namespace tl::server
