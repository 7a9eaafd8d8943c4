// Validation of the training recipe's data side: augmentation, CSV
// datasets, early stopping and staged fine-tuning.
#include <filesystem>
#include <functional>
#include <vector>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/spec/spec_validation.h"

namespace tl::server {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::tl::testing::IsOk;
using ::tl::testing::StatusIs;
using ::tl::testing::WriteFile;
using ::tl::v1::Job;
using ::tl::v1::JobSpec;

// A data root with a backbone and a two-class image folder (empty files:
// validation looks at names only).
class RecipeValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_root_ = fs::path(temp_dir_.path()) / "data";
    WriteFile(data_root_ / "backbones/net.pt", "torchscript");
    WriteFile(data_root_ / "backbones/net.json",
              R"({"format": "tl.backbone.v1", "architecture": "net", "feature_dim": 8})");
    for (const char* label : {"cat", "dog"}) {
      for (const char* file : {"1.png", "2.png"}) {
        WriteFile(data_root_ / "pets" / label / file, "");
      }
    }
    context_.data_root = data_root_.string();
    context_.artifact_root = (fs::path(temp_dir_.path()) / "artifacts").string();
    context_.find_job = [](const std::string& id) -> absl::StatusOr<Job> {
      return absl::NotFoundError(id);
    };
  }

  static JobSpec Spec() {
    JobSpec spec;
    spec.mutable_backbone()->set_path("backbones/net.pt");
    spec.mutable_dataset()->set_train_dir("pets");
    return spec;
  }

  absl::StatusOr<JobSpec> Validate(const JobSpec& spec) { return ValidateJobSpec(spec, context_); }

  ::tl::testing::TempDir temp_dir_;
  fs::path data_root_;
  SpecContext context_;
};

auto InvalidField(const std::string& field, const std::string& detail = "") {
  return StatusIs(absl::StatusCode::kInvalidArgument,
                  AllOf(StartsWith(field + " "), HasSubstr(detail)));
}

TEST_F(RecipeValidationTest, AugmentationIsOffByDefault) {
  absl::StatusOr<JobSpec> spec = Validate(Spec());
  ASSERT_THAT(spec.status(), IsOk());
  EXPECT_FALSE(spec->preprocessing().has_random_resized_crop());
  EXPECT_EQ(spec->preprocessing().rotation_degrees(), 0);
  EXPECT_EQ(spec->preprocessing().brightness(), 0);
}

TEST_F(RecipeValidationTest, RandomResizedCropGetsItsDefaults) {
  JobSpec submitted = Spec();
  submitted.mutable_preprocessing()->mutable_random_resized_crop()->set_min_scale(0.5);
  absl::StatusOr<JobSpec> spec = Validate(submitted);
  ASSERT_THAT(spec.status(), IsOk());
  const auto& crop = spec->preprocessing().random_resized_crop();
  EXPECT_EQ(crop.min_scale(), 0.5);
  EXPECT_EQ(crop.max_scale(), 1.0);
  EXPECT_DOUBLE_EQ(crop.min_aspect_ratio(), 0.75);
  EXPECT_DOUBLE_EQ(crop.max_aspect_ratio(), 4.0 / 3.0);
}

TEST_F(RecipeValidationTest, AugmentationOutOfBoundsNamesTheField) {
  JobSpec spec = Spec();
  spec.mutable_preprocessing()->mutable_random_resized_crop()->set_min_scale(0);
  EXPECT_THAT(Validate(spec), InvalidField("preprocessing.random_resized_crop.min_scale", "is 0"));
  spec = Spec();
  spec.mutable_preprocessing()->mutable_random_resized_crop()->set_min_scale(0.6);
  spec.mutable_preprocessing()->mutable_random_resized_crop()->set_max_scale(0.5);
  EXPECT_THAT(Validate(spec), InvalidField("preprocessing.random_resized_crop.max_scale"));
  spec = Spec();
  spec.mutable_preprocessing()->mutable_random_resized_crop()->set_max_aspect_ratio(20);
  EXPECT_THAT(Validate(spec),
              InvalidField("preprocessing.random_resized_crop.max_aspect_ratio", "is 20"));
  spec = Spec();
  spec.mutable_preprocessing()->set_rotation_degrees(-5);
  EXPECT_THAT(Validate(spec), InvalidField("preprocessing.rotation_degrees", "is -5"));
  for (const char* field : {"brightness", "contrast", "saturation"}) {
    spec = Spec();
    const auto* descriptor = spec.preprocessing().GetDescriptor()->FindFieldByName(field);
    spec.mutable_preprocessing()->GetReflection()->SetDouble(spec.mutable_preprocessing(),
                                                             descriptor, 1.5);
    EXPECT_THAT(Validate(spec), InvalidField(std::string("preprocessing.") + field, "is 1.5"));
  }
}

TEST_F(RecipeValidationTest, CsvDatasetsAreAcceptedAndNormalized) {
  WriteFile(data_root_ / "lists/train.csv", "path,label\n../pets/cat/1.png,cat\n../pets/dog/1.png,dog\n");
  WriteFile(data_root_ / "lists/val.csv", "../pets/cat/2.png,cat\n");
  JobSpec submitted = Spec();
  submitted.mutable_dataset()->clear_train_dir();
  submitted.mutable_dataset()->set_train_csv("./lists/train.csv");
  submitted.mutable_dataset()->set_val_csv("lists/val.csv");
  submitted.mutable_training()->mutable_class_weights()->insert({"dog", 2.0});
  absl::StatusOr<JobSpec> spec = Validate(submitted);
  ASSERT_THAT(spec.status(), IsOk());
  EXPECT_EQ(spec->dataset().train_csv(), "lists/train.csv");
  EXPECT_EQ(spec->dataset().val_csv(), "lists/val.csv");
  EXPECT_FALSE(spec->dataset().has_val_fraction());
}

TEST_F(RecipeValidationTest, CsvWithoutValidationSetLeavesTheFractionToTheData) {
  WriteFile(data_root_ / "train.csv", "pets/cat/1.png,cat\npets/dog/1.png,dog\n");
  JobSpec submitted = Spec();
  submitted.mutable_dataset()->clear_train_dir();
  submitted.mutable_dataset()->set_train_csv("train.csv");
  absl::StatusOr<JobSpec> spec = Validate(submitted);
  ASSERT_THAT(spec.status(), IsOk());
  // The worker sizes the slice from the images the CSV lists.
  EXPECT_FALSE(spec->dataset().has_val_fraction());
}

TEST_F(RecipeValidationTest, BadCsvDatasetsNameFieldFileAndLine) {
  WriteFile(data_root_ / "one.csv", "pets/cat/1.png,cat\npets/cat/2.png,cat\n");
  WriteFile(data_root_ / "lists/escape.csv", "../pets/cat/1.png,cat\n../../x.png,dog\n");
  WriteFile(data_root_ / "broken.csv", "pets/cat/1.png,cat\npets/dog/1.png\n");
  WriteFile(fs::path(temp_dir_.path()) / "outside.csv", "a.png,a\nb.png,b\n");
  struct Case {
    std::string field;
    std::function<void(JobSpec&)> edit;
    std::string detail;
  };
  const std::vector<Case> cases = {
      {"dataset.train_csv", [](JobSpec& s) { s.mutable_dataset()->set_train_csv("one.csv"); },
       "and dataset.train_dir cannot both be set"},
      {"dataset.train_csv",
       [](JobSpec& s) {
         s.mutable_dataset()->clear_train_dir();
         s.mutable_dataset()->set_train_csv("one.csv");
       },
       "\"one.csv\" has 1 class(es); at least 2"},
      {"dataset.train_csv",
       [](JobSpec& s) {
         s.mutable_dataset()->clear_train_dir();
         s.mutable_dataset()->set_train_csv("lists/escape.csv");
       },
       "line 2: \"../../x.png\" leads outside the data root"},
      {"dataset.train_csv",
       [](JobSpec& s) {
         s.mutable_dataset()->clear_train_dir();
         s.mutable_dataset()->set_train_csv("broken.csv");
       },
       "\"broken.csv\" line 2: expected 2 fields"},
      {"dataset.train_csv",
       [](JobSpec& s) {
         s.mutable_dataset()->clear_train_dir();
         s.mutable_dataset()->set_train_csv("../outside.csv");
       },
       "\"..\""},
      {"dataset.val_csv", [](JobSpec& s) { s.mutable_dataset()->set_val_csv("missing.csv"); },
       "does not exist"},
      {"dataset.val_csv",
       [](JobSpec& s) {
         s.mutable_dataset()->set_val_csv("one.csv");
         s.mutable_dataset()->set_val_dir("pets");
       },
       "and dataset.val_dir cannot both be set"},
      {"dataset.train_dir", [](JobSpec& s) { s.mutable_dataset()->clear_train_dir(); },
       "is missing (or set dataset.train_csv)"},
  };
  for (const Case& c : cases) {
    JobSpec spec = Spec();
    c.edit(spec);
    EXPECT_THAT(Validate(spec), InvalidField(c.field, c.detail)) << c.detail;
  }
}

TEST_F(RecipeValidationTest, ClassWeightsMustNameCsvLabels) {
  WriteFile(data_root_ / "train.csv", "pets/cat/1.png,cat\npets/dog/1.png,dog\n");
  JobSpec spec = Spec();
  spec.mutable_dataset()->clear_train_dir();
  spec.mutable_dataset()->set_train_csv("train.csv");
  spec.mutable_training()->mutable_class_weights()->insert({"cow", 2.0});
  EXPECT_THAT(Validate(spec), InvalidField("training.class_weights[\"cow\"]", "train.csv"));
}

TEST_F(RecipeValidationTest, EarlyStoppingGetsItsDefaults) {
  using EarlyStopping = tl::v1::TrainingSpec::EarlyStopping;
  JobSpec submitted = Spec();
  submitted.mutable_training()->mutable_early_stopping();
  absl::StatusOr<JobSpec> spec = Validate(submitted);
  ASSERT_THAT(spec.status(), IsOk());
  EXPECT_EQ(spec->training().early_stopping().metric(), EarlyStopping::VAL_LOSS);
  EXPECT_EQ(spec->training().early_stopping().mode(), EarlyStopping::MIN);
  EXPECT_EQ(spec->training().early_stopping().patience(), 5);
  EXPECT_EQ(spec->training().early_stopping().min_delta(), 0);

  submitted.mutable_training()->mutable_early_stopping()->set_metric(EarlyStopping::VAL_MACRO_F1);
  spec = Validate(submitted);
  ASSERT_THAT(spec.status(), IsOk());
  EXPECT_EQ(spec->training().early_stopping().mode(), EarlyStopping::MAX);
  EXPECT_FALSE(Validate(Spec())->training().has_early_stopping());
}

TEST_F(RecipeValidationTest, EarlyStoppingOutOfBoundsOrWithoutValidationIsRefused) {
  JobSpec spec = Spec();
  spec.mutable_training()->mutable_early_stopping()->set_patience(0);
  EXPECT_THAT(Validate(spec), InvalidField("training.early_stopping.patience", "is 0"));
  spec = Spec();
  spec.mutable_training()->mutable_early_stopping()->set_min_delta(-0.5);
  EXPECT_THAT(Validate(spec), InvalidField("training.early_stopping.min_delta", "is -0.5"));
  spec = Spec();
  spec.mutable_training()->mutable_early_stopping()->set_metric(
      static_cast<tl::v1::TrainingSpec::EarlyStopping::Metric>(9));
  EXPECT_THAT(Validate(spec), InvalidField("training.early_stopping.metric"));
  spec = Spec();
  spec.mutable_training()->mutable_early_stopping();
  spec.mutable_dataset()->set_val_fraction(0);
  EXPECT_THAT(Validate(spec), InvalidField("training.early_stopping", "needs validation images"));
  spec.mutable_dataset()->set_val_dir("pets");
  EXPECT_THAT(Validate(spec).status(), IsOk());
}

TEST_F(RecipeValidationTest, StagedFineTuningIsCheckedAgainstStrategyAndEpochs) {
  JobSpec spec = Spec();
  spec.mutable_training()->set_epochs(6);
  spec.mutable_training()->set_head_only_epochs(5);
  spec.mutable_training()->set_unfreeze_every_epochs(2);
  EXPECT_THAT(Validate(spec).status(), IsOk());
  spec.mutable_training()->set_head_only_epochs(6);
  EXPECT_THAT(Validate(spec), InvalidField("training.head_only_epochs", "is 6; it must lie in [0, 5]"));
  spec = Spec();
  spec.mutable_training()->set_unfreeze_every_epochs(1001);
  EXPECT_THAT(Validate(spec), InvalidField("training.unfreeze_every_epochs", "is 1001"));
  spec = Spec();
  spec.mutable_training()->set_strategy(tl::v1::TrainingSpec::FULL);
  spec.mutable_training()->set_head_only_epochs(1);
  EXPECT_THAT(Validate(spec), InvalidField("training.head_only_epochs", "FINE_TUNE strategy only"));
}

}  // namespace
}  // namespace tl::server
