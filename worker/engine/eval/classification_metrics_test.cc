#include "eval/classification_metrics.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace tl::engine {
namespace {

torch::Tensor Ints(std::vector<int64_t> values) {
  return torch::tensor(values, torch::kInt64);
}

TEST(ConfusionMatrixTest, MatchesHandComputedFigures) {
  ConfusionMatrix matrix(3);
  // labels:      0 0 0 1 1 2
  // predictions: 0 0 1 1 2 2
  matrix.Add(Ints({0, 0, 1, 1, 2, 2}), Ints({0, 0, 0, 1, 1, 2}));
  EXPECT_EQ(matrix.total(), 6);
  EXPECT_DOUBLE_EQ(matrix.accuracy(), 4.0 / 6.0);
  // precision: class0 2/2, class1 1/2, class2 1/2; recall: 2/3, 1/2, 1/1
  EXPECT_DOUBLE_EQ(matrix.macro_precision(), (1.0 + 0.5 + 0.5) / 3.0);
  EXPECT_DOUBLE_EQ(matrix.macro_recall(), (2.0 / 3.0 + 0.5 + 1.0) / 3.0);
  const double f1_0 = 2 * 1.0 * (2.0 / 3.0) / (1.0 + 2.0 / 3.0);
  const double f1_1 = 0.5;
  const double f1_2 = 2 * 0.5 * 1.0 / 1.5;
  EXPECT_DOUBLE_EQ(matrix.macro_f1(), (f1_0 + f1_1 + f1_2) / 3.0);
  EXPECT_EQ(matrix.counts()[0], (std::vector<int64_t>{2, 1, 0}));
  EXPECT_EQ(matrix.counts()[1], (std::vector<int64_t>{0, 1, 1}));
}

TEST(ConfusionMatrixTest, AccumulatesAcrossBatchesAndSkipsAbsentClasses) {
  ConfusionMatrix matrix(4);
  matrix.Add(Ints({0, 1}), Ints({0, 1}));
  matrix.Add(Ints({1}), Ints({0}));
  EXPECT_EQ(matrix.total(), 3);
  EXPECT_DOUBLE_EQ(matrix.accuracy(), 2.0 / 3.0);
  // Classes 2 and 3 never occur, so the macro figures average classes 0, 1.
  EXPECT_DOUBLE_EQ(matrix.macro_recall(), (0.5 + 1.0) / 2.0);
  EXPECT_DOUBLE_EQ(matrix.macro_precision(), (1.0 + 0.5) / 2.0);
}

TEST(ConfusionMatrixTest, PerClassScoresAndWeightedAverages) {
  ConfusionMatrix matrix(3);
  // Same images as above: supports 3, 2, 1.
  matrix.Add(Ints({0, 0, 1, 1, 2, 2}), Ints({0, 0, 0, 1, 1, 2}));
  const std::vector<ClassScore> scores = matrix.per_class();
  ASSERT_EQ(scores.size(), 3u);
  EXPECT_EQ(scores[0].support, 3);
  EXPECT_EQ(scores[1].support, 2);
  EXPECT_EQ(scores[2].support, 1);
  EXPECT_DOUBLE_EQ(scores[0].precision, 1.0);
  EXPECT_DOUBLE_EQ(scores[0].recall, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(scores[2].f1, 2 * 0.5 * 1.0 / 1.5);
  EXPECT_DOUBLE_EQ(matrix.weighted_recall(), (3 * (2.0 / 3.0) + 2 * 0.5 + 1 * 1.0) / 6.0);
  EXPECT_DOUBLE_EQ(matrix.weighted_precision(), (3 * 1.0 + 2 * 0.5 + 1 * 0.5) / 6.0);
  EXPECT_DOUBLE_EQ(matrix.weighted_f1(), (3 * scores[0].f1 + 2 * scores[1].f1 + scores[2].f1) / 6.0);
  // Weighted recall is accuracy by definition.
  EXPECT_DOUBLE_EQ(matrix.weighted_recall(), matrix.accuracy());
}

TEST(TopKCorrectTest, CountsLabelsAmongTheHighestScores) {
  // Row 0: label 2 scores best; row 1: label 1 second; row 2: label 1 last.
  const torch::Tensor logits =
      torch::tensor({0.1, 0.2, 0.7, 0.5, 0.3, 0.2, 0.6, 0.1, 0.3}).view({3, 3});
  const torch::Tensor labels = Ints({2, 1, 1});
  EXPECT_EQ(TopKCorrect(logits, labels, 1), 1);
  EXPECT_EQ(TopKCorrect(logits, labels, 2), 2);
  // k above the class count is capped: every label is among all classes.
  EXPECT_EQ(TopKCorrect(logits, labels, 5), 3);
  EXPECT_EQ(TopKCorrect(logits.slice(0, 0, 0), labels.slice(0, 0, 0), 5), 0);
}

TEST(ConfusionMatrixTest, EmptyIsZero) {
  ConfusionMatrix matrix(2);
  EXPECT_EQ(matrix.total(), 0);
  EXPECT_EQ(matrix.accuracy(), 0.0);
  EXPECT_EQ(matrix.macro_f1(), 0.0);
  EXPECT_EQ(matrix.weighted_f1(), 0.0);
}

}  // namespace
}  // namespace tl::engine
