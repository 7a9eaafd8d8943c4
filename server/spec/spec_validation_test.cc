#include "server/spec/spec_validation.h"
#include "server/spec/spec_defaults.h"

#include "common/image_files.h"

#include <stdlib.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tl::server {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::tl::testing::IsOk;
using ::tl::testing::WriteFile;
using ::tl::testing::StatusIs;
using ::tl::v1::Job;
using ::tl::v1::JobSpec;
using ::tl::v1::TrainingSpec;

constexpr char kManifest[] =
    R"({"format": "tl.backbone.v1", "architecture": "resnet18", "feature_dim": 512})";

// A data root, an artifact root and a folder outside both, in a fresh temp directory:
//   data/backbones/resnet.pt + resnet.json   a valid backbone
//   data/backbones/bare.pt                   no manifest
//   data/backbones/wrong.pt + wrong.json     a manifest of another format
//   data/backbones/link.pt -> outside/evil.pt (which has a valid manifest)
//   data/flowers/train/{daisy,rose}/*.png    two classes
//   data/flowers/val/{daisy,rose}/*.png
//   data/single/only/a.png                   one class
//   data/texts/{a,b}/notes.txt               class folders without images
//   artifacts/jobs/src/backbone.pt + .json   the exported backbone of a finished job
// Image files are empty: validation looks at names only.
class SpecValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = temp_dir_.path();
    data_root_ = base_ / "data";
    artifact_root_ = base_ / "artifacts";

    WriteFile(data_root_ / "backbones/resnet.pt", "torchscript");
    WriteFile(data_root_ / "backbones/resnet.json", kManifest);
    WriteFile(data_root_ / "backbones/bare.pt", "torchscript");
    WriteFile(data_root_ / "backbones/wrong.pt", "torchscript");
    WriteFile(data_root_ / "backbones/wrong.json", R"({"format": "onnx.v7"})");
    WriteFile(base_ / "outside/evil.pt", "torchscript");
    WriteFile(base_ / "outside/evil.json", kManifest);
    fs::create_symlink(base_ / "outside/evil.pt", data_root_ / "backbones/link.pt");
    fs::create_symlink(base_ / "outside/evil.json", data_root_ / "backbones/link.json");
    for (const char* split : {"train", "val"}) {
      for (const char* label : {"daisy", "rose"}) {
        for (const char* file : {"1.png", "2.PNG"}) {
          WriteFile(data_root_ / "flowers" / split / label / file, "");
        }
      }
    }
    WriteFile(data_root_ / "single/only/a.png", "");
    WriteFile(data_root_ / "texts/a/notes.txt", "");
    WriteFile(data_root_ / "texts/b/notes.txt", "");
    WriteFile(artifact_root_ / "jobs/src/backbone.pt", "torchscript");
    WriteFile(artifact_root_ / "jobs/src/backbone.json", kManifest);

    context_.data_root = data_root_.string();
    context_.artifact_root = artifact_root_.string();
    context_.find_job = [this](const std::string& job_id) -> absl::StatusOr<Job> {
      auto it = jobs_.find(job_id);
      if (it == jobs_.end()) return absl::NotFoundError("job " + job_id + " not found");
      return it->second;
    };
  }

  // The least a user must write: a backbone and a training folder.
  static JobSpec MinimalSpec() {
    JobSpec spec;
    spec.mutable_backbone()->set_path("backbones/resnet.pt");
    spec.mutable_dataset()->set_train_dir("flowers/train");
    return spec;
  }

  // Adds a stored job whose result names `backbone_path` under the artifact root.
  void AddJob(const std::string& id, Job::State state, const std::string& backbone_path) {
    Job job;
    job.set_id(id);
    job.set_state(state);
    job.mutable_result()->set_backbone_path(backbone_path);
    jobs_[id] = job;
  }

  absl::StatusOr<JobSpec> Validate(const JobSpec& spec) { return ValidateJobSpec(spec, context_); }

  ::tl::testing::TempDir temp_dir_;  // removed with the fixture, after TearDown
  fs::path base_;
  fs::path data_root_;
  fs::path artifact_root_;
  std::map<std::string, Job> jobs_;
  SpecContext context_;
};

// Matches an INVALID_ARGUMENT status whose message starts with the field at fault (and holds
// `detail`), so that a user can find the field from the message alone.
auto InvalidField(const std::string& field, const std::string& detail = "") {
  return StatusIs(absl::StatusCode::kInvalidArgument,
                  AllOf(StartsWith(field + " "), HasSubstr(detail)));
}

TEST_F(SpecValidationTest, MinimalSpecGetsEveryDefault) {
  ASSERT_OK_AND_ASSIGN(JobSpec spec, Validate(MinimalSpec()));

  const TrainingSpec& training = spec.training();
  EXPECT_EQ(training.strategy(), TrainingSpec::FINE_TUNE);
  ASSERT_TRUE(training.has_unfreeze_groups());
  EXPECT_EQ(training.unfreeze_groups(), 2);
  // Left to the data: the worker sizes them and the scheduler stores them then.
  EXPECT_FALSE(training.has_epochs());
  EXPECT_FALSE(training.has_batch_size());
  EXPECT_EQ(training.optimizer(), TrainingSpec::ADAM);
  EXPECT_DOUBLE_EQ(training.learning_rate(), 0.003);  // FINE_TUNE's
  EXPECT_DOUBLE_EQ(training.backbone_lr_scale(), 0.1);
  EXPECT_DOUBLE_EQ(training.momentum(), 0.9);
  ASSERT_TRUE(training.has_weight_decay());
  EXPECT_DOUBLE_EQ(training.weight_decay(), 0.0);
  EXPECT_EQ(training.seed(), 1u);
  EXPECT_FALSE(training.nesterov());
  EXPECT_EQ(training.lr_schedule(), TrainingSpec::CONSTANT);
  EXPECT_EQ(training.warmup_epochs(), 0);
  // Fields of the schedules not chosen stay unset.
  EXPECT_FALSE(training.has_step_epochs());
  EXPECT_FALSE(training.has_step_gamma());
  EXPECT_FALSE(training.has_min_learning_rate());
  EXPECT_DOUBLE_EQ(training.clip_grad_norm(), 0.0);
  EXPECT_DOUBLE_EQ(training.label_smoothing(), 0.0);
  EXPECT_TRUE(training.class_weights().empty());
  EXPECT_FALSE(training.balanced_class_weights());
  EXPECT_FALSE(spec.dataset().has_val_fraction());
  ASSERT_TRUE(spec.preprocessing().has_horizontal_flip());
  EXPECT_FALSE(spec.preprocessing().horizontal_flip());
  // Zero means "take the manifest's" and stays zero.
  EXPECT_EQ(spec.preprocessing().image_size(), 0);
  EXPECT_EQ(spec.backbone().path(), "backbones/resnet.pt");
  EXPECT_EQ(spec.dataset().train_dir(), "flowers/train");
}

// What a worker sized goes into the fields the spec left unset, and the
// defaults that follow from them with it; a field the spec set stays.
TEST_F(SpecValidationTest, SizedFieldsFillOnlyWhatTheSpecLeftUnset) {
  JobSpec submitted = MinimalSpec();
  submitted.mutable_training()->set_lr_schedule(TrainingSpec::STEP);
  submitted.mutable_training()->set_batch_size(48);
  ASSERT_OK_AND_ASSIGN(JobSpec spec, Validate(submitted));
  EXPECT_FALSE(spec.training().has_step_epochs());  // a third of epochs not known yet
  tl::v1::DataSizing sizing;
  sizing.add_sized_fields("training.epochs");
  sizing.add_sized_fields("dataset.val_fraction");
  sizing.add_sized_fields("training.batch_size");  // as if: the spec's value is kept
  sizing.set_epochs(31);
  sizing.set_batch_size(16);
  sizing.set_val_fraction(0);
  FillSizedFields(sizing, spec);
  EXPECT_EQ(spec.training().epochs(), 31);
  EXPECT_EQ(spec.training().batch_size(), 48);
  ASSERT_TRUE(spec.dataset().has_val_fraction());
  EXPECT_EQ(spec.dataset().val_fraction(), 0);
  EXPECT_EQ(spec.training().step_epochs(), 10);
}

TEST_F(SpecValidationTest, ExplicitValuesAreKept) {
  JobSpec submitted = MinimalSpec();
  submitted.mutable_training()->set_epochs(3);
  submitted.mutable_training()->set_batch_size(8);
  submitted.mutable_training()->set_learning_rate(0.05);
  submitted.mutable_training()->set_seed(0);  // explicit zero is not "unset"
  submitted.mutable_preprocessing()->set_horizontal_flip(false);
  submitted.mutable_dataset()->set_val_fraction(0.0);
  ASSERT_OK_AND_ASSIGN(JobSpec spec, Validate(submitted));
  EXPECT_EQ(spec.training().epochs(), 3);
  EXPECT_EQ(spec.training().batch_size(), 8);
  EXPECT_DOUBLE_EQ(spec.training().learning_rate(), 0.05);
  EXPECT_EQ(spec.training().seed(), 0u);
  EXPECT_FALSE(spec.preprocessing().horizontal_flip());
  EXPECT_DOUBLE_EQ(spec.dataset().val_fraction(), 0.0);
}

TEST_F(SpecValidationTest, SgdDefaultsToAHigherLearningRate) {
  JobSpec submitted = MinimalSpec();
  submitted.mutable_training()->set_optimizer(TrainingSpec::SGD);
  ASSERT_OK_AND_ASSIGN(JobSpec spec, Validate(submitted));
  EXPECT_EQ(spec.training().optimizer(), TrainingSpec::SGD);
  EXPECT_DOUBLE_EQ(spec.training().learning_rate(), 0.01);
}

// Adam's rate by how much of the network trains.
TEST_F(SpecValidationTest, AdamsRateFollowsTheStrategy) {
  const std::pair<TrainingSpec::Strategy, double> cases[] = {
      {TrainingSpec::FEATURE_EXTRACTION, 0.01},
      {TrainingSpec::FINE_TUNE, 0.003},
      {TrainingSpec::FULL, 0.001}};
  for (const auto& [strategy, rate] : cases) {
    JobSpec submitted = MinimalSpec();
    submitted.mutable_training()->set_strategy(strategy);
    ASSERT_OK_AND_ASSIGN(JobSpec spec, Validate(submitted));
    EXPECT_DOUBLE_EQ(spec.training().learning_rate(), rate) << TrainingSpec::Strategy_Name(strategy);
  }
}

TEST_F(SpecValidationTest, FullTrainingScalesTheBackboneRateByOne) {
  JobSpec submitted = MinimalSpec();
  submitted.mutable_training()->set_strategy(TrainingSpec::FULL);
  ASSERT_OK_AND_ASSIGN(JobSpec spec, Validate(submitted));
  EXPECT_DOUBLE_EQ(spec.training().backbone_lr_scale(), 1.0);
  // unfreeze_groups means nothing outside FINE_TUNE, so it is not filled in either.
  EXPECT_FALSE(spec.training().has_unfreeze_groups());
}

TEST_F(SpecValidationTest, AutoKeepsUnfreezeGroupsAndLeavesTheBackboneRateToItsChoice) {
  JobSpec submitted = MinimalSpec();
  submitted.mutable_training()->set_strategy(TrainingSpec::AUTO);
  ASSERT_OK_AND_ASSIGN(JobSpec spec, Validate(submitted));
  EXPECT_EQ(spec.training().strategy(), TrainingSpec::AUTO);
  // For FINE_TUNE, should the probe choose it.
  EXPECT_EQ(spec.training().unfreeze_groups(), 2);
  // 0.1 for FINE_TUNE, 1 for FULL: the worker fills it in once it has chosen,
  // and the learning rate alike.
  EXPECT_FALSE(spec.training().has_backbone_lr_scale());
  EXPECT_FALSE(spec.training().has_learning_rate());

  submitted.mutable_training()->set_backbone_lr_scale(0.5);
  submitted.mutable_training()->set_unfreeze_groups(2);
  ASSERT_OK_AND_ASSIGN(spec, Validate(submitted));
  EXPECT_DOUBLE_EQ(spec.training().backbone_lr_scale(), 0.5);
  EXPECT_EQ(spec.training().unfreeze_groups(), 2);

  // Staged unfreezing is FINE_TUNE's alone: AUTO may not choose it.
  submitted.mutable_training()->set_head_only_epochs(1);
  EXPECT_THAT(Validate(submitted), InvalidField("training.head_only_epochs", "FINE_TUNE"));
}

TEST_F(SpecValidationTest, PathsAreNormalizedRelativeToTheDataRoot) {
  JobSpec submitted = MinimalSpec();
  submitted.mutable_backbone()->set_path((data_root_ / "backbones/./resnet.pt").string());
  submitted.mutable_dataset()->set_train_dir("./flowers//train");
  submitted.mutable_dataset()->set_val_dir(data_root_.string() + "/flowers/val");
  submitted.mutable_dataset()->set_val_fraction(0.5);
  ASSERT_OK_AND_ASSIGN(JobSpec spec, Validate(submitted));
  EXPECT_EQ(spec.backbone().path(), "backbones/resnet.pt");
  EXPECT_EQ(spec.dataset().train_dir(), "flowers/train");
  EXPECT_EQ(spec.dataset().val_dir(), "flowers/val");
  // A val_dir replaces the held-out slice, so the fraction is dropped.
  EXPECT_FALSE(spec.dataset().has_val_fraction());
}

TEST_F(SpecValidationTest, MissingBackboneIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.clear_backbone();
  EXPECT_THAT(Validate(spec), InvalidField("backbone", "is missing"));
}

TEST_F(SpecValidationTest, BackboneFileThatDoesNotExistIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_backbone()->set_path("backbones/nope.pt");
  EXPECT_THAT(Validate(spec), InvalidField("backbone.path", "does not exist"));
}

TEST_F(SpecValidationTest, BackboneWithoutManifestIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_backbone()->set_path("backbones/bare.pt");
  EXPECT_THAT(Validate(spec), InvalidField("backbone.path", "has no manifest"));
}

TEST_F(SpecValidationTest, ManifestOfAnotherFormatIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_backbone()->set_path("backbones/wrong.pt");
  EXPECT_THAT(Validate(spec), InvalidField("backbone.path", "tl.backbone.v1"));
}

TEST_F(SpecValidationTest, ManifestThatIsNotJsonIsRefused) {
  WriteFile(data_root_ / "backbones/broken.pt", "torchscript");
  WriteFile(data_root_ / "backbones/broken.json", "{\"format\": ");
  JobSpec spec = MinimalSpec();
  spec.mutable_backbone()->set_path("backbones/broken.pt");
  EXPECT_THAT(Validate(spec), InvalidField("backbone.path", "tl.backbone.v1"));
}

TEST_F(SpecValidationTest, BackbonePathWithDotDotIsRefused) {
  JobSpec spec = MinimalSpec();
  // It would even land inside the root; ".." is refused on its face.
  spec.mutable_backbone()->set_path("flowers/../backbones/resnet.pt");
  EXPECT_THAT(Validate(spec), InvalidField("backbone.path", "\"..\""));
}

TEST_F(SpecValidationTest, AbsoluteBackbonePathOutsideTheRootIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_backbone()->set_path((base_ / "outside/evil.pt").string());
  EXPECT_THAT(Validate(spec), InvalidField("backbone.path", "outside its root"));
}

TEST_F(SpecValidationTest, SymlinkLeadingOutOfTheRootIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_backbone()->set_path("backbones/link.pt");
  EXPECT_THAT(Validate(spec), InvalidField("backbone.path", "leads outside its root"));
}

TEST_F(SpecValidationTest, ClassFolderLinkedOutOfTheRootIsRefused) {
  WriteFile(base_ / "outside/secret/1.png", "");
  WriteFile(data_root_ / "mixed/daisy/1.png", "");
  WriteFile(data_root_ / "mixed/rose/1.png", "");
  fs::create_symlink(data_root_ / "mixed/rose", data_root_ / "mixed/rose-again");
  JobSpec spec = MinimalSpec();
  spec.mutable_dataset()->set_train_dir("mixed");
  EXPECT_THAT(Validate(spec), IsOk()) << "a link that stays inside the root is fine";
  fs::create_symlink(base_ / "outside/secret", data_root_ / "mixed/secret");
  EXPECT_THAT(Validate(spec),
              InvalidField("dataset.train_dir", "class folder secret is a symbolic link"));
}

TEST_F(SpecValidationTest, MissingTrainDirIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_dataset()->clear_train_dir();
  EXPECT_THAT(Validate(spec), InvalidField("dataset.train_dir", "is missing"));
}

TEST_F(SpecValidationTest, TrainDirThatDoesNotExistIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_dataset()->set_train_dir("flowers/test");
  EXPECT_THAT(Validate(spec), InvalidField("dataset.train_dir", "does not exist"));
}

TEST_F(SpecValidationTest, TrainDirWithOneClassIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_dataset()->set_train_dir("single");
  EXPECT_THAT(Validate(spec), InvalidField("dataset.train_dir", "has 1 class folder"));
}

TEST_F(SpecValidationTest, ClassFoldersWithoutImagesDoNotCount) {
  JobSpec spec = MinimalSpec();
  spec.mutable_dataset()->set_train_dir("texts");
  EXPECT_THAT(Validate(spec), InvalidField("dataset.train_dir", "has 0 class folder"));
}

TEST_F(SpecValidationTest, TrainDirOutsideTheRootIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_dataset()->set_train_dir("../outside");
  EXPECT_THAT(Validate(spec), InvalidField("dataset.train_dir", "\"..\""));
}

TEST_F(SpecValidationTest, ValDirThatDoesNotExistIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_dataset()->set_val_dir("flowers/validation");
  EXPECT_THAT(Validate(spec), InvalidField("dataset.val_dir", "does not exist"));
}

TEST_F(SpecValidationTest, TestDirIsCheckedAndNormalized) {
  JobSpec spec = MinimalSpec();
  spec.mutable_dataset()->set_test_dir("flowers/exam");
  EXPECT_THAT(Validate(spec), InvalidField("dataset.test_dir", "does not exist"));
  spec.mutable_dataset()->set_test_dir("../outside");
  EXPECT_THAT(Validate(spec), InvalidField("dataset.test_dir", "\"..\""));
  spec.mutable_dataset()->set_test_dir(data_root_.string() + "/./single");
  ASSERT_OK_AND_ASSIGN(JobSpec validated, Validate(spec));
  EXPECT_EQ(validated.dataset().test_dir(), "single");
}

TEST_F(SpecValidationTest, ValDirWithOneClassIsAccepted) {
  // Validation may cover fewer classes than training; one is enough.
  JobSpec spec = MinimalSpec();
  spec.mutable_dataset()->set_val_dir("single");
  EXPECT_THAT(Validate(spec), IsOk());
}

TEST_F(SpecValidationTest, NonPositiveEpochsAreRefused) {
  for (int epochs : {0, -1}) {
    JobSpec spec = MinimalSpec();
    spec.mutable_training()->set_epochs(epochs);
    EXPECT_THAT(Validate(spec), InvalidField("training.epochs")) << "epochs " << epochs;
  }
}

TEST_F(SpecValidationTest, TooManyEpochsAreRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_training()->set_epochs(1001);
  EXPECT_THAT(Validate(spec), InvalidField("training.epochs", "1001"));
}

TEST_F(SpecValidationTest, ZeroBatchSizeIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_training()->set_batch_size(0);
  EXPECT_THAT(Validate(spec), InvalidField("training.batch_size"));
}

TEST_F(SpecValidationTest, LearningRateThatIsNotPositiveIsRefused) {
  for (double rate : {0.0, -0.1, std::numeric_limits<double>::quiet_NaN()}) {
    JobSpec spec = MinimalSpec();
    spec.mutable_training()->set_learning_rate(rate);
    EXPECT_THAT(Validate(spec), InvalidField("training.learning_rate")) << "rate " << rate;
  }
}

TEST_F(SpecValidationTest, NanMomentumIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_training()->set_momentum(std::nan(""));
  EXPECT_THAT(Validate(spec), InvalidField("training.momentum"));
}

TEST_F(SpecValidationTest, ValFractionAboveTheLimitIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_dataset()->set_val_fraction(0.95);
  EXPECT_THAT(Validate(spec), InvalidField("dataset.val_fraction", "0.95"));
}

TEST_F(SpecValidationTest, UnfreezeGroupsWithFullTrainingIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_training()->set_strategy(TrainingSpec::FULL);
  spec.mutable_training()->set_unfreeze_groups(2);
  EXPECT_THAT(Validate(spec), InvalidField("training.unfreeze_groups", "FINE_TUNE"));
}

TEST_F(SpecValidationTest, ZeroUnfreezeGroupsIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_training()->set_unfreeze_groups(0);
  EXPECT_THAT(Validate(spec), InvalidField("training.unfreeze_groups", "is 0"));
}

// ---------------------------------------------------------------- recipe

TEST_F(SpecValidationTest, AdamWDefaultsToDecoupledDecay) {
  JobSpec submitted = MinimalSpec();
  submitted.mutable_training()->set_optimizer(TrainingSpec::ADAMW);
  ASSERT_OK_AND_ASSIGN(JobSpec spec, Validate(submitted));
  EXPECT_DOUBLE_EQ(spec.training().learning_rate(), 0.003);  // as ADAM: FINE_TUNE's
  EXPECT_DOUBLE_EQ(spec.training().weight_decay(), 0.01);
  submitted.mutable_training()->set_weight_decay(0);
  ASSERT_OK_AND_ASSIGN(spec, Validate(submitted));
  EXPECT_DOUBLE_EQ(spec.training().weight_decay(), 0.0) << "an explicit 0 stays";
}

TEST_F(SpecValidationTest, NesterovNeedsSgdWithMomentum) {
  JobSpec spec = MinimalSpec();
  spec.mutable_training()->set_nesterov(true);
  EXPECT_THAT(Validate(spec), InvalidField("training.nesterov", "SGD"));
  spec.mutable_training()->set_optimizer(TrainingSpec::SGD);
  EXPECT_THAT(Validate(spec), IsOk());
  spec.mutable_training()->set_momentum(0);
  EXPECT_THAT(Validate(spec), InvalidField("training.nesterov", "training.momentum"));
}

TEST_F(SpecValidationTest, StepScheduleGetsItsDefaults) {
  JobSpec submitted = MinimalSpec();
  submitted.mutable_training()->set_lr_schedule(TrainingSpec::STEP);
  submitted.mutable_training()->set_epochs(14);
  submitted.mutable_training()->set_warmup_epochs(2);
  ASSERT_OK_AND_ASSIGN(JobSpec spec, Validate(submitted));
  EXPECT_EQ(spec.training().step_epochs(), 4);  // a third of the 12 after warmup
  EXPECT_DOUBLE_EQ(spec.training().step_gamma(), 0.1);
  EXPECT_FALSE(spec.training().has_min_learning_rate());
}

TEST_F(SpecValidationTest, CosineScheduleGetsItsDefaults) {
  JobSpec submitted = MinimalSpec();
  submitted.mutable_training()->set_lr_schedule(TrainingSpec::COSINE);
  ASSERT_OK_AND_ASSIGN(JobSpec spec, Validate(submitted));
  ASSERT_TRUE(spec.training().has_min_learning_rate());
  EXPECT_DOUBLE_EQ(spec.training().min_learning_rate(), 0.0);
  EXPECT_FALSE(spec.training().has_step_epochs());
}

TEST_F(SpecValidationTest, ScheduleFieldsOutOfBoundsAreRefused) {
  struct Case {
    std::string field;
    std::string detail;
    std::function<void(TrainingSpec&)> spoil;
  };
  const std::vector<Case> cases = {
      {"training.lr_schedule", "not a known", [](TrainingSpec& t) {
         t.set_lr_schedule(static_cast<TrainingSpec::LrSchedule>(9));
       }},
      {"training.warmup_epochs", "[0, 10]",
       [](TrainingSpec& t) {
         t.set_epochs(10);
         t.set_warmup_epochs(11);
       }},
      // Epochs left to the data bound the warmup by the most epochs a job may have.
      {"training.warmup_epochs", "[0, 1000]", [](TrainingSpec& t) { t.set_warmup_epochs(1001); }},
      {"training.warmup_epochs", "-1", [](TrainingSpec& t) { t.set_warmup_epochs(-1); }},
      {"training.step_epochs", "STEP", [](TrainingSpec& t) { t.set_step_epochs(2); }},
      {"training.step_gamma", "STEP", [](TrainingSpec& t) { t.set_step_gamma(0.5); }},
      {"training.min_learning_rate", "COSINE", [](TrainingSpec& t) { t.set_min_learning_rate(0); }},
      {"training.step_epochs", "is 0", [](TrainingSpec& t) {
         t.set_lr_schedule(TrainingSpec::STEP);
         t.set_step_epochs(0);
       }},
      {"training.step_gamma", "(0, 1]", [](TrainingSpec& t) {
         t.set_lr_schedule(TrainingSpec::STEP);
         t.set_step_gamma(0);
       }},
      {"training.step_gamma", "(0, 1]", [](TrainingSpec& t) {
         t.set_lr_schedule(TrainingSpec::STEP);
         t.set_step_gamma(1.5);
       }},
      {"training.min_learning_rate", "0.01", [](TrainingSpec& t) {
         t.set_lr_schedule(TrainingSpec::COSINE);
         t.set_learning_rate(0.001);
         t.set_min_learning_rate(0.01);
       }},
      {"training.clip_grad_norm", "-1", [](TrainingSpec& t) { t.set_clip_grad_norm(-1); }},
      {"training.clip_grad_norm", "nan", [](TrainingSpec& t) { t.set_clip_grad_norm(std::nan("")); }},
      {"training.label_smoothing", "[0, 1)", [](TrainingSpec& t) { t.set_label_smoothing(1); }},
      {"training.label_smoothing", "[0, 1)", [](TrainingSpec& t) { t.set_label_smoothing(-0.1); }},
  };
  for (const Case& c : cases) {
    JobSpec spec = MinimalSpec();
    c.spoil(*spec.mutable_training());
    EXPECT_THAT(Validate(spec), InvalidField(c.field, c.detail)) << spec.ShortDebugString();
  }
}

TEST_F(SpecValidationTest, FullRecipeIsAcceptedAsGiven) {
  JobSpec submitted = MinimalSpec();
  TrainingSpec& training = *submitted.mutable_training();
  training.set_optimizer(TrainingSpec::SGD);
  training.set_nesterov(true);
  training.set_lr_schedule(TrainingSpec::COSINE);
  training.set_learning_rate(0.1);
  training.set_min_learning_rate(0.001);
  training.set_warmup_epochs(2);
  training.set_clip_grad_norm(5);
  training.set_label_smoothing(0.1);
  (*training.mutable_class_weights())["rose"] = 2.5;
  ASSERT_OK_AND_ASSIGN(JobSpec spec, Validate(submitted));
  EXPECT_TRUE(spec.training().nesterov());
  EXPECT_DOUBLE_EQ(spec.training().min_learning_rate(), 0.001);
  EXPECT_EQ(spec.training().warmup_epochs(), 2);
  EXPECT_DOUBLE_EQ(spec.training().clip_grad_norm(), 5);
  EXPECT_DOUBLE_EQ(spec.training().label_smoothing(), 0.1);
  EXPECT_DOUBLE_EQ(spec.training().class_weights().at("rose"), 2.5);
}

TEST_F(SpecValidationTest, ClassWeightsAreCheckedAgainstTheTrainingFolder) {
  JobSpec spec = MinimalSpec();
  (*spec.mutable_training()->mutable_class_weights())["tulip"] = 2;
  EXPECT_THAT(Validate(spec),
              InvalidField("training.class_weights[\"tulip\"]", "flowers/train"));
}

TEST_F(SpecValidationTest, BadClassWeightsAreRefused) {
  struct Case {
    std::string field;
    std::map<std::string, double> weights;
  };
  const std::vector<Case> cases = {
      {"training.class_weights[\"rose\"]", {{"rose", -1}}},
      {"training.class_weights[\"rose\"]", {{"rose", 1001}}},
      {"training.class_weights[\"../rose\"]", {{"../rose", 1}}},
      {"training.class_weights[\"\"]", {{"", 1}}},
      {"training.class_weights", {{"rose", 0}, {"daisy", 0}}},
  };
  for (const Case& c : cases) {
    JobSpec spec = MinimalSpec();
    for (const auto& [name, weight] : c.weights) {
      (*spec.mutable_training()->mutable_class_weights())[name] = weight;
    }
    EXPECT_THAT(Validate(spec), InvalidField(c.field)) << spec.ShortDebugString();
  }
  JobSpec both = MinimalSpec();
  (*both.mutable_training()->mutable_class_weights())["rose"] = 2;
  both.mutable_training()->set_balanced_class_weights(true);
  EXPECT_THAT(Validate(both), InvalidField("training.balanced_class_weights", "class_weights"));
}

TEST_F(SpecValidationTest, UnknownStrategyNumberIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_training()->set_strategy(static_cast<TrainingSpec::Strategy>(42));
  EXPECT_THAT(Validate(spec), InvalidField("training.strategy"));
}

TEST_F(SpecValidationTest, UnknownDeviceIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_resources()->set_device("tpu");
  EXPECT_THAT(Validate(spec), InvalidField("resources.device", "\"tpu\""));
}

TEST_F(SpecValidationTest, KnownDevicesAreAccepted) {
  for (const char* device : {"cpu", "cuda"}) {
    JobSpec spec = MinimalSpec();
    spec.mutable_resources()->set_device(device);
    EXPECT_THAT(Validate(spec), IsOk()) << device;
  }
}

TEST_F(SpecValidationTest, GpuRequestsOutOfBoundsOrOnCpuAreRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_resources()->set_gpu_count(-1);
  EXPECT_THAT(Validate(spec), InvalidField("resources.gpu_count", "-1"));
  spec.mutable_resources()->set_gpu_count(65);
  EXPECT_THAT(Validate(spec), InvalidField("resources.gpu_count", "65"));
  spec.mutable_resources()->set_gpu_count(2);
  spec.mutable_resources()->set_device("cpu");
  EXPECT_THAT(Validate(spec), InvalidField("resources.gpu_count", "cpu"));
  spec = MinimalSpec();
  spec.mutable_resources()->set_min_gpu_memory_bytes(-5);
  EXPECT_THAT(Validate(spec), InvalidField("resources.min_gpu_memory_bytes"));
  spec.mutable_resources()->set_min_gpu_memory_bytes(1 << 30);
  spec.mutable_resources()->set_device("cpu");
  EXPECT_THAT(Validate(spec), InvalidField("resources.min_gpu_memory_bytes", "cpu"));
  spec.mutable_resources()->set_device("cuda");
  spec.mutable_resources()->set_gpu_count(2);
  EXPECT_THAT(Validate(spec), IsOk());
}

TEST_F(SpecValidationTest, ReplicasOutOfBoundsOrWithWhatCannotBeSplitAreRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_resources()->set_replicas(-1);
  EXPECT_THAT(Validate(spec), InvalidField("resources.replicas", "-1"));
  spec.mutable_resources()->set_replicas(65);
  EXPECT_THAT(Validate(spec), InvalidField("resources.replicas", "65"));
  spec.mutable_resources()->set_replicas(4);
  spec.mutable_training()->set_batch_size(2);
  EXPECT_THAT(Validate(spec), InvalidField("training.batch_size", "fewer than resources.replicas"));
  spec.mutable_training()->set_batch_size(8);
  spec.mutable_training()->set_strategy(tl::v1::TrainingSpec::AUTO);
  EXPECT_THAT(Validate(spec), InvalidField("resources.replicas", "AUTO"));
  spec.mutable_training()->set_strategy(tl::v1::TrainingSpec::FINE_TUNE);
  EXPECT_THAT(Validate(spec), IsOk());
}

TEST_F(SpecValidationTest, PriorityOutOfRangeIsRefused) {
  for (int priority : {1001, -1001}) {
    JobSpec spec = MinimalSpec();
    spec.set_priority(priority);
    EXPECT_THAT(Validate(spec), InvalidField("priority", std::to_string(priority)));
  }
  JobSpec spec = MinimalSpec();
  spec.set_priority(1000);
  EXPECT_THAT(Validate(spec), IsOk());
}

TEST_F(SpecValidationTest, TinyImageSizeIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_preprocessing()->set_image_size(4);
  EXPECT_THAT(Validate(spec), InvalidField("preprocessing.image_size", "is 4"));
}

TEST_F(SpecValidationTest, ResizeSmallerThanTheCropIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_preprocessing()->set_image_size(224);
  spec.mutable_preprocessing()->set_resize_size(200);
  EXPECT_THAT(Validate(spec), InvalidField("preprocessing.resize_size", "is 200"));
}

TEST_F(SpecValidationTest, OverlongNameIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.set_name(std::string(201, 'x'));
  EXPECT_THAT(Validate(spec), InvalidField("name"));
}

TEST_F(SpecValidationTest, BackboneFromUnknownJobIsRefused) {
  JobSpec spec = MinimalSpec();
  spec.mutable_backbone()->set_from_job("feedfacefeedface");
  EXPECT_THAT(Validate(spec), InvalidField("backbone.from_job", "feedfacefeedface"));
}

TEST_F(SpecValidationTest, BackboneFromUnfinishedJobIsRefused) {
  for (Job::State state : {Job::RUNNING, Job::FAILED}) {
    AddJob("src", state, "jobs/src/backbone.pt");
    JobSpec spec = MinimalSpec();
    spec.mutable_backbone()->set_from_job("src");
    // The spec is well formed; the job it names has no backbone (yet).
    EXPECT_THAT(Validate(spec), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         AllOf(HasSubstr("backbone.from_job"),
                                               HasSubstr(Job::State_Name(state)))));
  }
}

TEST_F(SpecValidationTest, BackboneFromSucceededJobWithoutExportIsRefused) {
  AddJob("src", Job::SUCCEEDED, "");
  JobSpec spec = MinimalSpec();
  spec.mutable_backbone()->set_from_job("src");
  EXPECT_THAT(Validate(spec), StatusIs(absl::StatusCode::kFailedPrecondition,
                                       HasSubstr("backbone.from_job")));
}

TEST_F(SpecValidationTest, BackboneFromSucceededJobWhoseFileIsGoneIsRefused) {
  AddJob("src", Job::SUCCEEDED, "jobs/src/deleted.pt");
  JobSpec spec = MinimalSpec();
  spec.mutable_backbone()->set_from_job("src");
  EXPECT_THAT(Validate(spec), InvalidField("backbone.from_job", "is gone"));
}

TEST_F(SpecValidationTest, BackboneFromSucceededJobIsResolvedUnderTheArtifactRoot) {
  AddJob("src", Job::SUCCEEDED, "jobs/src/backbone.pt");
  JobSpec submitted = MinimalSpec();
  submitted.mutable_backbone()->set_from_job("src");
  ASSERT_OK_AND_ASSIGN(JobSpec spec, Validate(submitted));
  EXPECT_EQ(spec.backbone().from_job(), "src");

  // The same relative path under the data root does not count: only the artifact root does.
  fs::rename(artifact_root_ / "jobs", base_ / "moved");
  WriteFile(data_root_ / "jobs/src/backbone.pt", "torchscript");
  WriteFile(data_root_ / "jobs/src/backbone.json", kManifest);
  EXPECT_THAT(Validate(submitted), InvalidField("backbone.from_job", "is gone"));
}

// An evaluation job: a model of a finished job on a labelled folder.
JobSpec EvaluationSpec() {
  JobSpec spec;
  spec.mutable_evaluate()->set_model_path("jobs/src/model.pt");
  spec.mutable_dataset()->set_test_dir("flowers/val");
  return spec;
}

TEST_F(SpecValidationTest, EvaluationNeedsNoBackboneAndKeepsItsModelAndFolder) {
  WriteFile(artifact_root_ / "jobs/src/model.pt", "torchscript");
  WriteFile(artifact_root_ / "jobs/src/model.json", "{}");
  JobSpec submitted = EvaluationSpec();
  submitted.mutable_dataset()->set_test_dir("./flowers//val");
  ASSERT_OK_AND_ASSIGN(JobSpec spec, Validate(submitted));
  EXPECT_EQ(spec.evaluate().model_path(), "jobs/src/model.pt");
  EXPECT_EQ(spec.dataset().test_dir(), "flowers/val");
  EXPECT_FALSE(spec.has_backbone());
  // Without a test_dir the training folder is evaluated.
  submitted.mutable_dataset()->clear_test_dir();
  submitted.mutable_dataset()->set_train_dir("single");
  EXPECT_THAT(Validate(submitted), IsOk());
}

TEST_F(SpecValidationTest, EvaluationFromJobTakesThatJobsModel) {
  WriteFile(artifact_root_ / "jobs/src/model.pt", "torchscript");
  WriteFile(artifact_root_ / "jobs/src/model.json", "{}");
  Job source;
  source.set_id("src");
  source.set_state(Job::SUCCEEDED);
  source.mutable_result()->set_model_path("jobs/src/model.pt");
  jobs_["src"] = source;
  JobSpec submitted = EvaluationSpec();
  submitted.mutable_evaluate()->clear_model_path();
  submitted.mutable_evaluate()->set_from_job("src");
  ASSERT_OK_AND_ASSIGN(JobSpec spec, Validate(submitted));
  EXPECT_EQ(spec.evaluate().model_path(), "jobs/src/model.pt");
  EXPECT_EQ(spec.evaluate().from_job(), "src");

  submitted.mutable_evaluate()->set_from_job("nosuchjob");
  EXPECT_THAT(Validate(submitted), InvalidField("evaluate.from_job", "nosuchjob"));
  jobs_["src"].set_state(Job::RUNNING);
  submitted.mutable_evaluate()->set_from_job("src");
  EXPECT_THAT(Validate(submitted), StatusIs(absl::StatusCode::kFailedPrecondition,
                                            HasSubstr("evaluate.from_job")));
}

TEST_F(SpecValidationTest, EvaluationWithoutModelOrFolderIsRefusedNamingTheField) {
  JobSpec spec = EvaluationSpec();
  // model.pt does not exist yet.
  EXPECT_THAT(Validate(spec), InvalidField("evaluate.model_path", "does not exist"));
  WriteFile(artifact_root_ / "jobs/src/model.pt", "torchscript");
  // Nor does model.json.
  EXPECT_THAT(Validate(spec), InvalidField("evaluate.model_path", "model.json"));
  WriteFile(artifact_root_ / "jobs/src/model.json", "{}");
  spec.mutable_evaluate()->set_model_path("../outside/evil.pt");
  EXPECT_THAT(Validate(spec), InvalidField("evaluate.model_path", "\"..\""));
  spec.mutable_evaluate()->clear_model_path();
  EXPECT_THAT(Validate(spec), InvalidField("evaluate", "names no model"));
  spec = EvaluationSpec();
  spec.mutable_dataset()->clear_test_dir();
  EXPECT_THAT(Validate(spec), InvalidField("dataset.test_dir", "is missing"));
  spec.mutable_dataset()->set_test_dir("texts");
  EXPECT_THAT(Validate(spec), InvalidField("dataset.test_dir", "0 class folder(s)"));
}

TEST(HasImageExtensionTest, KnowsCommonImageTypesInAnyCase) {
  using ::tl::HasImageExtension;
  EXPECT_TRUE(HasImageExtension("a.png"));
  EXPECT_TRUE(HasImageExtension("b.JPEG"));
  EXPECT_TRUE(HasImageExtension("c.Tiff"));
  EXPECT_FALSE(HasImageExtension("notes.txt"));
  EXPECT_FALSE(HasImageExtension("png"));
  EXPECT_FALSE(HasImageExtension(".png.bak"));
}

}  // namespace
}  // namespace tl::server
