#include "worker/engine/classification_metrics.h"

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

TEST(ConfusionMatrixTest, EmptyIsZero) {
  ConfusionMatrix matrix(2);
  EXPECT_EQ(matrix.total(), 0);
  EXPECT_EQ(matrix.accuracy(), 0.0);
  EXPECT_EQ(matrix.macro_f1(), 0.0);
}

}  // namespace
}  // namespace tl::engine
