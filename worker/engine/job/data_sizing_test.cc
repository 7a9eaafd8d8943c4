#include "job/data_sizing.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace tl::engine {
namespace {

TEST(DataSizingTest, TinySetsHoldNothingOutLargerOnesASlice) {
  const DataSizingRule rule;
  const int64_t classes = 10;
  const auto below = static_cast<int64_t>(rule.min_images_per_class_for_val * classes) - 1;
  EXPECT_EQ(SizedValFraction(below, classes, false, rule), 0);
  EXPECT_EQ(SizedValFraction(below + 1, classes, false, rule), rule.val_fraction);
  EXPECT_EQ(SizedValFraction(100000, classes, false, rule), rule.val_fraction);
  EXPECT_EQ(SizedValFraction(100, 0, false, rule), 0);
  // Early stopping needs validation images whatever the size.
  EXPECT_EQ(SizedValFraction(below, classes, true, rule), rule.val_fraction);
}

TEST(DataSizingTest, TheBatchIsAShareOfTheSetWithinBounds) {
  const DataSizingRule rule;
  EXPECT_EQ(SizedBatchSize(10, rule), rule.min_batch);
  EXPECT_EQ(SizedBatchSize(100000, rule), rule.max_batch);
  const auto middle =
      static_cast<int64_t>((rule.min_batch + rule.max_batch) / 2 / rule.max_batch_share);
  const int batch = SizedBatchSize(middle, rule);
  EXPECT_GT(batch, rule.min_batch);
  EXPECT_LT(batch, rule.max_batch);
  EXPECT_LE(batch, middle * rule.max_batch_share);
}

TEST(DataSizingTest, TheBatchIsAtLeastTheReplicas) {
  DataSizingRule rule;
  rule.replicas = 16;
  // 40 images alone would take batches of 10.
  EXPECT_EQ(SizedBatchSize(40, DataSizingRule{}), 10);
  EXPECT_EQ(SizedBatchSize(40, rule), 16);
  rule.replicas = 64;
  EXPECT_EQ(SizedBatchSize(100000, rule), 64);
}

TEST(DataSizingTest, EpochsMakeTheStepBudgetWithinBounds) {
  const DataSizingRule rule;
  // 50 images of batch 8 are 7 steps an epoch: the step floor takes many epochs.
  const int epochs = SizedEpochs(50, 8, rule);
  EXPECT_GE(epochs * 7, rule.min_steps);
  EXPECT_LT((epochs - 1) * 7, rule.min_steps);
  // Large sets grow the budget with the images but never below min_epochs.
  EXPECT_GT(SizedSteps(1000000, rule), SizedSteps(1000, rule));
  EXPECT_GE(SizedEpochs(10000000, 32, rule), rule.min_epochs);
  DataSizingRule short_budget = rule;
  short_budget.min_steps = 1;
  short_budget.steps_per_image = 0;
  EXPECT_EQ(SizedEpochs(100000, 32, short_budget), rule.min_epochs);
  EXPECT_EQ(SizedEpochs(1, 8, rule), rule.max_epochs);
}

TEST(DataSizingTest, FieldsTheSpecSetAreKept) {
  const DataSizing all = SizeTraining({true, true, true, false}, 200, 64, 7, 0);
  EXPECT_EQ(all.batch_size, SizedBatchSize(200));
  EXPECT_EQ(all.epochs, SizedEpochs(200, all.batch_size));
  EXPECT_EQ(all.steps, ((200 + all.batch_size - 1) / all.batch_size) * all.epochs);
  const DataSizing epochs_only = SizeTraining({true, false, false, false}, 200, 64, 7, 0.2);
  EXPECT_EQ(epochs_only.batch_size, 64);
  EXPECT_EQ(epochs_only.epochs, SizedEpochs(200, 64));
  EXPECT_EQ(epochs_only.val_fraction, 0.2);
  const DataSizing none = SizeTraining({}, 200, 64, 7, 0.2);
  EXPECT_EQ(none.batch_size, 64);
  EXPECT_EQ(none.epochs, 7);
  const nlohmann::json json = nlohmann::json::parse(DataSizingToJson(epochs_only));
  EXPECT_EQ(json.at("sized_fields"), nlohmann::json::array({"training.epochs"}));
  EXPECT_EQ(json.at("epochs"), epochs_only.epochs);
}

TEST(DataSizingTest, StepEpochsAreAThirdAfterWarmup) {
  EXPECT_EQ(DefaultStepEpochs(30, 0), 10);
  EXPECT_EQ(DefaultStepEpochs(30, 3), 9);
  EXPECT_EQ(DefaultStepEpochs(2, 1), 1);
}

}  // namespace
}  // namespace tl::engine
