#include "train/epoch_stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "base/errors.h"

namespace tl::engine {
namespace {

// Every listed figure set to a value of its own, counting up from `first`
// (whole numbers for integers, fractions for the rest), so that a figure
// mapped to another or not at all shows.
EpochStats DistinctStats(double first = 1) {
  EpochStats stats;
  double next = first;
#define TL_SET_DISTINCT(member, type, ...)       \
  stats.member = static_cast<type>(next + 0.25); \
  next += 1;
  TL_EPOCH_METRICS(TL_SET_DISTINCT, TL_SET_DISTINCT)
#undef TL_SET_DISTINCT
  return stats;
}

std::set<std::string> ListedNames() {
  std::set<std::string> names;
  for (const EpochMetricInfo& figure : kEpochMetrics) names.insert(std::string(figure.name));
  return names;
}

TEST(EpochStatsTest, EveryFigureSurvivesJson) {
  const EpochStats stats = DistinctStats();
  const std::vector<EpochStats> parsed = EpochStatsFromJson(EpochStatsToJson({stats, stats}));
  ASSERT_EQ(parsed.size(), 2u);
#define TL_EXPECT_SAME(member, ...) EXPECT_EQ(parsed[1].member, stats.member) << #member;
  TL_EPOCH_METRICS(TL_EXPECT_SAME, TL_EXPECT_SAME)
#undef TL_EXPECT_SAME
}

TEST(EpochStatsTest, JsonHoldsEachFigureUnderItsNameAndNothingElse) {
  const nlohmann::json root = nlohmann::json::parse(EpochStatsToJson({DistinctStats()}));
  ASSERT_EQ(root.size(), 1u);
  ASSERT_EQ(root.at("epochs").size(), 1u);
  std::set<std::string> keys;
  for (const auto& [key, value] : root["epochs"][0].items()) keys.insert(key);
  EXPECT_EQ(keys, ListedNames());
  EXPECT_EQ(root["epochs"][0]["epoch"], 1);
  EXPECT_TRUE(root["epochs"][0]["train_images"].is_number_integer());
  EXPECT_DOUBLE_EQ(root["epochs"][0]["train_loss"].get<double>(), 2.25);
}

TEST(EpochStatsTest, NonFiniteFiguresComeBackAsNaN) {
  EpochStats stats = DistinctStats();
  stats.train_loss = std::numeric_limits<double>::quiet_NaN();
  stats.val_loss = std::numeric_limits<double>::infinity();
  const std::vector<EpochStats> parsed = EpochStatsFromJson(EpochStatsToJson({stats}));
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_TRUE(std::isnan(parsed[0].train_loss));
  EXPECT_TRUE(std::isnan(parsed[0].val_loss));
  EXPECT_EQ(parsed[0].val_accuracy, stats.val_accuracy);
}

// Checkpoints written before a figure existed lack it: an optional figure
// reads as 0 there, a required one makes the checkpoint unreadable.
TEST(EpochStatsTest, MissingOptionalFiguresReadAsZeroAndRequiredOnesThrow) {
  for (const EpochMetricInfo& figure : kEpochMetrics) {
    nlohmann::json root = nlohmann::json::parse(EpochStatsToJson({DistinctStats()}));
    root["epochs"][0].erase(std::string(figure.name));
    if (figure.json == EpochJson::kRequired) {
      EXPECT_THROW(EpochStatsFromJson(root.dump()), nlohmann::json::exception) << figure.name;
      continue;
    }
    const std::vector<EpochStats> parsed = EpochStatsFromJson(root.dump());
    ASSERT_EQ(parsed.size(), 1u);
#define TL_EXPECT_ZERO_IF_MISSING(member, ...) \
  if (figure.name == #member) EXPECT_EQ(parsed[0].member, 0) << #member;
    TL_EPOCH_METRICS(TL_EXPECT_ZERO_IF_MISSING, TL_EXPECT_ZERO_IF_MISSING)
#undef TL_EXPECT_ZERO_IF_MISSING
  }
}

TEST(EpochStatsTest, RanksTakeEveryRankZeroFigureAndKeepTheirOwn) {
  const EpochStats rank_zero = DistinctStats(1);
  const EpochStats before = DistinctStats(100);
  EpochStats other = before;
  SetRankZeroEpochFigures(RankZeroEpochFigures(rank_zero), other);
#define TL_EXPECT_AGREED(member, type, ranks, ...)                                         \
  EXPECT_EQ(other.member,                                                                  \
            EpochRanks::ranks == EpochRanks::kRankZero ? rank_zero.member : before.member) \
      << #member;
  TL_EPOCH_METRICS(TL_EXPECT_AGREED, TL_EXPECT_AGREED)
#undef TL_EXPECT_AGREED
}

// Every figure of an epoch must agree across ranks, so that their reports and
// early stopping agree; the epoch number does by itself.
TEST(EpochStatsTest, OnlyTheEpochNumberIsEachRanksOwn) {
  for (const EpochMetricInfo& figure : kEpochMetrics) {
    EXPECT_EQ(figure.ranks == EpochRanks::kOwn, figure.name == "epoch") << figure.name;
  }
}

TEST(EpochStatsTest, CountsFromABroadcastAreRounded) {
  const EpochStats stats = DistinctStats();
  std::vector<double> figures = RankZeroEpochFigures(stats);
  for (double& figure : figures) figure -= 1e-7;
  EpochStats out;
  SetRankZeroEpochFigures(figures, out);
  EXPECT_EQ(out.train_images, stats.train_images);
  EXPECT_EQ(out.val_images, stats.val_images);
}

TEST(EpochStatsTest, ABroadcastOfAnotherShapeIsRefused) {
  std::vector<double> figures = RankZeroEpochFigures(DistinctStats());
  figures.pop_back();
  EpochStats stats;
  EXPECT_THROW(SetRankZeroEpochFigures(figures, stats), EngineError);
}

}  // namespace
}  // namespace tl::engine
