#include "train/class_weights.h"

#include <gtest/gtest.h>

#include "base/errors.h"

namespace tl::engine {
namespace {

const std::vector<std::string> kNames = {"cat", "dog", "fox"};

TEST(ClassWeightsTest, NothingAskedMeansNoWeights) {
  EXPECT_TRUE(ResolveClassWeights(kNames, {5, 5, 5}, {}, false).empty());
}

TEST(ClassWeightsTest, NamedClassesTakeTheirWeightOthersOne) {
  const std::vector<double> weights = ResolveClassWeights(kNames, {5, 5, 5}, {{"fox", 2.5}}, false);
  EXPECT_EQ(weights, (std::vector<double>{1.0, 1.0, 2.5}));
}

TEST(ClassWeightsTest, BalancedWeighsByInverseFrequency) {
  // 12 images, 3 classes: n / (k * count).
  const std::vector<double> weights = ResolveClassWeights(kNames, {6, 4, 2}, {}, true);
  ASSERT_EQ(weights.size(), 3u);
  EXPECT_DOUBLE_EQ(weights[0], 12.0 / (3 * 6));
  EXPECT_DOUBLE_EQ(weights[1], 12.0 / (3 * 4));
  EXPECT_DOUBLE_EQ(weights[2], 12.0 / (3 * 2));
  // Each class then carries the same total weight.
  EXPECT_DOUBLE_EQ(weights[0] * 6, weights[2] * 2);
}

TEST(ClassWeightsTest, BalancedGivesAClassWithoutImagesOne) {
  EXPECT_EQ(ResolveClassWeights(kNames, {4, 0, 4}, {}, true)[1], 1.0);
}

TEST(ClassWeightsTest, UnknownClassIsNamed) {
  try {
    ResolveClassWeights(kNames, {5, 5, 5}, {{"wolf", 2}}, false);
    FAIL() << "expected an error";
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("training.class_weights names class \"wolf\""),
              std::string::npos)
        << error.what();
  }
}

TEST(ClassWeightsTest, BothWaysAtOnceIsAnError) {
  EXPECT_THROW(ResolveClassWeights(kNames, {5, 5, 5}, {{"cat", 2}}, true), EngineError);
}

}  // namespace
}  // namespace tl::engine
