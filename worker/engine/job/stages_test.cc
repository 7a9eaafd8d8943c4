// Each stage of an image job alone, on the tiny backbone and solid-colour
// class folders; RunImageJob's own tests (evaluation_job_test,
// auto_strategy_test, checkpoint_test and the worker's) run them together.
#include "job/stages.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/errors.h"
#include "common/testing/temp_dir.h"
#include "testing/class_images.h"
#include "testing/tiny_model.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;
using ::tl::testing::TempDir;

const std::vector<std::string> kClasses = {"apple", "banana", "cherry"};

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// Counts what the job's observer hears, and asks for a cancel or a pause
// when told to.
class CountingObserver : public ImageJobObserver {
 public:
  void OnEpoch(const EpochStats& stats) override { epochs.push_back(stats.epoch); }
  void OnDataset(const DatasetInfo&) override { ++datasets; }
  void OnAutoStrategy(const AutoDecision&) override { ++decisions; }
  bool StopRequested() override { return stop; }
  bool PauseRequested() override { return pause; }

  std::vector<int> epochs;
  int datasets = 0;
  int decisions = 0;
  bool stop = false;
  bool pause = false;
};

// The message of the kInvalidArgument error `prepare` must end with.
std::string InvalidArgumentOf(const ImageJobConfig& config) {
  try {
    PrepareJob(config);
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument) << error.what();
    return error.what();
  }
  ADD_FAILURE() << "PrepareJob accepted the job";
  return "";
}

class StagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = testing::TinyJobConfig(temp_.path());
    testing::WriteClassFolder(temp_.Sub("train"), kClasses, 6);
    testing::WriteClassFolder(temp_.Sub("val"), kClasses, 2);
    config_.batch_size = 6;
    config_.train.epochs = 2;
  }

  TempDir temp_;
  ImageJobConfig config_;
  CountingObserver observer_;
};

TEST_F(StagesTest, PrepareScansBothSplitsAndChoosesThePreprocessing) {
  // The validation folder holds the classes in another order and one fewer.
  fs::remove_all(temp_.Sub("val"));
  testing::WriteClassFolder(temp_.Sub("val"), {"cherry", "apple"}, 2);
  const PreparedJob job = PrepareJob(config_);
  EXPECT_TRUE(job.backbone.ok());
  EXPECT_EQ(job.class_names, kClasses);
  EXPECT_EQ(job.train.size(), 18u);
  ASSERT_EQ(job.val.size(), 4u);
  for (const ImageSample& sample : job.val) {
    const std::string folder = fs::path(sample.path).parent_path().filename().string();
    EXPECT_EQ(kClasses[sample.label], folder) << sample.path;
  }
  EXPECT_EQ(job.preprocessing.crop_size, job.manifest.input_size);
  EXPECT_EQ(job.preprocessing.resize_size, DefaultResizeSize(job.manifest.input_size));
  EXPECT_EQ(job.preprocessing.mean, job.manifest.mean);
}

// A tiny set left to the data holds nothing out and trains small batches
// for the rule's step budget; a set spec field is kept.
TEST_F(StagesTest, FieldsLeftToTheDataAreSizedByIt) {
  config_.val_dir.clear();
  config_.sizing = {true, true, true, false};
  config_.batch_size = 0;
  config_.train.epochs = 0;
  const PreparedJob tiny = PrepareJob(config_);
  EXPECT_EQ(tiny.sizing.val_fraction, 0);
  EXPECT_EQ(tiny.train.size(), 18u);
  EXPECT_TRUE(tiny.val.empty());
  EXPECT_EQ(tiny.sizing.batch_size, SizedBatchSize(18));
  EXPECT_EQ(tiny.sizing.epochs, SizedEpochs(18, tiny.sizing.batch_size));
  const ImageJobConfig sized = WithDataSizing(config_, tiny);
  EXPECT_EQ(sized.batch_size, tiny.sizing.batch_size);
  EXPECT_EQ(sized.train.epochs, tiny.sizing.epochs);

  // Enough images per class for a slice; the spec's batch stays.
  const DataSizingRule rule;
  const int per_class = static_cast<int>(rule.min_images_per_class_for_val);
  fs::remove_all(temp_.Sub("train"));
  testing::WriteClassFolder(temp_.Sub("train"), kClasses, per_class);
  config_.sizing.batch_size = false;
  config_.batch_size = 5;
  const PreparedJob larger = PrepareJob(config_);
  EXPECT_EQ(larger.sizing.val_fraction, rule.val_fraction);
  EXPECT_FALSE(larger.val.empty());
  EXPECT_EQ(larger.train.size() + larger.val.size(), 3u * per_class);
  EXPECT_EQ(larger.sizing.batch_size, 5);
  EXPECT_EQ(larger.sizing.epochs, SizedEpochs(static_cast<int64_t>(larger.train.size()), 5));

  // A warmup longer than the rule's epochs gets an epoch after it.
  config_.train.warmup_epochs = 400;
  EXPECT_EQ(PrepareJob(config_).sizing.epochs, 401);
}

TEST_F(StagesTest, PrepareHoldsOutAShareWithoutAValidationSet) {
  config_.val_dir.clear();
  config_.val_fraction = 0.5;
  const PreparedJob job = PrepareJob(config_);
  EXPECT_EQ(job.train.size(), 9u);
  EXPECT_EQ(job.val.size(), 9u);
}

TEST_F(StagesTest, PrepareNamesWhatCannotWork) {
  ImageJobConfig config = config_;
  config.batch_size = 0;
  EXPECT_NE(InvalidArgumentOf(config).find("training.batch_size"), std::string::npos);

  config = config_;
  fs::remove(ManifestPathFor(config.backbone_path));
  EXPECT_NE(InvalidArgumentOf(config).find("manifest"), std::string::npos);

  config = testing::TinyJobConfig(temp_.Sub("other"));
  config.train_dir = temp_.Sub("train");
  config.val_dir = temp_.Sub("other/val");
  testing::WriteClassFolder(config.val_dir, {"apple", "durian"}, 1);
  EXPECT_NE(InvalidArgumentOf(config).find("class \"durian\""), std::string::npos);

  config = testing::TinyJobConfig(temp_.Sub("third"));
  config.train_dir = temp_.Sub("train");
  config.val_dir.clear();
  config.val_fraction = 0;
  config.early_stopping.enabled = true;
  EXPECT_NE(InvalidArgumentOf(config).find("early_stopping needs validation images"),
            std::string::npos);

  config = testing::TinyJobConfig(temp_.Sub("fourth"));
  config.train_dir = temp_.Sub("train");
  config.val_dir = temp_.Sub("val");
  config.image_size = 16;
  config.resize_size = 12;
  EXPECT_NE(InvalidArgumentOf(config).find("preprocessing.resize_size"), std::string::npos);
}

TEST_F(StagesTest, AJobThatNamesItsStrategyKeepsIt) {
  const PreparedJob job = PrepareJob(config_);
  OrStopped<ChosenStrategy> chosen = ChooseStrategy(config_, job, observer_);
  ASSERT_FALSE(chosen.stopped());
  EXPECT_FALSE(chosen->decision.has_value());
  EXPECT_EQ(chosen->config.train.strategy, config_.train.strategy);
  EXPECT_EQ(observer_.decisions, 0);
}

TEST_F(StagesTest, AnAutoJobTakesAnEarlierAttemptsDecision) {
  config_.auto_strategy.enabled = true;
  AutoDecision earlier;
  earlier.strategy = Strategy::kFeatureExtraction;
  earlier.reason = "decided before";
  fs::create_directories(config_.output_dir);
  std::ofstream(fs::path(config_.output_dir) / "auto.json") << AutoDecisionToJson(earlier);
  const PreparedJob job = PrepareJob(config_);
  OrStopped<ChosenStrategy> chosen = ChooseStrategy(config_, job, observer_);
  ASSERT_FALSE(chosen.stopped());
  ASSERT_TRUE(chosen->decision.has_value());
  EXPECT_TRUE(chosen->decision->reused);
  EXPECT_EQ(chosen->config.train.strategy, Strategy::kFeatureExtraction);
  EXPECT_FALSE(chosen->config.auto_strategy.enabled);
  EXPECT_EQ(observer_.decisions, 1);
}

TEST_F(StagesTest, ACancelEndsTheProbe) {
  config_.auto_strategy.enabled = true;
  observer_.stop = true;
  const PreparedJob job = PrepareJob(config_);
  OrStopped<ChosenStrategy> chosen = ChooseStrategy(config_, job, observer_);
  ASSERT_TRUE(chosen.stopped());
  EXPECT_EQ(chosen.stop().kind, RunOutcome::Kind::kCancelled);
  EXPECT_EQ(observer_.decisions, 0);
  EXPECT_FALSE(fs::exists(fs::path(config_.output_dir) / "auto.json"));
}

TEST_F(StagesTest, LoadDataChecksTheDatasetAndWritesItsReport) {
  const PreparedJob job = PrepareJob(config_);
  OrStopped<JobData> data = LoadData(config_, job, observer_);
  ASSERT_FALSE(data.stopped());
  EXPECT_EQ(data->train->size(), 18);
  EXPECT_EQ(data->val->size(), 6);
  EXPECT_EQ(data->dataset.check.train_per_class, (std::vector<int64_t>{6, 6, 6}));
  EXPECT_EQ(data->dataset.check.val_per_class, (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(observer_.datasets, 1);
  const nlohmann::json report = ReadJson(data->dataset_report_path);
  EXPECT_EQ(report["classes"][0]["name"], "apple");
  EXPECT_EQ(report["classes"][0]["train_images"], 6);
  EXPECT_EQ(report["unreadable_images"], 0);
}

TEST_F(StagesTest, ACancelWhileDecodingEndsLoadData) {
  observer_.stop = true;
  const PreparedJob job = PrepareJob(config_);
  OrStopped<JobData> data = LoadData(config_, job, observer_);
  ASSERT_TRUE(data.stopped());
  EXPECT_EQ(data.stop().kind, RunOutcome::Kind::kCancelled);
  EXPECT_EQ(data.stop().reason, "stopped on request while decoding the dataset");
  EXPECT_EQ(observer_.datasets, 0);
}

TEST_F(StagesTest, APauseStopsAfterTheEpochsCheckpointAndTheNextRunResumes) {
  const PreparedJob job = PrepareJob(config_);
  {
    JobModel model = BuildModel(config_, job);
    OrStopped<JobData> data = LoadData(config_, job, observer_);
    ASSERT_FALSE(data.stopped());
    observer_.pause = true;
    OrStopped<TrainedModel> trained = TrainModel(config_, job, model, *data, observer_);
    ASSERT_TRUE(trained.stopped());
    EXPECT_EQ(trained.stop().kind, RunOutcome::Kind::kPaused);
    EXPECT_EQ(trained.stop().reason, "paused after epoch 1");
    EXPECT_EQ(observer_.epochs, (std::vector<int>{1}));
    EXPECT_TRUE(fs::exists(fs::path(config_.output_dir) / "checkpoint"));
  }
  CountingObserver resumed;
  JobModel model = BuildModel(config_, job);
  OrStopped<JobData> data = LoadData(config_, job, resumed);
  ASSERT_FALSE(data.stopped());
  OrStopped<TrainedModel> trained = TrainModel(config_, job, model, *data, resumed);
  ASSERT_FALSE(trained.stopped());
  EXPECT_EQ(trained->first_epoch_run, 2);
  ASSERT_EQ(trained->epochs.size(), 2u);
  EXPECT_EQ(resumed.epochs, (std::vector<int>{1, 2}));  // the checkpoint's epoch again, then 2
}

TEST_F(StagesTest, ExportWritesTheModelFilesAndEvaluateTheReports) {
  config_.test_dir = temp_.Sub("test");
  testing::WriteClassFolder(config_.test_dir, kClasses, 2);
  const PreparedJob job = PrepareJob(config_);
  JobModel model = BuildModel(config_, job);
  OrStopped<JobData> data = LoadData(config_, job, observer_);
  ASSERT_FALSE(data.stopped());
  OrStopped<TrainedModel> trained = TrainModel(config_, job, model, *data, observer_);
  ASSERT_FALSE(trained.stopped());

  const ExportedModel exported = ExportModel(config_, job, model, *data, *trained, std::nullopt);
  for (const std::string& path : {exported.model_path, exported.model_info_path,
                                  exported.backbone_path, exported.metrics_path}) {
    EXPECT_TRUE(fs::exists(path)) << path;
  }
  EXPECT_EQ(ReadJson(exported.model_info_path)["class_names"], kClasses);
  EXPECT_EQ(ReadJson(exported.metrics_path)["epochs"].size(), 2u);
  EXPECT_FALSE(ReadJson(exported.metrics_path).contains("auto_strategy"));

  OrStopped<EvaluatedModel> evaluated = EvaluateModel(config_, job, model, *data, observer_);
  ASSERT_FALSE(evaluated.stopped());
  ASSERT_EQ(evaluated->reports.size(), 2u);
  EXPECT_EQ(evaluated->reports[0].split, "validation");
  EXPECT_EQ(evaluated->reports[1].split, "test");
  EXPECT_EQ(evaluated->reports[1].images, 6);
  EXPECT_TRUE(fs::exists(evaluated->files.report_path));
  EXPECT_TRUE(fs::exists(evaluated->files.confusion_matrix_path));

  RemoveTrainingState(config_.output_dir);
  EXPECT_FALSE(fs::exists(fs::path(config_.output_dir) / "checkpoint"));
  EXPECT_TRUE(fs::exists(exported.model_path));
}

TEST_F(StagesTest, ACancelWhileTheTestSetDecodesEndsEvaluateModel) {
  config_.test_dir = temp_.Sub("test");
  testing::WriteClassFolder(config_.test_dir, kClasses, 2);
  const PreparedJob job = PrepareJob(config_);
  JobModel model = BuildModel(config_, job);
  OrStopped<JobData> data = LoadData(config_, job, observer_);
  ASSERT_FALSE(data.stopped());
  observer_.stop = true;
  OrStopped<EvaluatedModel> evaluated = EvaluateModel(config_, job, model, *data, observer_);
  ASSERT_TRUE(evaluated.stopped());
  EXPECT_EQ(evaluated.stop().reason, "stopped on request while decoding dataset.test_dir");
}

TEST_F(StagesTest, RunImageJobReturnsAStopAsItsOutcome) {
  observer_.pause = true;
  const ImageJobResult paused = RunImageJob(config_, observer_);
  EXPECT_EQ(paused.outcome.kind, RunOutcome::Kind::kPaused);
  EXPECT_EQ(paused.outcome.reason, "paused after epoch 1");
  EXPECT_TRUE(paused.model_path.empty());

  CountingObserver resumed;
  const ImageJobResult finished = RunImageJob(config_, resumed);
  EXPECT_TRUE(finished.outcome.finished());
  EXPECT_TRUE(finished.outcome.reason.empty());
  EXPECT_EQ(finished.first_epoch_run, 2);
  EXPECT_TRUE(fs::exists(finished.model_path));
}

}  // namespace
}  // namespace tl::engine
