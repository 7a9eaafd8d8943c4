#include "server/sweep/search_space.h"

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace tl::server {
namespace {

using ::testing::HasSubstr;
using ::tl::testing::IsOk;
using ::tl::testing::StatusIs;
using ::tl::v1::JobSpec;
using ::tl::v1::SweepSpec;
using ::tl::v1::TrainingSpec;

SweepSpec FromJson(const std::string& json) {
  SweepSpec spec;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &spec);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json;
  return spec;
}

// The space's error for one parameter given as JSON.
absl::Status ErrorOf(const std::string& parameter_json, const std::string& base_json = "{}") {
  return ResolveSpace(FromJson(R"({"base": )" + base_json + R"(, "space": [)" + parameter_json +
                               "]}"))
      .status();
}

TEST(SearchSpaceTest, BadParametersAreRefusedNamingThePlace) {
  const absl::StatusCode invalid = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(ResolveSpace(FromJson("{}")), StatusIs(invalid, HasSubstr("space is empty")));
  EXPECT_THAT(ErrorOf(R"({"values": [1]})"), StatusIs(invalid, HasSubstr("space[0].field is empty")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.learning_rat", "values": [1]})"),
              StatusIs(invalid, HasSubstr("space[0].field \"training.learning_rat\" is not a field")));
  EXPECT_THAT(ErrorOf(R"({"field": "dataset.val_fraction", "values": [0.1]})"),
              StatusIs(invalid, HasSubstr("space[0].field \"dataset.val_fraction\"")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.epochs"})"),
              StatusIs(invalid, HasSubstr("space[0] needs values or a range")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.epochs", "values": [1], "min": 1, "max": 2})"),
              StatusIs(invalid, HasSubstr("space[0] lists values and gives a range")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.epochs", "min": 1})"),
              StatusIs(invalid, HasSubstr("space[0].max is missing")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.learning_rate", "min": 0.1, "max": 0.01})"),
              StatusIs(invalid, HasSubstr("space[0].min is 0.1, above max")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.epochs", "values": [2, 2.5]})"),
              StatusIs(invalid, HasSubstr("space[0].values[1] is 2.5; training.epochs takes whole")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.epochs", "values": ["ten"]})"),
              StatusIs(invalid, HasSubstr("space[0].values[0] must be a number")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.strategy", "values": ["FULL", "PARTIAL"]})"),
              StatusIs(invalid, HasSubstr("space[0].values[1] is \"PARTIAL\"; training.strategy "
                                          "takes one of FEATURE_EXTRACTION, FINE_TUNE, FULL, AUTO")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.strategy", "values": ["STRATEGY_UNSPECIFIED"]})"),
              StatusIs(invalid, HasSubstr("space[0].values[0]")));
  EXPECT_THAT(ErrorOf(R"({"field": "preprocessing.horizontal_flip", "values": [1]})"),
              StatusIs(invalid, HasSubstr("space[0].values[0] must be true or false")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.strategy", "min": 1, "max": 3})"),
              StatusIs(invalid, HasSubstr("space[0] gives a range, but training.strategy is an enum")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.epochs", "values": [3], "scale": "LOG"})"),
              StatusIs(invalid, HasSubstr("space[0].scale applies to ranges only")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.epochs", "values": [3]}, {"field": "training.epochs", "values": [4]})"),
              StatusIs(invalid, HasSubstr("space[1].field names training.epochs again")));
}

TEST(SearchSpaceTest, ValuesOutsideTheFieldsBoundsAreRefused) {
  const absl::StatusCode invalid = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(ErrorOf(R"({"field": "training.learning_rate", "values": [0.01, 20]})"),
              StatusIs(invalid, HasSubstr("space[0].values[1] is out of bounds: "
                                          "training.learning_rate is 20; it must lie in [1e-12, 10]")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.label_smoothing", "min": 0, "max": 1})"),
              StatusIs(invalid, HasSubstr("space[0].max is out of bounds: training.label_smoothing is 1")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.epochs", "min": 0, "max": 5})"),
              StatusIs(invalid, HasSubstr("space[0].min is out of bounds: training.epochs must be positive")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.epochs", "values": [3000000000]})"),
              StatusIs(invalid, HasSubstr("space[0].values[0] is 3000000000; training.epochs holds")));
  // Bounds that depend on other fields read the base spec.
  EXPECT_THAT(ErrorOf(R"({"field": "training.warmup_epochs", "values": [0, 6]})",
                      R"({"training": {"epochs": 5}})"),
              StatusIs(invalid, HasSubstr("space[0].values[1] is out of bounds: training.warmup_epochs is 6")));
}

TEST(SearchSpaceTest, ALogRangeMustLieAboveZero) {
  EXPECT_THAT(ErrorOf(R"({"field": "training.weight_decay", "min": 0, "max": 0.1, "scale": "LOG"})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("space[0].min is 0; a LOG range must lie above 0")));
  EXPECT_THAT(ErrorOf(R"({"field": "training.weight_decay", "min": 0, "max": 0.1})"), IsOk());
}

TEST(SearchSpaceTest, GridWalksTheProductWithTheLastParameterFastest) {
  const SweepSpec spec = FromJson(R"({"space": [
      {"field": "training.learning_rate", "values": [0.1, 0.01]},
      {"field": "training.strategy", "values": ["FULL", "FINE_TUNE", "FEATURE_EXTRACTION"]}]})");
  ASSERT_OK_AND_ASSIGN(const std::vector<SpaceParameter> space, ResolveSpace(spec));
  EXPECT_EQ(GridSize(space), 6);
  std::vector<std::string> described;
  for (int index = 0; index < 6; ++index) {
    described.push_back(DescribeValues(space, TrialValues(space, SweepSpec::GRID, 0, index)));
  }
  EXPECT_EQ(described[0], "training.learning_rate = 0.1, training.strategy = FULL");
  EXPECT_EQ(described[1], "training.learning_rate = 0.1, training.strategy = FINE_TUNE");
  EXPECT_EQ(described[3], "training.learning_rate = 0.01, training.strategy = FULL");
  EXPECT_EQ(described[5], "training.learning_rate = 0.01, training.strategy = FEATURE_EXTRACTION");
  EXPECT_EQ(std::set<std::string>(described.begin(), described.end()).size(), 6u);
}

TEST(SearchSpaceTest, RandomDrawsArePureFunctionsOfSeedAndIndexWithinTheSpace) {
  const SweepSpec spec = FromJson(R"({"space": [
      {"field": "training.learning_rate", "min": 1e-5, "max": 1e-1, "scale": "LOG"},
      {"field": "training.batch_size", "min": 8, "max": 64},
      {"field": "preprocessing.horizontal_flip", "values": [true, false]}]})");
  ASSERT_OK_AND_ASSIGN(const std::vector<SpaceParameter> space, ResolveSpace(spec));
  int below_geometric_mean = 0;
  std::set<double> batch_sizes;
  std::set<double> flips;
  const int draws = 400;
  for (int index = 0; index < draws; ++index) {
    const std::vector<double> values = TrialValues(space, SweepSpec::RANDOM, 7, index);
    EXPECT_EQ(values, TrialValues(space, SweepSpec::RANDOM, 7, index));
    EXPECT_GE(values[0], 1e-5);
    EXPECT_LE(values[0], 1e-1);
    if (values[0] < 1e-3) ++below_geometric_mean;
    EXPECT_EQ(values[1], std::round(values[1]));
    EXPECT_GE(values[1], 8);
    EXPECT_LE(values[1], 64);
    batch_sizes.insert(values[1]);
    flips.insert(values[2]);
  }
  // Log-uniform: about half below the geometric mean (a linear draw would put 1% there).
  EXPECT_GT(below_geometric_mean, draws * 4 / 10);
  EXPECT_LT(below_geometric_mean, draws * 6 / 10);
  EXPECT_GT(batch_sizes.size(), 40u);
  EXPECT_EQ(flips, (std::set<double>{0, 1}));
  // Another seed, other trials.
  int same = 0;
  for (int index = 0; index < 16; ++index) {
    if (TrialValues(space, SweepSpec::RANDOM, 7, index) ==
        TrialValues(space, SweepSpec::RANDOM, 8, index)) {
      ++same;
    }
  }
  EXPECT_EQ(same, 0);
  // Pinned: a restarted server, or another build, draws these very values.
  const std::vector<double> pinned = TrialValues(space, SweepSpec::RANDOM, 1, 0);
  EXPECT_NEAR(pinned[0], 0.00594359, 1e-8);
  EXPECT_EQ(pinned[1], 32);
  EXPECT_EQ(pinned[2], 1);
}

TEST(SearchSpaceTest, ATrialSetsOnlyTheFieldsThatApplyToIt) {
  const SweepSpec spec = FromJson(R"({"space": [
      {"field": "training.strategy", "values": ["FULL", "FINE_TUNE"]},
      {"field": "training.unfreeze_groups", "values": [2]}]})");
  ASSERT_OK_AND_ASSIGN(const std::vector<SpaceParameter> space, ResolveSpace(spec));
  google::protobuf::Struct applied;
  const JobSpec full = TrialJobSpec(spec.base(), space, {TrainingSpec::FULL, 2}, &applied);
  EXPECT_EQ(full.training().strategy(), TrainingSpec::FULL);
  EXPECT_FALSE(full.training().has_unfreeze_groups());
  EXPECT_EQ(applied.fields().size(), 1u);
  EXPECT_EQ(applied.fields().at("training.strategy").string_value(), "FULL");
  const JobSpec fine_tune = TrialJobSpec(spec.base(), space, {TrainingSpec::FINE_TUNE, 2}, &applied);
  EXPECT_EQ(fine_tune.training().unfreeze_groups(), 2);
  EXPECT_EQ(applied.fields().at("training.unfreeze_groups").number_value(), 2);
}

}  // namespace
}  // namespace tl::server
