// The spec table's rows: their fields reached through reflection, and the
// defaults of the table within its own bounds under every setting they depend on.
#include "server/spec/spec_fields.h"

#include <set>
#include <string>

#include "absl/status/status.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/spec/spec_bounds.h"
#include "server/spec/spec_defaults.h"

namespace tl::server {
namespace {

using ::testing::HasSubstr;
using ::tl::testing::IsOk;
using ::tl::testing::StatusIs;
using ::tl::v1::JobSpec;
using ::tl::v1::TrainingSpec;

TEST(SpecFieldsTest, EveryFieldHasOneRow) {
  std::set<std::string> paths;
  for (const SpecField& field : SpecFields()) {
    EXPECT_TRUE(paths.insert(field.path).second) << field.path << " has two rows";
  }
}

TEST(SpecFieldsTest, JsonPathIsLowerCamelCase) {
  EXPECT_EQ(SpecField("training.early_stopping.min_delta").JsonPath(),
            "training.earlyStopping.minDelta");
  EXPECT_EQ(SpecField("priority").JsonPath(), "priority");
}

TEST(SpecFieldsTest, FieldsAreReadAndWrittenThroughTheirPath) {
  JobSpec spec;
  const SpecField patience("training.early_stopping.patience");
  EXPECT_FALSE(patience.IsSet(spec));
  EXPECT_FALSE(spec.training().has_early_stopping()) << "reading creates nothing";
  patience.Set(spec, 7);
  EXPECT_TRUE(patience.IsSet(spec));
  EXPECT_EQ(spec.training().early_stopping().patience(), 7);
  EXPECT_EQ(patience.Get(spec), 7);

  // Without presence, a field is set when it is not zero.
  const SpecField threads("training.threads");
  EXPECT_FALSE(threads.IsSet(spec));
  threads.Set(spec, 3);
  EXPECT_TRUE(threads.IsSet(spec));

  const SpecField strategy("training.strategy");
  strategy.Set(spec, TrainingSpec::FULL);
  EXPECT_EQ(spec.training().strategy(), TrainingSpec::FULL);
  const SpecField seed("training.seed");
  seed.Set(spec, 0);
  EXPECT_TRUE(seed.IsSet(spec)) << "an explicit 0 of an optional field is set";
  EXPECT_TRUE(SpecField("training.epochs").IsInteger());
  EXPECT_FALSE(SpecField("training.momentum").IsInteger());
}

TEST(SpecFieldsDeathTest, APathJobSpecLacksStopsTheTable) {
  EXPECT_DEATH(SpecField("training.epoch"), "training.epoch is not a field of JobSpec");
  EXPECT_DEATH(SpecField("training.epochs.value"), "goes on past a field");
  EXPECT_DEATH(SpecField("training"), "is not a single number");
  EXPECT_DEATH(SpecField("training.epochs").UnknownValue("?"), "is not an enum");
}

// Every combination of the settings defaults depend on: the defaults filled
// in must pass the table's own bounds.
TEST(SpecFieldsTest, DefaultsLieWithinTheirBounds) {
  for (int strategy = TrainingSpec::Strategy_MIN; strategy <= TrainingSpec::Strategy_MAX;
       ++strategy) {
    for (int optimizer = TrainingSpec::Optimizer_MIN; optimizer <= TrainingSpec::Optimizer_MAX;
         ++optimizer) {
      for (int schedule = TrainingSpec::LrSchedule_MIN;
           schedule <= TrainingSpec::LrSchedule_MAX; ++schedule) {
        JobSpec spec;
        spec.mutable_training()->set_strategy(static_cast<TrainingSpec::Strategy>(strategy));
        spec.mutable_training()->set_optimizer(static_cast<TrainingSpec::Optimizer>(optimizer));
        spec.mutable_training()->set_lr_schedule(static_cast<TrainingSpec::LrSchedule>(schedule));
        spec.mutable_training()->mutable_early_stopping();
        spec.mutable_preprocessing()->mutable_random_resized_crop();
        FillSpecDefaults(spec);
        EXPECT_THAT(CheckSpecBounds(spec), IsOk()) << spec.ShortDebugString();
      }
    }
  }
}

TEST(SpecFieldsTest, BoundsNameTheFieldAndTheInterval) {
  JobSpec spec;
  spec.mutable_training()->set_label_smoothing(1);
  FillSpecDefaults(spec);
  EXPECT_THAT(CheckSpecBounds(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "training.label_smoothing is 1; it must lie in [0, 1)"));
  spec.mutable_training()->set_label_smoothing(0);
  spec.mutable_resources()->set_min_gpu_memory_bytes(-1);
  EXPECT_THAT(CheckSpecBounds(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "resources.min_gpu_memory_bytes must not be negative"));
  spec.mutable_resources()->set_min_gpu_memory_bytes(0);
  spec.mutable_training()->set_step_gamma(0.5);
  EXPECT_THAT(CheckSpecBounds(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "training.step_gamma applies to the STEP lr_schedule only, not CONSTANT"));
}

TEST(SpecFieldsTest, UnsetZeroDefaultsCreateNoMessages) {
  JobSpec spec;
  FillSpecDefaults(spec);
  EXPECT_FALSE(spec.has_resources()) << "resources' defaults are its zeros";
  EXPECT_FALSE(spec.training().has_early_stopping());
  EXPECT_FALSE(spec.preprocessing().has_random_resized_crop());
}

}  // namespace
}  // namespace tl::server
