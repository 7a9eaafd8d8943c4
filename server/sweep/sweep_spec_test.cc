#include "server/sweep/sweep_spec.h"

#include <filesystem>
#include <string>

#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "server/spec/spec_validation.h"

namespace tl::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::tl::testing::StatusIs;
using ::tl::testing::WriteFile;
using ::tl::v1::JobSpec;
using ::tl::v1::SweepSpec;
using SweepObjective = ::tl::v1::SweepSpec::Objective;

constexpr char kManifest[] =
    R"({"format": "tl.backbone.v1", "architecture": "resnet18", "feature_dim": 512})";

// A data root with a backbone and two classes of (empty: validation reads names only) images.
class SweepSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_root_ = fs::path(temp_dir_.path()) / "data";
    WriteFile(data_root_ / "backbones/resnet.pt", "torchscript");
    WriteFile(data_root_ / "backbones/resnet.json", kManifest);
    WriteFile(data_root_ / "train/a/1.png", "");
    WriteFile(data_root_ / "train/b/1.png", "");
    fs::create_directories(fs::path(temp_dir_.path()) / "artifacts");
    context_.data_root = data_root_.string();
    context_.artifact_root = (fs::path(temp_dir_.path()) / "artifacts").string();
    context_.find_job = [](const std::string& id) -> absl::StatusOr<tl::v1::Job> {
      return absl::NotFoundError("job " + id + " not found");
    };
  }

  // A sweep over `space_json` of a base spec with `training_json` as its training.
  SweepSpec Sweep(const std::string& space_json, const std::string& rest = "",
                  const std::string& training_json = "{}") {
    SweepSpec spec;
    const std::string json =
        R"({"name": "lr", "base": {"backbone": {"path": "backbones/resnet.pt"},
           "dataset": {"trainDir": "train"}, "training": )" +
        training_json + R"(}, "space": )" + space_json + rest + "}";
    const auto status = google::protobuf::util::JsonStringToMessage(json, &spec);
    EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json;
    return spec;
  }

  absl::StatusOr<SweepSpec> Validate(const SweepSpec& spec) {
    return ValidateSweepSpec(spec, context_);
  }

  tl::testing::TempDir temp_dir_;
  fs::path data_root_;
  SpecContext context_;
};

constexpr char kListedRates[] = R"([{"field": "training.learning_rate", "values": [0.1, 0.01]},
    {"field": "preprocessing.horizontal_flip", "values": [true, false]}])";
constexpr char kRateRange[] =
    R"([{"field": "training.learning_rate", "min": 1e-4, "max": 1e-1, "scale": "LOG"}])";

TEST_F(SweepSpecTest, DefaultsAreFilledIn) {
  ASSERT_OK_AND_ASSIGN(const SweepSpec grid, Validate(Sweep(kListedRates)));
  EXPECT_EQ(grid.method(), SweepSpec::GRID);
  EXPECT_EQ(grid.max_trials(), 4);
  EXPECT_EQ(grid.max_parallel_trials(), 4);
  EXPECT_EQ(grid.max_failed_trials(), 1);
  EXPECT_EQ(grid.objective().metric(), SweepObjective::VAL_ACCURACY);
  EXPECT_EQ(grid.objective().direction(), SweepObjective::MAXIMIZE);
  EXPECT_DOUBLE_EQ(grid.base().dataset().val_fraction(), 0.2);  // trials need validation images
  EXPECT_FALSE(grid.base().training().has_learning_rate());     // the base stays as given
  EXPECT_TRUE(grid.refit());  // the trials hold out training images: the refit trains on them

  ASSERT_OK_AND_ASSIGN(const SweepSpec random,
                       Validate(Sweep(kRateRange, R"(, "objective": {"metric": "VAL_LOSS"})")));
  EXPECT_EQ(random.method(), SweepSpec::RANDOM);
  EXPECT_EQ(random.max_trials(), 16);
  EXPECT_EQ(random.max_failed_trials(), 4);
  EXPECT_EQ(random.seed(), 1u);
  EXPECT_EQ(random.objective().direction(), SweepObjective::MINIMIZE);

  ASSERT_OK_AND_ASSIGN(const SweepSpec asha,
                       Validate(Sweep(kRateRange, R"(, "method": "ASHA")", R"({"epochs": 9})")));
  EXPECT_EQ(asha.asha().min_epochs(), 1);
  EXPECT_EQ(asha.asha().reduction_factor(), 3);
}

TEST_F(SweepSpecTest, ARefitIsTheDefaultOnlyWhereTheTrialsHoldOutTrainingImages) {
  WriteFile(data_root_ / "val/a/1.png", "");
  WriteFile(data_root_ / "val/b/1.png", "");
  SweepSpec with_val_dir = Sweep(kListedRates);
  with_val_dir.mutable_base()->mutable_dataset()->set_val_dir("val");
  ASSERT_OK_AND_ASSIGN(const SweepSpec filled, Validate(with_val_dir));
  EXPECT_FALSE(filled.refit());
  with_val_dir.set_refit(true);
  EXPECT_THAT(Validate(with_val_dir),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("refit is true, but base names dataset.val_dir")));
  SweepSpec declined = Sweep(kListedRates);
  declined.set_refit(false);
  ASSERT_OK_AND_ASSIGN(const SweepSpec kept, Validate(declined));
  EXPECT_FALSE(kept.refit());
}

TEST_F(SweepSpecTest, TheRefitTrainsTheBestTrialsRecipeOnEveryTrainingImage) {
  ASSERT_OK_AND_ASSIGN(
      const SweepSpec spec,
      Validate(Sweep(kListedRates, "",
                     R"({"epochs": 12, "earlyStopping": {"patience": 2}})")));
  ASSERT_OK_AND_ASSIGN(const std::vector<SpaceParameter> space, ResolveSpace(spec));
  google::protobuf::Struct applied;
  const JobSpec trial = TrialSpec(spec, space, 3, &applied);
  tl::v1::JobResult result;
  result.set_best_epoch(7);
  const JobSpec refit = RefitSpec(spec, space, 3, result);
  EXPECT_EQ(refit.name(), "lr-refit");
  EXPECT_TRUE(refit.dataset().has_val_fraction());
  EXPECT_EQ(refit.dataset().val_fraction(), 0);
  EXPECT_FALSE(refit.training().has_early_stopping());
  EXPECT_EQ(refit.training().epochs(), 7);  // the trial's exported weights trained 7 epochs
  EXPECT_DOUBLE_EQ(refit.training().learning_rate(), trial.training().learning_rate());
  EXPECT_EQ(refit.preprocessing().horizontal_flip(), trial.preprocessing().horizontal_flip());
  // Without early stopping the trial's own epochs stay.
  ASSERT_OK_AND_ASSIGN(const SweepSpec plain,
                       Validate(Sweep(kListedRates, "", R"({"epochs": 12})")));
  EXPECT_EQ(RefitSpec(plain, space, 1, result).training().epochs(), 12);
  // A best epoch before the warmup's end still trains the warmup, or the spec would fail.
  ASSERT_OK_AND_ASSIGN(
      const SweepSpec warm,
      Validate(Sweep(kListedRates, "",
                     R"({"epochs": 12, "warmupEpochs": 9, "earlyStopping": {"patience": 2}})")));
  const JobSpec warm_refit = RefitSpec(warm, space, 0, result);
  EXPECT_EQ(warm_refit.training().epochs(), 9);
  EXPECT_THAT(ValidateJobSpecNumbers(warm_refit), tl::testing::IsOk());
  // AUTO trains what its probe chose, without the fine-tune's fields when it chose another.
  ASSERT_OK_AND_ASSIGN(
      const SweepSpec automatic,
      Validate(Sweep(kListedRates, "", R"({"epochs": 12, "strategy": "AUTO", "unfreezeGroups": 1})")));
  tl::v1::JobResult probed;
  probed.mutable_auto_strategy()->set_chosen(tl::v1::TrainingSpec::FULL);
  const JobSpec chosen = RefitSpec(automatic, space, 0, probed);
  EXPECT_EQ(chosen.training().strategy(), tl::v1::TrainingSpec::FULL);
  EXPECT_FALSE(chosen.training().has_unfreeze_groups());
  EXPECT_THAT(ValidateJobSpecNumbers(chosen), tl::testing::IsOk());
  probed.mutable_auto_strategy()->set_chosen(tl::v1::TrainingSpec::FINE_TUNE);
  EXPECT_EQ(RefitSpec(automatic, space, 0, probed).training().unfreeze_groups(), 1);
  // And at the rate its probe chose, where the trial left the rate to the probe.
  probed.mutable_auto_strategy()->set_chosen_learning_rate(0.01);
  EXPECT_EQ(RefitSpec(automatic, space, 0, probed).training().learning_rate(), 0.1);
  ASSERT_OK_AND_ASSIGN(
      const SweepSpec seeds,
      Validate(Sweep(R"([{"field": "training.seed", "values": [1, 2]}])", "",
                     R"({"epochs": 12, "strategy": "AUTO"})")));
  ASSERT_OK_AND_ASSIGN(const std::vector<SpaceParameter> seed_space, ResolveSpace(seeds));
  EXPECT_FALSE(RefitSpec(seeds, seed_space, 0, tl::v1::JobResult{}).training().has_learning_rate());
  const JobSpec probed_rate = RefitSpec(seeds, seed_space, 0, probed);
  EXPECT_EQ(probed_rate.training().strategy(), tl::v1::TrainingSpec::FINE_TUNE);
  EXPECT_EQ(probed_rate.training().learning_rate(), 0.01);
}

TEST_F(SweepSpecTest, BadSweepsAreRefusedNamingTheField) {
  const absl::StatusCode invalid = absl::StatusCode::kInvalidArgument;
  SweepSpec no_validation = Sweep(kListedRates);
  no_validation.mutable_base()->mutable_dataset()->set_val_fraction(0);
  EXPECT_THAT(Validate(no_validation),
              StatusIs(invalid, HasSubstr("base.dataset.val_fraction is 0")));
  EXPECT_THAT(Validate(Sweep(R"([{"field": "training.epochs", "values": [1, 2]}, )"
                             R"({"field": "training.learning_rate", "min": 0.001, "max": 0.1}])",
                             R"(, "method": "GRID")")),
              StatusIs(invalid, HasSubstr("space[1] gives a range, but GRID needs listed values")));
  EXPECT_THAT(Validate(Sweep(kRateRange, R"(, "maxTrials": 257)")),
              StatusIs(invalid, HasSubstr("max_trials is 257; it must lie in [1, 256]")));
  EXPECT_THAT(Validate(Sweep(kListedRates, R"(, "maxTrials": 3)")),
              StatusIs(invalid, HasSubstr("max_trials is 3, below the grid's 4 points")));
  std::string seven = "[1, 2, 3, 4, 5, 6, 7]";
  EXPECT_THAT(Validate(Sweep(R"([{"field": "training.epochs", "values": )" + seven +
                             R"(}, {"field": "training.batch_size", "values": )" + seven +
                             R"(}, {"field": "training.seed", "values": )" + seven + "}]")),
              StatusIs(invalid, HasSubstr("space makes a grid of 343 points")));
  EXPECT_THAT(Validate(Sweep(kRateRange, R"(, "maxParallelTrials": 0)")),
              StatusIs(invalid, HasSubstr("max_parallel_trials is 0")));
  EXPECT_THAT(Validate(Sweep(kRateRange, R"(, "method": "ASHA")")),
              StatusIs(invalid, HasSubstr("base.training.epochs is unset, but ASHA's rungs")));
  EXPECT_THAT(Validate(Sweep(kRateRange, R"(, "method": "ASHA", "asha": {"minEpochs": 4})",
                             R"({"epochs": 4})")),
              StatusIs(invalid, HasSubstr("asha.min_epochs is 4; it must be below the trials' 4")));
  EXPECT_THAT(Validate(Sweep(kRateRange, R"(, "asha": {"minEpochs": 1})")),
              StatusIs(invalid, HasSubstr("asha applies to the ASHA method only")));
  SweepSpec prioritised = Sweep(kListedRates);
  prioritised.mutable_base()->set_priority(5);
  EXPECT_THAT(Validate(prioritised), StatusIs(invalid, HasSubstr("base.priority is set")));
  SweepSpec evaluation = Sweep(kListedRates);
  evaluation.mutable_base()->mutable_evaluate()->set_from_job("x");
  EXPECT_THAT(Validate(evaluation), StatusIs(invalid, HasSubstr("base.evaluate is set")));
  EXPECT_THAT(Validate(Sweep(kListedRates, R"(, "priority": 5000)")),
              StatusIs(invalid, HasSubstr("priority is 5000")));
}

TEST_F(SweepSpecTest, ASpaceMaySetAFieldOnlyWhereTheStrategyAllowsIt) {
  const std::string groups = R"({"field": "training.unfreeze_groups", "values": [1, 2]})";
  EXPECT_THAT(Validate(Sweep("[" + groups + "]", "", R"({"strategy": "FULL"})")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("space[0].field is training.unfreeze_groups, which applies to "
                                 "the FINE_TUNE and AUTO strategies only")));
  // With the strategy searched too, trials that fine-tune take the groups; the others leave them.
  ASSERT_OK_AND_ASSIGN(
      const SweepSpec mixed,
      Validate(Sweep(R"([{"field": "training.strategy", "values": ["FULL", "FINE_TUNE"]}, )" +
                     groups + "]")));
  ASSERT_OK_AND_ASSIGN(const std::vector<SpaceParameter> space, ResolveSpace(mixed));
  google::protobuf::Struct applied;
  const JobSpec first = TrialSpec(mixed, space, 0, &applied);
  EXPECT_EQ(first.name(), "lr-trial-0");
  EXPECT_FALSE(first.training().has_unfreeze_groups());
  EXPECT_EQ(TrialSpec(mixed, space, 3, &applied).training().unfreeze_groups(), 2);
}

TEST_F(SweepSpecTest, EveryTrialIsCheckedAsAJobWouldBe) {
  // head_only_epochs 3 is fine with 10 epochs and out of bounds with 2: the trial at fault is named.
  EXPECT_THAT(Validate(Sweep(R"([{"field": "training.epochs", "values": [10, 2]}])", "",
                             R"({"headOnlyEpochs": 3})")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("base.training.head_only_epochs is 3; it must lie in [0, 1] "
                                 "(in trial 1 (training.epochs = 2))")));
  // The files are the base's, checked once.
  SweepSpec missing = Sweep(kListedRates);
  missing.mutable_base()->mutable_dataset()->set_train_dir("nowhere");
  EXPECT_THAT(Validate(missing), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("base.dataset.train_dir")));
}

}  // namespace
}  // namespace tl::server
