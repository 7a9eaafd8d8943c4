// Tests of tlctl's pieces that need no server: reading job.json and rendering
// jobs, progress and epochs for people.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "client/job_file.h"
#include "client/job_view.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"

namespace tl::client {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::tl::testing::TempDir;
using ::tl::testing::StatusIs;
using ::tl::v1::Job;
using ::tl::v1::TrainingSpec;

// Right edges of the whitespace-separated tokens of a line. Every column of the
// epoch table is right-aligned, so aligned columns share their right edges.
std::vector<size_t> TokenEnds(const std::string& line) {
  std::vector<size_t> ends;
  for (size_t i = 0; i < line.size(); ++i) {
    const bool last_of_token = line[i] != ' ' && (i + 1 == line.size() || line[i + 1] == ' ');
    if (last_of_token) ends.push_back(i + 1);
  }
  return ends;
}

// Left edges of the whitespace-separated tokens: the job list is left-aligned.
std::vector<size_t> TokenStarts(const std::string& line) {
  std::vector<size_t> starts;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] != ' ' && (i == 0 || line[i - 1] == ' ')) starts.push_back(i);
  }
  return starts;
}

// ---------------------------------------------------------------- job files

TEST(ParseJobSpecJsonTest, AcceptsCamelCaseFieldsAndEnumNames) {
  ASSERT_OK_AND_ASSIGN(tl::v1::JobSpec spec, ParseJobSpecJson(R"({
    "name": "flowers",
    "priority": 3,
    "backbone": {"path": "backbones/resnet18.pt"},
    "dataset": {"trainDir": "flowers/train", "valDir": "flowers/val", "valFraction": 0.25},
    "preprocessing": {"imageSize": 224, "resizeSize": 256, "horizontalFlip": false},
    "training": {"strategy": "FEATURE_EXTRACTION", "unfreezeGroups": 2, "epochs": 7,
                 "batchSize": 48, "optimizer": "SGD", "learningRate": 0.05,
                 "backboneLrScale": 0.2, "momentum": 0.8, "weightDecay": 0.0001,
                 "seed": "42", "threads": 3},
    "resources": {"device": "cuda"}
  })",
                                                              "job.json"));
  EXPECT_EQ(spec.name(), "flowers");
  EXPECT_EQ(spec.priority(), 3);
  EXPECT_EQ(spec.backbone().path(), "backbones/resnet18.pt");
  EXPECT_EQ(spec.dataset().train_dir(), "flowers/train");
  EXPECT_EQ(spec.dataset().val_dir(), "flowers/val");
  ASSERT_TRUE(spec.dataset().has_val_fraction());
  EXPECT_DOUBLE_EQ(spec.dataset().val_fraction(), 0.25);
  EXPECT_EQ(spec.preprocessing().image_size(), 224);
  EXPECT_EQ(spec.preprocessing().resize_size(), 256);
  // An explicit false must survive: unset means "default true".
  ASSERT_TRUE(spec.preprocessing().has_horizontal_flip());
  EXPECT_FALSE(spec.preprocessing().horizontal_flip());
  const TrainingSpec& training = spec.training();
  EXPECT_EQ(training.strategy(), TrainingSpec::FEATURE_EXTRACTION);
  EXPECT_EQ(training.unfreeze_groups(), 2);
  EXPECT_EQ(training.epochs(), 7);
  EXPECT_EQ(training.batch_size(), 48);
  EXPECT_EQ(training.optimizer(), TrainingSpec::SGD);
  EXPECT_DOUBLE_EQ(training.learning_rate(), 0.05);
  EXPECT_DOUBLE_EQ(training.backbone_lr_scale(), 0.2);
  EXPECT_DOUBLE_EQ(training.momentum(), 0.8);
  EXPECT_DOUBLE_EQ(training.weight_decay(), 0.0001);
  EXPECT_EQ(training.seed(), 42u);
  EXPECT_EQ(training.threads(), 3);
  EXPECT_EQ(spec.resources().device(), "cuda");
}

TEST(ParseJobSpecJsonTest, AcceptsSnakeCaseFields) {
  ASSERT_OK_AND_ASSIGN(tl::v1::JobSpec spec, ParseJobSpecJson(R"({
    "backbone": {"from_job": "job-17"},
    "dataset": {"train_dir": "pets", "val_fraction": 0.1},
    "preprocessing": {"image_size": 96, "resize_size": 110, "horizontal_flip": true},
    "training": {"strategy": "FULL", "unfreeze_groups": 4, "batch_size": 8,
                 "optimizer": "ADAM", "learning_rate": 0.002, "backbone_lr_scale": 1.5,
                 "weight_decay": 0.01, "seed": 18446744073709551615}
  })",
                                                              "snake.json"));
  EXPECT_EQ(spec.backbone().source_case(), tl::v1::BackboneSpec::kFromJob);
  EXPECT_EQ(spec.backbone().from_job(), "job-17");
  EXPECT_EQ(spec.dataset().train_dir(), "pets");
  EXPECT_DOUBLE_EQ(spec.dataset().val_fraction(), 0.1);
  EXPECT_EQ(spec.preprocessing().image_size(), 96);
  EXPECT_EQ(spec.preprocessing().resize_size(), 110);
  EXPECT_TRUE(spec.preprocessing().horizontal_flip());
  EXPECT_EQ(spec.training().strategy(), TrainingSpec::FULL);
  EXPECT_EQ(spec.training().unfreeze_groups(), 4);
  EXPECT_EQ(spec.training().batch_size(), 8);
  EXPECT_EQ(spec.training().optimizer(), TrainingSpec::ADAM);
  EXPECT_DOUBLE_EQ(spec.training().learning_rate(), 0.002);
  EXPECT_DOUBLE_EQ(spec.training().backbone_lr_scale(), 1.5);
  EXPECT_DOUBLE_EQ(spec.training().weight_decay(), 0.01);
  EXPECT_EQ(spec.training().seed(), 18446744073709551615u);
  // Fields the file leaves out stay unset, so the scheduler can fill defaults.
  EXPECT_FALSE(spec.training().has_epochs());
  EXPECT_FALSE(spec.training().has_momentum());
}

TEST(ParseJobSpecJsonTest, RejectsUnknownFieldsNamingFieldAndOrigin) {
  EXPECT_THAT(ParseJobSpecJson(R"({"training": {"epochs": 3, "epocs": 4}})", "typo.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("typo.json"), HasSubstr("epocs"))));
  EXPECT_THAT(ParseJobSpecJson(R"({"dataset": {"train_dir": "x"}, "gpus": 2})", "top.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("top.json"), HasSubstr("gpus"))));
}

TEST(ParseJobSpecJsonTest, RejectsMalformedJson) {
  for (const char* text : {R"({"name": "x")", R"({"name" "x"})", "", "[1, 2]", "nonsense"}) {
    EXPECT_THAT(ParseJobSpecJson(text, "broken.json"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("broken.json")))
        << "input: " << text;
  }
}

TEST(ParseJobSpecJsonTest, RejectsWrongTypesAndUnknownEnumNames) {
  const std::string bad_inputs[] = {
      R"({"training": {"epochs": "ten"}})",
      R"({"training": {"epochs": 2.5}})",
      R"({"training": {"batchSize": true}})",
      R"({"name": 5})",
      R"({"dataset": "images/"})",
      // protobuf 3.21 takes "yes" and "no" for a bool (SimpleAtob), but not a number.
      R"({"preprocessing": {"horizontalFlip": 1}})",
      R"({"training": {"strategy": "TRANSFER"}})",
      R"({"training": {"optimizer": "RMSPROP"}})",
  };
  for (const std::string& text : bad_inputs) {
    EXPECT_THAT(ParseJobSpecJson(text, "types.json"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("types.json")))
        << "input: " << text;
  }
}

TEST(ReadJobSpecFileTest, MissingFileIsNotFoundNamingThePath) {
  TempDir dir;
  const std::string path = dir.Sub("absent/job.json");
  EXPECT_THAT(ReadJobSpecFile(path), StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));
}

TEST(ReadJobSpecFileTest, ReadsAFileAndNamesItInErrors) {
  TempDir dir;
  const std::string good = dir.Sub("good.json");
  std::ofstream(good) << R"({"name": "from disk", "training": {"epochs": 4}})";
  ASSERT_OK_AND_ASSIGN(tl::v1::JobSpec spec, ReadJobSpecFile(good));
  EXPECT_EQ(spec.name(), "from disk");
  EXPECT_EQ(spec.training().epochs(), 4);

  const std::string bad = dir.Sub("bad.json");
  std::ofstream(bad) << R"({"training": {"learningrate": 0.1}})";
  EXPECT_THAT(ReadJobSpecFile(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                             AllOf(HasSubstr(bad), HasSubstr("learningrate"))));
}

// ---------------------------------------------------------------- sweep files

TEST(ParseSweepSpecJsonTest, ReadsTheSpaceMethodObjectiveAndLimits) {
  ASSERT_OK_AND_ASSIGN(tl::v1::SweepSpec spec, ParseSweepSpecJson(R"({
    "name": "lr",
    "base": {"backbone": {"path": "b.pt"}, "training": {"epochs": 9}},
    "space": [
      {"field": "training.learning_rate", "min": 0.0001, "max": 0.1, "scale": "LOG"},
      {"field": "training.strategy", "values": ["FINE_TUNE", "FULL"]},
      {"field": "preprocessing.horizontal_flip", "values": [true, false]}
    ],
    "method": "ASHA",
    "seed": "7",
    "objective": {"metric": "VAL_MACRO_F1"},
    "maxTrials": 16,
    "max_parallel_trials": 2,
    "asha": {"minEpochs": 1, "reductionFactor": 3}
  })", "sweep.json"));
  EXPECT_EQ(spec.name(), "lr");
  EXPECT_EQ(spec.base().training().epochs(), 9);
  ASSERT_EQ(spec.space_size(), 3);
  EXPECT_EQ(spec.space(0).field(), "training.learning_rate");
  EXPECT_DOUBLE_EQ(spec.space(0).min(), 0.0001);
  EXPECT_DOUBLE_EQ(spec.space(0).max(), 0.1);
  EXPECT_EQ(spec.space(0).scale(), tl::v1::SearchParameter::LOG);
  ASSERT_EQ(spec.space(1).values().values_size(), 2);
  EXPECT_EQ(spec.space(1).values().values(1).string_value(), "FULL");
  EXPECT_FALSE(spec.space(1).has_min());
  EXPECT_TRUE(spec.space(2).values().values(0).bool_value());
  EXPECT_EQ(spec.method(), tl::v1::SweepSpec::ASHA);
  EXPECT_EQ(spec.seed(), 7u);
  EXPECT_EQ(spec.objective().metric(), tl::v1::SweepSpec::Objective::VAL_MACRO_F1);
  EXPECT_EQ(spec.max_trials(), 16);
  EXPECT_EQ(spec.max_parallel_trials(), 2);
  EXPECT_FALSE(spec.has_max_failed_trials());
  EXPECT_EQ(spec.asha().reduction_factor(), 3);
}

TEST(ParseSweepSpecJsonTest, NamesTheFileAndTheFieldThatDoesNotParse) {
  struct Case {
    std::string json;
    std::string field;
  };
  const Case cases[] = {
      {R"({"nmae": "x"})", "nmae"},
      {R"({"base": {"training": {"epoch": 3}}})", "epoch"},
      {R"({"method": "HYPERBAND"})", "HYPERBAND"},
      {R"({"objective": {"metric": "TEST_ACCURACY"}})", "TEST_ACCURACY"},
      {R"({"maxTrials": "many"})", "max_trials"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParseSweepSpecJson(c.json, "bad-sweep.json"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("bad-sweep.json"), HasSubstr("SweepSpec"),
                               HasSubstr(c.field))))
        << "input: " << c.json;
  }
}

// protobuf's message names a field of the space without its place; tlctl adds it.
TEST(ParseSweepSpecJsonTest, NamesTheParameterOfTheSpaceByItsPlace) {
  const std::string second_is_bad[] = {
      R"({"field": "training.learning_rate", "mn": 0.1})",
      R"({"field": "training.learning_rate", "scale": "LOGARITHMIC"})",
      R"({"field": "training.learning_rate", "values": 0.1})",
      R"({"field": "training.learning_rate", "min": "small"})",
      R"({"field": ["training.learning_rate"]})",
  };
  for (const std::string& parameter : second_is_bad) {
    const std::string json = R"({"space": [{"field": "training.epochs", "values": [1, 2]}, )" +
                             parameter + "]}";
    EXPECT_THAT(ParseSweepSpecJson(json, "space.json"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("space.json"), HasSubstr("space[1]"))))
        << "input: " << json;
  }
  EXPECT_THAT(ParseSweepSpecJson(R"({"space": [{"field": "x", "scale": "LOGARITHMIC"}]})",
                                 "space.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("space[0]"), HasSubstr("LOGARITHMIC"))));
}

TEST(ParseSweepSpecJsonTest, RejectsMalformedJson) {
  for (const char* text : {R"({"space": [)", "", "[1, 2]", "nonsense"}) {
    EXPECT_THAT(ParseSweepSpecJson(text, "broken.json"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("broken.json")))
        << "input: " << text;
  }
}

TEST(ReadSweepSpecFileTest, ReadsAFileOrNamesTheOneItCannotRead) {
  TempDir dir;
  const std::string good = dir.Sub("sweep.json");
  std::ofstream(good) << R"({"name": "from disk", "maxTrials": 4})";
  ASSERT_OK_AND_ASSIGN(tl::v1::SweepSpec spec, ReadSweepSpecFile(good));
  EXPECT_EQ(spec.name(), "from disk");
  EXPECT_EQ(spec.max_trials(), 4);
  const std::string missing = dir.Sub("absent/sweep.json");
  EXPECT_THAT(ReadSweepSpecFile(missing),
              StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr("sweep file"), HasSubstr(missing))));
}

// ---------------------------------------------------------------- progress

tl::v1::Progress MakeProgress(int batch, int batches) {
  tl::v1::Progress progress;
  progress.set_epoch(3);
  progress.set_epochs(10);
  progress.set_batch(batch);
  progress.set_batches(batches);
  progress.set_loss(0.53214);
  progress.set_images_per_second(812.4);
  return progress;
}

TEST(ProgressLineTest, EmptyBarAtTheStart) {
  const std::string line = ProgressLine(MakeProgress(0, 30), 20);
  EXPECT_THAT(line, HasSubstr("[" + std::string(20, '.') + "]   0%"));
  EXPECT_THAT(line, HasSubstr("0/30 batches"));
}

TEST(ProgressLineTest, HalfwayFillsHalfTheBar) {
  const std::string line = ProgressLine(MakeProgress(15, 30), 20);
  EXPECT_THAT(line, HasSubstr("[" + std::string(10, '#') + std::string(10, '.') + "]  50%"));
  EXPECT_THAT(line, HasSubstr("15/30 batches"));
}

TEST(ProgressLineTest, FullBarAtTheEnd) {
  const std::string line = ProgressLine(MakeProgress(30, 30), 20);
  EXPECT_THAT(line, HasSubstr("[" + std::string(20, '#') + "] 100%"));
}

TEST(ProgressLineTest, BarFollowsTheFractionAtTheDefaultWidth) {
  // 12 of 30 batches is 40%: 9.6 of 24 cells, drawn as 10.
  const std::string line = ProgressLine(MakeProgress(12, 30));
  EXPECT_THAT(line, HasSubstr("[" + std::string(10, '#') + std::string(14, '.') + "]  40%"));
}

TEST(ProgressLineTest, AutoProbeCountsItsRunsInsteadOfEpochs) {
  tl::v1::Progress probe = MakeProgress(15, 30);
  probe.set_phase(tl::v1::Progress::AUTO_PROBE);
  EXPECT_THAT(ProgressLine(probe, 20), HasSubstr("auto probe run 3/10 ["));
  EXPECT_THAT(ProgressLine(MakeProgress(15, 30), 20), HasSubstr("epoch 3/10 ["));
}

TEST(ProgressLineTest, NoBatchesYetDrawsAnEmptyBar) {
  // An epoch whose batch count is not known yet must not divide by zero.
  const std::string line = ProgressLine(MakeProgress(0, 0), 10);
  EXPECT_THAT(line, HasSubstr("[" + std::string(10, '.') + "]   0%"));
  EXPECT_THAT(line, HasSubstr("0/0 batches"));
}

TEST(ProgressLineTest, ShowsEpochLossAndThroughput) {
  const std::string line = ProgressLine(MakeProgress(12, 30));
  EXPECT_THAT(line, HasSubstr("epoch 3/10"));
  EXPECT_THAT(line, HasSubstr("loss 0.5321"));
  EXPECT_THAT(line, HasSubstr("812 img/s"));
}

// ---------------------------------------------------------------- epoch table

tl::v1::EpochMetrics MakeEpoch() {
  tl::v1::EpochMetrics metrics;
  metrics.set_epoch(12);
  metrics.set_train_loss(0.4321);
  metrics.set_train_accuracy(0.8765);
  metrics.set_val_loss(0.5432);
  metrics.set_val_accuracy(0.8123);
  metrics.set_val_macro_f1(0.7999);
  metrics.set_images_per_second(1534.6);
  metrics.set_seconds(42.31);
  return metrics;
}

TEST(EpochTableTest, RowValuesSitUnderTheirHeaders) {
  const std::string header = EpochTableHeader();
  const std::string row = EpochTableRow(MakeEpoch());
  EXPECT_EQ(row.size(), header.size());
  ASSERT_EQ(TokenEnds(header).size(), 8u) << header;
  EXPECT_EQ(TokenEnds(row), TokenEnds(header)) << header << "\n" << row;
  EXPECT_THAT(
      row, AllOf(HasSubstr("12"), HasSubstr("0.4321"), HasSubstr("0.8765"), HasSubstr("0.5432"),
                 HasSubstr("0.8123"), HasSubstr("0.7999"), HasSubstr("1535"), HasSubstr("42.3")));
}

TEST(EpochTableTest, ARowWithoutValidationShowsDashesInTheSameColumns) {
  const std::string row = EpochTableRow(MakeEpoch(), /*validated=*/false);
  EXPECT_EQ(row.size(), EpochTableHeader().size());
  EXPECT_EQ(TokenEnds(row), TokenEnds(EpochTableHeader()));
  EXPECT_THAT(row, AllOf(HasSubstr("0.4321"), HasSubstr("0.8765"), Not(HasSubstr("0.5432")),
                         Not(HasSubstr("0.8123")), HasSubstr("1535")));
}

TEST(EpochTableTest, ZeroRowKeepsTheSameColumns) {
  const std::string row = EpochTableRow(tl::v1::EpochMetrics());
  EXPECT_EQ(row.size(), EpochTableHeader().size());
  EXPECT_EQ(TokenEnds(row), TokenEnds(EpochTableHeader()));
}

// ---------------------------------------------------------------- job details

Job FinishedJob() {
  Job job;
  job.set_id("job-42");
  job.mutable_spec()->set_name("pets");
  job.mutable_spec()->mutable_training()->set_strategy(TrainingSpec::FINE_TUNE);
  job.mutable_spec()->mutable_training()->set_epochs(5);
  job.set_state(Job::SUCCEEDED);
  job.set_attempt(2);
  job.set_owner("ada");
  job.set_worker_id("worker-a");
  job.set_epoch(5);
  tl::v1::JobResult& result = *job.mutable_result();
  result.mutable_dataset()->add_class_names("cat");
  result.mutable_dataset()->add_class_names("dog");
  result.mutable_dataset()->add_class_names("fox");
  result.mutable_dataset()->set_train_images(120);
  result.mutable_dataset()->set_val_images(30);
  result.mutable_dataset()->set_skipped_images(2);
  result.mutable_final_metrics()->set_val_accuracy(0.9125);
  result.mutable_final_metrics()->set_val_macro_f1(0.9031);
  result.mutable_final_metrics()->set_train_loss(0.2468);
  result.set_model_path("jobs/job-42/model.pt");
  result.set_backbone_path("jobs/job-42/backbone.pt");
  result.set_metrics_path("jobs/job-42/metrics.json");
  return job;
}

TEST(JobDetailsTest, AJobWithoutValidationImagesShowsTrainFiguresNotZeros) {
  Job job = FinishedJob();
  job.mutable_result()->mutable_dataset()->set_val_images(0);
  job.mutable_result()->mutable_final_metrics()->set_val_accuracy(0);
  job.mutable_result()->mutable_final_metrics()->set_train_accuracy(0.9875);
  EXPECT_TRUE(HasValidationImages(FinishedJob()));
  EXPECT_FALSE(HasValidationImages(job));
  const std::string text = JobDetails(job);
  EXPECT_THAT(text, HasSubstr("train accuracy 0.9875, train loss 0.2468 (no validation images)"));
  EXPECT_THAT(text, Not(HasSubstr("val accuracy")));
  EXPECT_THAT(JobListRow(job), Not(HasSubstr("0.0000")));
  EXPECT_THAT(JobListRow(FinishedJob()), HasSubstr("0.9125"));
}

TEST(JobDetailsTest, ShowsEverythingAFinishedJobHas) {
  const std::string text = JobDetails(FinishedJob());
  EXPECT_THAT(text, HasSubstr("job-42"));
  EXPECT_THAT(text, HasSubstr("pets"));
  EXPECT_THAT(text, HasSubstr("SUCCEEDED"));
  EXPECT_THAT(text, HasSubstr("FINE_TUNE, 5 epochs"));
  EXPECT_THAT(text, HasSubstr("worker-a"));
  EXPECT_THAT(text, HasSubstr("3 classes, 120 train / 30 val images, 2 unreadable"));
  EXPECT_THAT(text, HasSubstr("val accuracy 0.9125, val macro F1 0.9031, train loss 0.2468"));
  EXPECT_THAT(text, HasSubstr("jobs/job-42/model.pt"));
  EXPECT_THAT(text, HasSubstr("jobs/job-42/backbone.pt"));
  EXPECT_THAT(text, HasSubstr("jobs/job-42/metrics.json"));
  EXPECT_THAT(text, Not(HasSubstr("error")));
  EXPECT_THAT(text, Not(HasSubstr("cancel requested")));
}

TEST(JobDetailsTest, ShowsWhatAnAutoJobChoseAndWhy) {
  Job job = FinishedJob();
  EXPECT_THAT(JobDetails(job), Not(HasSubstr("auto ")));
  tl::v1::AutoStrategyDecision& decision = *job.mutable_result()->mutable_auto_strategy();
  decision.set_chosen(tl::v1::TrainingSpec::FEATURE_EXTRACTION);
  decision.set_probed(true);
  decision.set_feature_extraction_accuracy(0.875);
  decision.set_fine_tune_accuracy(0.9);
  decision.set_probe_holdout_images(24);
  decision.set_reason("fine-tuning gained 2.5 points");
  const std::string text = JobDetails(job);
  EXPECT_THAT(text, HasSubstr("auto       FEATURE_EXTRACTION: frozen head 0.8750, fine-tune "
                              "0.9000 on 24 held-out images\n"));
  EXPECT_THAT(text, HasSubstr("fine-tuning gained 2.5 points\n"));

  // Today's probes list every candidate they scored.
  decision.set_chosen(tl::v1::TrainingSpec::FULL);
  decision.set_folds(3);
  const std::pair<tl::v1::TrainingSpec::Strategy, double> scored[] = {
      {tl::v1::TrainingSpec::FEATURE_EXTRACTION, 0.65},
      {tl::v1::TrainingSpec::FINE_TUNE, 0.8125},
      {tl::v1::TrainingSpec::FULL, 0.85}};
  for (const auto& [strategy, accuracy] : scored) {
    tl::v1::AutoCandidate& candidate = *decision.add_candidates();
    candidate.set_strategy(strategy);
    candidate.set_unfreeze_groups(strategy == tl::v1::TrainingSpec::FINE_TUNE ? 2 : 0);
    candidate.set_accuracy(accuracy);
  }
  EXPECT_THAT(JobDetails(job),
              HasSubstr("auto       FULL: FEATURE_EXTRACTION 0.6500, FINE_TUNE (2 groups) 0.8125, "
                        "FULL 0.8500 over 3 folds\n"));
  // With the rates the probe tried, and the fine-tune's second rate on the first fold.
  decision.set_chosen(tl::v1::TrainingSpec::FINE_TUNE);
  decision.set_chosen_learning_rate(0.01);
  decision.mutable_candidates(1)->set_learning_rate(0.003);
  tl::v1::AutoCandidate& check = *decision.add_candidates();
  check.set_strategy(tl::v1::TrainingSpec::FINE_TUNE);
  check.set_unfreeze_groups(2);
  check.set_learning_rate(0.01);
  check.set_accuracy(0.875);
  check.set_first_fold_only(true);
  decision.mutable_candidates(0)->set_learning_rate(0.01);
  decision.mutable_candidates(2)->set_learning_rate(0.001);
  EXPECT_THAT(JobDetails(job),
              HasSubstr("auto       FINE_TUNE at 0.01: FEATURE_EXTRACTION at 0.01: 0.6500, "
                        "FINE_TUNE (2 groups) at 0.003: 0.8125, FULL at 0.001: 0.8500, FINE_TUNE "
                        "(2 groups) at 0.01: 0.8750 (first fold) over 3 folds\n"));
  // On one held-out slice every candidate ran on the same images.
  decision.set_folds(1);
  EXPECT_THAT(JobDetails(job), HasSubstr("at 0.01: 0.8750 over 1 held-out slice\n"));
}

TEST(JobDetailsTest, ShowsWhatTheDataSized) {
  Job job = FinishedJob();
  job.mutable_spec()->mutable_training()->clear_epochs();
  EXPECT_THAT(JobDetails(job), HasSubstr("epochs sized by the data"));
  EXPECT_THAT(JobDetails(job), Not(HasSubstr("sized      ")));
  tl::v1::DataSizing& sizing = *job.mutable_result()->mutable_data_sizing();
  sizing.add_sized_fields("training.epochs");
  sizing.add_sized_fields("training.batch_size");
  sizing.set_epochs(80);
  sizing.set_batch_size(12);
  sizing.set_steps(400);
  sizing.set_train_images(50);
  job.mutable_spec()->mutable_training()->set_epochs(80);
  const std::string text = JobDetails(job);
  EXPECT_THAT(text, HasSubstr("FINE_TUNE, 80 epochs"));
  EXPECT_THAT(text, HasSubstr("sized      80 epochs of batch 12, validation slice 0: 400 steps over "
                              "50 images (training.epochs, training.batch_size sized by the data)\n"));
}

TEST(JobDetailsTest, ShowsThePrecisionTheJobRanInAndWhy) {
  Job job = FinishedJob();
  EXPECT_THAT(JobDetails(job), Not(HasSubstr("precision  ")));  // a job of an earlier version
  job.mutable_result()->set_precision(tl::v1::BF16);
  job.mutable_result()->set_precision_reason("AUTO: BF16 autocast, the CPU has AVX512-BF16");
  EXPECT_THAT(JobDetails(job),
              HasSubstr("precision  AUTO: BF16 autocast, the CPU has AVX512-BF16\n"));
}

TEST(JobDetailsTest, ShowsEveryWorkerOfADataParallelJob) {
  Job job = FinishedJob();
  job.add_replica_worker_ids("worker-a");
  job.add_replica_worker_ids("worker-b");
  const std::string text = JobDetails(job);
  EXPECT_THAT(text, HasSubstr("workers    worker-a, worker-b (2 replicas, rank 0 first)\n"));
  EXPECT_THAT(text, Not(HasSubstr("worker     ")));
}

TEST(JobDetailsTest, ShowsTheErrorOfAFailedJobAndOmitsTheMissingResult) {
  Job job;
  job.set_id("job-7");
  job.set_state(Job::FAILED);
  job.set_error("dataset.train_dir pets has 1 class folder(s)");
  const std::string text = JobDetails(job);
  EXPECT_THAT(text, HasSubstr("FAILED"));
  EXPECT_THAT(text, HasSubstr("error      dataset.train_dir pets has 1 class folder(s)\n"));
  EXPECT_THAT(text, Not(HasSubstr("dataset    ")));
  EXPECT_THAT(text, Not(HasSubstr("val accuracy")));
  EXPECT_THAT(text, Not(HasSubstr("model")));
  EXPECT_THAT(text, Not(HasSubstr("backbone")));
  EXPECT_THAT(text, Not(HasSubstr("worker ")));
  EXPECT_THAT(text, Not(HasSubstr("duration")));
}

// Whatever a caller or worker wrote reaches the terminal without control characters: no escape
// sequence runs and no text passes for a line of its own.
TEST(JobDetailsTest, ShowsControlCharactersEscaped) {
  Job job = FinishedJob();
  job.mutable_spec()->set_name("evil\x1b[2J\njob");
  job.set_owner("eve\r");
  job.set_error("bad\x07 thing");
  job.mutable_result()->mutable_dataset()->set_class_names(0, "cat\x1b]0;title\x07");
  tl::v1::LogLine line;
  line.set_worker_id("w1");
  line.set_text("epoch 1\n2026-12-06 00:00:00 w9#1  forged");
  for (const std::string& text : {JobDetails(job), JobListRow(job), LogLineText(line)}) {
    EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
    EXPECT_EQ(text.find('\x07'), std::string::npos) << text;
    EXPECT_EQ(text.find('\r'), std::string::npos) << text;
  }
  EXPECT_THAT(JobDetails(job), HasSubstr("name       evil\\x1b[2J\\x0ajob\n"));
  EXPECT_THAT(LogLineText(line), Not(HasSubstr("\n")));
}

TEST(JobDetailsTest, NoUnreadableCountWhenNothingWasSkipped) {
  Job job = FinishedJob();
  job.mutable_result()->mutable_dataset()->set_skipped_images(0);
  const std::string text = JobDetails(job);
  EXPECT_THAT(text, HasSubstr("3 classes, 120 train / 30 val images\n"));
  EXPECT_THAT(text, Not(HasSubstr("unreadable")));
}

TEST(JobDetailsTest, DatasetWithoutModelShowsNoModelPaths) {
  // A job that failed after the data was scanned has counts but no model.
  Job job = FinishedJob();
  job.set_state(Job::FAILED);
  job.mutable_result()->clear_model_path();
  job.mutable_result()->clear_backbone_path();
  job.mutable_result()->clear_metrics_path();
  job.mutable_result()->clear_final_metrics();
  const std::string text = JobDetails(job);
  EXPECT_THAT(text, HasSubstr("3 classes, 120 train / 30 val images"));
  EXPECT_THAT(text, Not(HasSubstr("model.pt")));
  EXPECT_THAT(text, Not(HasSubstr("metrics.json")));
  EXPECT_THAT(text, Not(HasSubstr("val accuracy")));
}

TEST(JobDetailsTest, ShowsClassCountsAndTheDatasetCheckFindings) {
  Job job = FinishedJob();
  tl::v1::DatasetSummary& dataset = *job.mutable_result()->mutable_dataset();
  for (int64_t count : {60, 40, 20}) dataset.add_train_images_per_class(count);
  for (int64_t count : {15, 10, 5}) dataset.add_val_images_per_class(count);
  dataset.set_imbalance_ratio(3);
  std::string text = JobDetails(job);
  EXPECT_THAT(text,
              HasSubstr("classes    cat 60/15, dog 40/10, fox 20/5 (train/val); imbalance 3.00\n"));
  EXPECT_THAT(text, Not(HasSubstr("check      ")));

  dataset.add_unreadable_examples("pets/cat/broken.png");
  dataset.set_duplicate_images(2);
  dataset.add_duplicate_examples("val/dog/1.png = train/dog/9.png");
  text = JobDetails(job);
  EXPECT_THAT(text, HasSubstr("check      unreadable: pets/cat/broken.png\n"));
  EXPECT_THAT(text, HasSubstr("check      2 validation images duplicate training images "
                              "(val/dog/1.png = train/dog/9.png, ...)\n"));
}

TEST(JobDetailsTest, MarksAPendingCancelUntilTheJobIsCancelled) {
  Job job;
  job.set_id("job-9");
  job.set_state(Job::RUNNING);
  job.set_cancel_requested(true);
  EXPECT_THAT(JobDetails(job), HasSubstr("RUNNING (cancel requested)"));
  job.set_state(Job::CANCELLED);
  EXPECT_THAT(JobDetails(job), Not(HasSubstr("cancel requested")));
}

TEST(JobDetailsTest, DurationFromStartToEnd) {
  Job job = FinishedJob();
  job.mutable_start_time()->set_seconds(1'700'000'000);
  job.mutable_end_time()->set_seconds(1'700'000'090);
  job.mutable_end_time()->set_nanos(500'000'000);
  EXPECT_THAT(JobDetails(job), HasSubstr("duration   90.5 s"));
}

// ---------------------------------------------------------------- job list

TEST(JobListTest, LongNamesAreTruncatedAndColumnsStayAligned) {
  Job job = FinishedJob();
  const std::string long_name = "a-very-long-job-name-that-goes-on-and-on";
  job.mutable_spec()->set_name(long_name);
  job.set_owner("someone-with-a-long-login");
  const std::string row = JobListRow(job);
  EXPECT_THAT(row, HasSubstr(long_name.substr(0, 24)));
  EXPECT_THAT(row, Not(HasSubstr(long_name.substr(0, 25))));
  EXPECT_THAT(row, HasSubstr("someone-wi"));
  EXPECT_THAT(row, Not(HasSubstr("someone-wit")));
  // ID, STATE, NAME, OWNER start where their headers do (the rest is right-aligned
  // or free-form).
  const std::vector<size_t> header_starts = TokenStarts(JobListHeader());
  const std::vector<size_t> row_starts = TokenStarts(row);
  ASSERT_GE(header_starts.size(), 4u);
  ASSERT_GE(row_starts.size(), 4u);
  for (size_t column = 0; column < 4; ++column) {
    EXPECT_EQ(row_starts[column], header_starts[column]) << "column " << column << "\n"
                                                         << JobListHeader() << "\n"
                                                         << row;
  }
}

// STOPPED_EARLY, the longest state name, keeps the columns after it in place.
TEST(JobListTest, TheLongestStateNameFitsItsColumn) {
  Job job = FinishedJob();
  job.set_state(Job::STOPPED_EARLY);
  const std::vector<size_t> header_starts = TokenStarts(JobListHeader());
  const std::vector<size_t> row_starts = TokenStarts(JobListRow(job));
  ASSERT_GE(row_starts.size(), 4u);
  EXPECT_EQ(row_starts[2], header_starts[2]) << JobListHeader() << "\n" << JobListRow(job);
  EXPECT_EQ(row_starts[3], header_starts[3]);
}

TEST(JobStatesTest, ATrialStoppedEarlyHasEnded) {
  for (Job::State state : {Job::SUCCEEDED, Job::FAILED, Job::CANCELLED, Job::STOPPED_EARLY}) {
    EXPECT_TRUE(JobHasEnded(state)) << Job::State_Name(state);
  }
  for (Job::State state : {Job::QUEUED, Job::ASSIGNED, Job::RUNNING, Job::PAUSED}) {
    EXPECT_FALSE(JobHasEnded(state)) << Job::State_Name(state);
  }
}

TEST(JobDetailsTest, NamesTheSweepOfATrial) {
  Job job = FinishedJob();
  EXPECT_THAT(JobDetails(job), Not(HasSubstr("sweep")));
  job.set_sweep_id("sweep-7");
  EXPECT_THAT(JobDetails(job), HasSubstr("\nsweep      sweep-7 "));
}

TEST(JobListTest, ShowsStateEpochAndAccuracyOrDash) {
  Job job = FinishedJob();
  const std::string row = JobListRow(job);
  EXPECT_THAT(row, AllOf(HasSubstr("job-42"), HasSubstr("SUCCEEDED"), HasSubstr("pets"),
                         HasSubstr("ada"), HasSubstr("0.9125")));
  Job queued;
  queued.set_id("job-43");
  queued.set_state(Job::QUEUED);
  const std::string queued_row = JobListRow(queued);
  EXPECT_THAT(queued_row, HasSubstr("QUEUED"));
  // Neither an accuracy nor a creation time yet: dashes, not zeros or 1970.
  EXPECT_THAT(queued_row, Not(HasSubstr("0.0000")));
  EXPECT_THAT(queued_row, Not(HasSubstr("1970")));
}

}  // namespace
}  // namespace tl::client
