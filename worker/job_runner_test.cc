// Tests of the worker's job runner: how an Assignment becomes an engine
// configuration, and what a real (tiny) training job reports on the way.
#include "worker/job_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/epoch_metrics.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "job/data_sizing.h"
#include "model/manifest.h"
#include "testing/tiny_backbone.h"
#include "worker/epoch_metrics_proto.h"

namespace tl::worker {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::tl::testing::IsOk;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;
using ::tl::testing::TempDir;
using ::tl::testing::StatusIs;
using ::tl::v1::Assignment;
using ::tl::v1::JobFinished;
using ::tl::v1::TrainingSpec;
using ::tl::v1::WorkerMessage;

constexpr char kJobId[] = "job-1";
// Not 1, so that a runner reporting a default attempt is caught.
constexpr int kAttempt = 3;
constexpr int kTrainPerClass = 8;
constexpr int kValPerClass = 3;
// Sorted, because the engine labels classes in byte order of their folders.
const std::vector<std::string> kClasses = {"apple", "banana", "cherry"};
// A whole job must end well within this; it is a guard against hangs, not a
// pace the tests rely on.
constexpr auto kJobDeadline = std::chrono::seconds(60);

// A small image whose colour says its class (one channel per class) and whose
// brightness varies with its index, so that images of a class differ.
void WriteClassImage(const std::string& path, int label, int index) {
  cv::Scalar bgr(30, 30, 30);
  bgr[2 - label] = 150 + 10 * index;  // OpenCV orders channels BGR
  const cv::Mat image(10, 10, CV_8UC3, bgr);
  ASSERT_TRUE(cv::imwrite(path, image)) << path;
}

// Bytes that no decoder accepts, under an image file name.
void WriteCorruptImage(const std::string& path, uint32_t seed) {
  std::mt19937 random(seed);
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 300; ++i) out.put(static_cast<char>(random() & 0xff));
}

// dir/<class>/img<i>.png for every class of `classes`.
void WriteImageFolder(const std::string& dir, const std::vector<std::string>& classes,
                      int per_class) {
  for (size_t label = 0; label < classes.size(); ++label) {
    const std::string class_dir = dir + "/" + classes[label];
    fs::create_directories(class_dir);
    for (int i = 0; i < per_class; ++i) {
      WriteClassImage(class_dir + "/img" + std::to_string(i) + ".png", static_cast<int>(label), i);
    }
  }
}

std::string Canonical(const std::string& path) { return fs::weakly_canonical(path).string(); }

// Everything one runner reported, safe to read while it runs.
class Reports {
 public:
  // Called on the runner's thread.
  void Add(const WorkerMessage& message) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      messages_.push_back(message);
    }
    changed_.notify_all();
  }

  // Waits until a message satisfying `done` has arrived; false at the deadline.
  bool WaitFor(const std::function<bool(const WorkerMessage&)>& done,
               std::chrono::steady_clock::duration timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] {
      for (const WorkerMessage& message : messages_) {
        if (done(message)) return true;
      }
      return false;
    });
  }

  std::vector<WorkerMessage> messages() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return messages_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<WorkerMessage> messages_;
};

bool IsFinished(const WorkerMessage& message) { return message.has_finished(); }

int CountOf(const std::vector<WorkerMessage>& messages, WorkerMessage::MessageCase which) {
  int count = 0;
  for (const WorkerMessage& message : messages) count += message.message_case() == which;
  return count;
}

class JobRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_root_ = temp_.Sub("data");
    artifact_root_ = temp_.Sub("artifacts");
    fs::create_directories(data_root_ + "/backbones");
    fs::create_directories(artifact_root_);
    engine::testing::WriteTinyBackbone(data_root_ + "/backbones");
    WriteImageFolder(data_root_ + "/fruit/train", kClasses, kTrainPerClass);
    WriteImageFolder(data_root_ + "/fruit/val", kClasses, kValPerClass);
  }

  WorkerSettings Settings() const {
    WorkerSettings settings;
    settings.data_root = data_root_;
    settings.artifact_root = artifact_root_;
    settings.threads = 2;
    settings.loader_threads = 1;
    settings.listener = listener_;
    return settings;
  }

  // A complete spec (the scheduler fills defaults before assigning, so the
  // worker sees every field set) for a quick two-epoch job.
  Assignment MakeAssignment(TrainingSpec::Strategy strategy) const {
    Assignment assignment;
    assignment.set_job_id(kJobId);
    assignment.set_attempt(kAttempt);
    assignment.set_backbone_path("backbones/tiny.pt");
    assignment.set_output_dir(std::string("jobs/") + kJobId);
    tl::v1::JobSpec& spec = *assignment.mutable_spec();
    spec.set_name("fruit");
    spec.mutable_backbone()->set_path("backbones/tiny.pt");
    spec.mutable_dataset()->set_train_dir("fruit/train");
    spec.mutable_dataset()->set_val_dir("fruit/val");
    spec.mutable_dataset()->set_val_fraction(0.2);
    spec.mutable_preprocessing()->set_image_size(0);
    spec.mutable_preprocessing()->set_resize_size(0);
    spec.mutable_preprocessing()->set_horizontal_flip(true);
    TrainingSpec& training = *spec.mutable_training();
    training.set_strategy(strategy);
    training.set_unfreeze_groups(1);
    training.set_epochs(2);
    training.set_batch_size(4);
    training.set_optimizer(TrainingSpec::ADAM);
    training.set_learning_rate(0.01);
    training.set_backbone_lr_scale(0.1);
    training.set_momentum(0.9);
    training.set_weight_decay(0);
    training.set_seed(1);
    training.set_threads(1);
    return assignment;
  }

  // Runs the assignment to its end. `hook` sees every message on the runner's
  // thread, after it was recorded, and may act on the runner.
  std::vector<WorkerMessage> Run(
      const Assignment& assignment,
      std::function<void(JobRunner&, const WorkerMessage&)> hook = nullptr) {
    Reports reports;
    JobRunner* runner_for_hook = nullptr;
    log_lines_.clear();
    JobRunner runner(assignment, Settings(), [&](const WorkerMessage& message) {
      // Log lines go their own way; the tests below check the reports' order without them.
      if (message.has_log()) {
        EXPECT_EQ(message.log().job_id(), assignment.job_id());
        EXPECT_EQ(message.log().attempt(), assignment.attempt());
        for (const tl::v1::LogLine& line : message.log().lines()) {
          EXPECT_TRUE(line.has_time());
          log_lines_.push_back(line.text());
        }
        return;
      }
      reports.Add(message);
      if (hook) hook(*runner_for_hook, message);
    });
    runner_for_hook = &runner;
    runner.Start();
    const bool ended = reports.WaitFor(IsFinished, kJobDeadline);
    // A runner that never finishes would block the join below forever.
    if (!ended) runner.Cancel();
    runner.Join();
    EXPECT_TRUE(ended) << "job did not finish in time";
    EXPECT_TRUE(runner.finished());
    std::vector<WorkerMessage> messages = reports.messages();
    EXPECT_EQ(CountOf(messages, WorkerMessage::kFinished), 1);
    EXPECT_FALSE(messages.empty());
    if (!messages.empty()) EXPECT_TRUE(messages.back().has_finished()) << "finished is last";
    return messages;
  }

  static JobFinished FinishedOf(const std::vector<WorkerMessage>& messages) {
    return messages.empty() ? JobFinished() : messages.back().finished();
  }

  TempDir temp_;
  std::shared_ptr<JobListener> listener_;  // given to the runners of Run()
  std::vector<std::string> log_lines_;  // the last Run's log lines, in order
  std::string data_root_;
  std::string artifact_root_;
};

// ---------------------------------------------------------------- EngineConfigFor

TEST_F(JobRunnerTest, EngineConfigMapsEverySpecField) {
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  tl::v1::JobSpec& spec = *assignment.mutable_spec();
  spec.mutable_dataset()->set_val_fraction(0.35);
  spec.mutable_preprocessing()->set_image_size(96);
  spec.mutable_preprocessing()->set_resize_size(112);
  spec.mutable_preprocessing()->set_horizontal_flip(false);
  TrainingSpec& training = *spec.mutable_training();
  training.set_unfreeze_groups(3);
  training.set_epochs(17);
  training.set_batch_size(24);
  training.set_optimizer(TrainingSpec::SGD);
  training.set_learning_rate(0.125);
  training.set_backbone_lr_scale(0.25);
  training.set_momentum(0.75);
  training.set_weight_decay(0.003);
  training.set_seed(987654321987ULL);
  training.set_threads(5);
  training.set_nesterov(true);
  training.set_lr_schedule(TrainingSpec::STEP);
  training.set_warmup_epochs(2);
  training.set_step_epochs(4);
  training.set_step_gamma(0.3);
  training.set_clip_grad_norm(2.5);
  training.set_label_smoothing(0.15);
  (*training.mutable_class_weights())["banana"] = 4;
  WorkerSettings settings = Settings();
  settings.device = "cuda:1";
  settings.threads = 7;
  settings.loader_threads = 3;

  ASSERT_OK_AND_ASSIGN(engine::ImageJobConfig config, EngineConfigFor(assignment, settings));
  EXPECT_EQ(config.backbone_path, Canonical(data_root_) + "/backbones/tiny.pt");
  EXPECT_EQ(config.train_dir, Canonical(data_root_) + "/fruit/train");
  EXPECT_EQ(config.val_dir, Canonical(data_root_) + "/fruit/val");
  EXPECT_EQ(config.output_dir, Canonical(artifact_root_) + "/jobs/job-1");
  EXPECT_DOUBLE_EQ(config.val_fraction, 0.35);
  EXPECT_EQ(config.image_size, 96);
  EXPECT_EQ(config.resize_size, 112);
  EXPECT_FALSE(config.horizontal_flip);
  EXPECT_EQ(config.batch_size, 24);
  EXPECT_EQ(config.seed, 987654321987ULL);
  EXPECT_EQ(config.threads, 5) << "the spec's thread count wins over the worker's";
  // On a slot, a job takes at most the slot's share of the cores.
  settings.max_threads = 3;
  ASSERT_OK_AND_ASSIGN(engine::ImageJobConfig slotted, EngineConfigFor(assignment, settings));
  EXPECT_EQ(slotted.threads, 3);
  EXPECT_EQ(config.loader_threads, 3);
  EXPECT_EQ(config.train.strategy, engine::Strategy::kFineTune);
  EXPECT_EQ(config.train.unfreeze_groups, 3);
  EXPECT_EQ(config.train.epochs, 17);
  EXPECT_EQ(config.train.optimizer, engine::OptimizerKind::kSgd);
  EXPECT_DOUBLE_EQ(config.train.learning_rate, 0.125);
  EXPECT_DOUBLE_EQ(config.train.backbone_lr_scale, 0.25);
  EXPECT_DOUBLE_EQ(config.train.momentum, 0.75);
  EXPECT_DOUBLE_EQ(config.train.weight_decay, 0.003);
  EXPECT_TRUE(config.train.nesterov);
  EXPECT_EQ(config.train.lr_schedule, engine::LrSchedule::kStep);
  EXPECT_EQ(config.train.warmup_epochs, 2);
  EXPECT_EQ(config.train.step_epochs, 4);
  EXPECT_DOUBLE_EQ(config.train.step_gamma, 0.3);
  EXPECT_DOUBLE_EQ(config.train.clip_grad_norm, 2.5);
  EXPECT_DOUBLE_EQ(config.train.label_smoothing, 0.15);
  EXPECT_EQ(config.class_weights, (std::map<std::string, double>{{"banana", 4}}));
  EXPECT_FALSE(config.balanced_class_weights);
  EXPECT_EQ(config.train.device, "cuda:1");
  EXPECT_THAT(config.provenance,
              AllOf(HasSubstr("job-1"), HasSubstr("FINE_TUNE"), HasSubstr("fruit/train")));
}

// A stored spec of a STEP, FINE_TUNE job with every training, preprocessing
// and early-stopping field at a value of its own, none of them the engine's
// default nor the server's: what the conversion does not copy shows.
Assignment EveryFieldAssignment(Assignment assignment) {
  tl::v1::JobSpec& spec = *assignment.mutable_spec();
  spec.mutable_dataset()->clear_val_dir();
  spec.mutable_dataset()->set_val_fraction(0.35);
  tl::v1::PreprocessingSpec& preprocessing = *spec.mutable_preprocessing();
  preprocessing.set_image_size(96);
  preprocessing.set_resize_size(112);
  preprocessing.set_horizontal_flip(false);
  tl::v1::PreprocessingSpec::RandomResizedCrop& crop = *preprocessing.mutable_random_resized_crop();
  crop.set_min_scale(0.2);
  crop.set_max_scale(0.9);
  crop.set_min_aspect_ratio(0.6);
  crop.set_max_aspect_ratio(1.7);
  preprocessing.set_rotation_degrees(12);
  preprocessing.set_brightness(0.11);
  preprocessing.set_contrast(0.22);
  preprocessing.set_saturation(0.33);
  TrainingSpec& training = *spec.mutable_training();
  training.set_strategy(TrainingSpec::FINE_TUNE);
  training.set_unfreeze_groups(3);
  training.set_head_only_epochs(6);
  training.set_unfreeze_every_epochs(7);
  training.set_epochs(17);
  training.set_batch_size(24);
  training.set_optimizer(TrainingSpec::SGD);
  training.set_learning_rate(0.125);
  training.set_backbone_lr_scale(0.25);
  training.set_momentum(0.75);
  training.set_nesterov(true);
  training.set_weight_decay(0.003);
  training.set_seed(987654321987ULL);
  training.set_threads(5);
  training.set_lr_schedule(TrainingSpec::STEP);
  training.set_warmup_epochs(2);
  training.set_step_epochs(4);
  training.set_step_gamma(0.3);
  training.set_clip_grad_norm(2.5);
  training.set_label_smoothing(0.15);
  (*training.mutable_class_weights())["banana"] = 4;
  training.set_precision(tl::v1::BF16);
  training.set_channels_last(true);
  TrainingSpec::EarlyStopping& stopping = *training.mutable_early_stopping();
  stopping.set_metric(TrainingSpec::EarlyStopping::VAL_MACRO_F1);
  stopping.set_mode(TrainingSpec::EarlyStopping::MAX);
  stopping.set_patience(9);
  stopping.set_min_delta(0.04);
  return assignment;
}

// The config's `member` holds what the spec gave, a value that differs from
// the engine's default there, so a conversion that left it alone fails.
#define EXPECT_FROM_SPEC(member, given)                                  \
  do {                                                                   \
    EXPECT_EQ(config.member, given) << #member;                          \
    EXPECT_NE(engine_defaults.member, given)                             \
        << #member << ": the test needs a value the engine lacks";       \
  } while (false)

TEST_F(JobRunnerTest, EngineConfigTakesEveryOptionFromTheStoredSpec) {
  const engine::ImageJobConfig engine_defaults;
  ASSERT_OK_AND_ASSIGN(
      engine::ImageJobConfig config,
      EngineConfigFor(EveryFieldAssignment(MakeAssignment(TrainingSpec::FINE_TUNE)), Settings()));
  EXPECT_FROM_SPEC(val_fraction, 0.35);
  EXPECT_FROM_SPEC(image_size, 96);
  EXPECT_FROM_SPEC(resize_size, 112);
  EXPECT_FROM_SPEC(horizontal_flip, false);
  EXPECT_FROM_SPEC(augmentation.random_resized_crop, true);
  EXPECT_FROM_SPEC(augmentation.min_scale, 0.2);
  EXPECT_FROM_SPEC(augmentation.max_scale, 0.9);
  EXPECT_FROM_SPEC(augmentation.min_aspect_ratio, 0.6);
  EXPECT_FROM_SPEC(augmentation.max_aspect_ratio, 1.7);
  EXPECT_FROM_SPEC(augmentation.rotation_degrees, 12.0);
  EXPECT_FROM_SPEC(augmentation.brightness, 0.11);
  EXPECT_FROM_SPEC(augmentation.contrast, 0.22);
  EXPECT_FROM_SPEC(augmentation.saturation, 0.33);
  EXPECT_EQ(config.train.strategy, engine::Strategy::kFineTune);  // FULL: below
  EXPECT_FROM_SPEC(train.unfreeze_groups, 3);
  EXPECT_FROM_SPEC(train.head_only_epochs, 6);
  EXPECT_FROM_SPEC(train.unfreeze_every_epochs, 7);
  EXPECT_FROM_SPEC(train.epochs, 17);
  EXPECT_FROM_SPEC(batch_size, 24);
  EXPECT_FROM_SPEC(train.optimizer, engine::OptimizerKind::kSgd);
  EXPECT_FROM_SPEC(train.learning_rate, 0.125);
  EXPECT_FROM_SPEC(train.backbone_lr_scale, 0.25);
  EXPECT_FROM_SPEC(train.momentum, 0.75);
  EXPECT_FROM_SPEC(train.nesterov, true);
  EXPECT_FROM_SPEC(train.weight_decay, 0.003);
  EXPECT_FROM_SPEC(seed, uint64_t{987654321987ULL});
  EXPECT_FROM_SPEC(threads, 5);
  EXPECT_FROM_SPEC(train.lr_schedule, engine::LrSchedule::kStep);
  EXPECT_FROM_SPEC(train.warmup_epochs, 2);
  EXPECT_FROM_SPEC(train.step_epochs, 4);
  EXPECT_FROM_SPEC(train.step_gamma, 0.3);
  EXPECT_FROM_SPEC(train.clip_grad_norm, 2.5);
  EXPECT_FROM_SPEC(train.label_smoothing, 0.15);
  EXPECT_FROM_SPEC(class_weights, (std::map<std::string, double>{{"banana", 4}}));
  EXPECT_FROM_SPEC(precision, engine::PrecisionRequest::kBFloat16);
  EXPECT_FROM_SPEC(train.channels_last, true);
  EXPECT_FROM_SPEC(early_stopping.enabled, true);
  EXPECT_FROM_SPEC(early_stopping.metric, engine::EarlyStoppingMetric::kValMacroF1);
  EXPECT_FROM_SPEC(early_stopping.maximize, true);
  EXPECT_FROM_SPEC(early_stopping.patience, 9);
  EXPECT_FROM_SPEC(early_stopping.min_delta, 0.04);
  EXPECT_FALSE(config.auto_strategy.enabled);  // AUTO: below
  // Precision AUTO reaches the engine as a request it resolves on its device.
  Assignment automatic = EveryFieldAssignment(MakeAssignment(TrainingSpec::FINE_TUNE));
  automatic.mutable_spec()->mutable_training()->set_precision(tl::v1::AUTO);
  ASSERT_OK_AND_ASSIGN(const engine::ImageJobConfig auto_config,
                       EngineConfigFor(automatic, Settings()));
  EXPECT_EQ(auto_config.precision, engine::PrecisionRequest::kAuto);

  // The other schedule, strategy and class weighting; a mode that is not the
  // metric's usual one, so a conversion that derived it would fail.
  Assignment other = EveryFieldAssignment(MakeAssignment(TrainingSpec::FINE_TUNE));
  TrainingSpec& training = *other.mutable_spec()->mutable_training();
  training.set_strategy(TrainingSpec::FULL);
  training.clear_unfreeze_groups();
  training.set_head_only_epochs(0);
  training.set_unfreeze_every_epochs(0);
  training.set_optimizer(TrainingSpec::ADAMW);
  training.set_nesterov(false);
  training.set_lr_schedule(TrainingSpec::COSINE);
  training.clear_step_epochs();
  training.clear_step_gamma();
  training.set_min_learning_rate(0.0125);
  training.clear_class_weights();
  training.set_balanced_class_weights(true);
  training.mutable_early_stopping()->set_metric(TrainingSpec::EarlyStopping::VAL_ACCURACY);
  training.mutable_early_stopping()->set_mode(TrainingSpec::EarlyStopping::MIN);
  ASSERT_OK_AND_ASSIGN(config, EngineConfigFor(other, Settings()));
  EXPECT_FROM_SPEC(train.strategy, engine::Strategy::kFull);
  EXPECT_FROM_SPEC(train.optimizer, engine::OptimizerKind::kAdamW);
  EXPECT_FROM_SPEC(train.lr_schedule, engine::LrSchedule::kCosine);
  EXPECT_FROM_SPEC(train.min_learning_rate, 0.0125);
  EXPECT_FROM_SPEC(balanced_class_weights, true);
  EXPECT_FROM_SPEC(early_stopping.metric, engine::EarlyStoppingMetric::kValAccuracy);
  EXPECT_FALSE(config.early_stopping.maximize) << "MIN, though accuracy usually rises";

  // AUTO with a scale of its own keeps it for whichever strategy it chooses.
  training.set_strategy(TrainingSpec::AUTO);
  training.set_unfreeze_groups(3);
  training.set_backbone_lr_scale(0.4);
  ASSERT_OK_AND_ASSIGN(config, EngineConfigFor(other, Settings()));
  EXPECT_FROM_SPEC(auto_strategy.enabled, true);
  EXPECT_FROM_SPEC(auto_strategy.backbone_lr_scale, std::optional<double>(0.4));
}

#undef EXPECT_FROM_SPEC

// The fields the server fills in at submit are in every stored spec; one
// without them did not come through its validation, and the worker names
// the field rather than train with a value of its own choosing.
TEST_F(JobRunnerTest, EngineConfigNamesAFieldTheServerFillsThatIsMissing) {
  struct Case {
    std::string field;
    std::function<void(tl::v1::JobSpec&)> spoil;
  };
  auto training = [](tl::v1::JobSpec& spec) { return spec.mutable_training(); };
  auto crop = [](tl::v1::JobSpec& spec) {
    return spec.mutable_preprocessing()->mutable_random_resized_crop();
  };
  auto stopping = [](tl::v1::JobSpec& spec) {
    return spec.mutable_training()->mutable_early_stopping();
  };
  const std::vector<Case> cases = {
      {"preprocessing.horizontal_flip",
       [](auto& s) { s.mutable_preprocessing()->clear_horizontal_flip(); }},
      {"preprocessing.random_resized_crop.min_scale", [=](auto& s) { crop(s)->clear_min_scale(); }},
      {"preprocessing.random_resized_crop.max_scale", [=](auto& s) { crop(s)->clear_max_scale(); }},
      {"preprocessing.random_resized_crop.min_aspect_ratio",
       [=](auto& s) { crop(s)->clear_min_aspect_ratio(); }},
      {"preprocessing.random_resized_crop.max_aspect_ratio",
       [=](auto& s) { crop(s)->clear_max_aspect_ratio(); }},
      {"training.unfreeze_groups", [=](auto& s) { training(s)->clear_unfreeze_groups(); }},
      {"training.unfreeze_groups",
       [=](auto& s) {
         training(s)->set_strategy(TrainingSpec::AUTO);
         training(s)->clear_unfreeze_groups();
       }},
      {"training.learning_rate", [=](auto& s) { training(s)->clear_learning_rate(); }},
      {"training.backbone_lr_scale", [=](auto& s) { training(s)->clear_backbone_lr_scale(); }},
      {"training.momentum", [=](auto& s) { training(s)->clear_momentum(); }},
      {"training.weight_decay", [=](auto& s) { training(s)->clear_weight_decay(); }},
      {"training.seed", [=](auto& s) { training(s)->clear_seed(); }},
      {"training.step_epochs", [=](auto& s) { training(s)->clear_step_epochs(); }},
      {"training.step_gamma", [=](auto& s) { training(s)->clear_step_gamma(); }},
      {"training.min_learning_rate",
       [=](auto& s) { training(s)->set_lr_schedule(TrainingSpec::COSINE); }},
      {"training.early_stopping.mode",
       [=](auto& s) { stopping(s)->set_mode(TrainingSpec::EarlyStopping::MODE_UNSPECIFIED); }},
      {"training.early_stopping.patience", [=](auto& s) { stopping(s)->clear_patience(); }},
  };
  for (const Case& c : cases) {
    Assignment assignment = EveryFieldAssignment(MakeAssignment(TrainingSpec::FINE_TUNE));
    c.spoil(*assignment.mutable_spec());
    EXPECT_THAT(EngineConfigFor(assignment, Settings()),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(c.field)))
        << assignment.spec().ShortDebugString();
  }

  // Fields that do not apply are not filled in, and need not be.
  Assignment assignment = MakeAssignment(TrainingSpec::FULL);
  TrainingSpec& full = *assignment.mutable_spec()->mutable_training();
  full.clear_unfreeze_groups();
  // CONSTANT: no step or cosine fields either.
  EXPECT_THAT(EngineConfigFor(assignment, Settings()), IsOk());
  full.set_strategy(TrainingSpec::AUTO);
  full.set_unfreeze_groups(1);
  full.clear_backbone_lr_scale();
  EXPECT_THAT(EngineConfigFor(assignment, Settings()), IsOk());
  assignment.mutable_spec()->mutable_dataset()->clear_val_fraction();  // beside a val_dir
  EXPECT_THAT(EngineConfigFor(assignment, Settings()), IsOk());
}

// docs/API.md, training.backboneLrScale: "1 for `FULL`, else 0.1; `AUTO`:
// unset, the chosen strategy's". The server's table states the rule for a
// strategy named at submit; the engine's, for the one AUTO chooses.
TEST(AutoStrategyDefaultsTest, ChosenStrategyGetsTheDocumentedBackboneLrScale) {
  EXPECT_EQ(engine::DefaultBackboneLrScale(engine::Strategy::kFull), 1.0);
  EXPECT_EQ(engine::DefaultBackboneLrScale(engine::Strategy::kFineTune), 0.1);
  EXPECT_EQ(engine::DefaultBackboneLrScale(engine::Strategy::kFeatureExtraction), 0.1);
}

TEST_F(JobRunnerTest, EngineConfigMapsStrategiesOptimizersAndThreadFallback) {
  Assignment assignment = MakeAssignment(TrainingSpec::FEATURE_EXTRACTION);
  assignment.mutable_spec()->mutable_training()->set_threads(0);
  assignment.mutable_spec()->mutable_training()->set_optimizer(TrainingSpec::ADAM);
  WorkerSettings settings = Settings();
  settings.threads = 6;
  ASSERT_OK_AND_ASSIGN(engine::ImageJobConfig config, EngineConfigFor(assignment, settings));
  EXPECT_EQ(config.train.strategy, engine::Strategy::kFeatureExtraction);
  EXPECT_EQ(config.train.optimizer, engine::OptimizerKind::kAdam);
  EXPECT_EQ(config.threads, 6) << "no thread count in the spec: the worker's applies";

  assignment.mutable_spec()->mutable_training()->set_strategy(TrainingSpec::FULL);
  ASSERT_OK_AND_ASSIGN(config, EngineConfigFor(assignment, settings));
  EXPECT_EQ(config.train.strategy, engine::Strategy::kFull);

  assignment.mutable_spec()->mutable_training()->set_optimizer(TrainingSpec::ADAMW);
  assignment.mutable_spec()->mutable_training()->set_lr_schedule(TrainingSpec::COSINE);
  assignment.mutable_spec()->mutable_training()->set_min_learning_rate(0.0005);
  assignment.mutable_spec()->mutable_training()->set_balanced_class_weights(true);
  ASSERT_OK_AND_ASSIGN(config, EngineConfigFor(assignment, settings));
  EXPECT_EQ(config.train.optimizer, engine::OptimizerKind::kAdamW);
  EXPECT_EQ(config.train.lr_schedule, engine::LrSchedule::kCosine);
  EXPECT_DOUBLE_EQ(config.train.min_learning_rate, 0.0005);
  EXPECT_TRUE(config.balanced_class_weights);

  // Unspecified means the documented defaults: FINE_TUNE, Adam, constant.
  assignment.mutable_spec()->mutable_training()->set_lr_schedule(
      TrainingSpec::LR_SCHEDULE_UNSPECIFIED);
  assignment.mutable_spec()->mutable_training()->set_strategy(TrainingSpec::STRATEGY_UNSPECIFIED);
  assignment.mutable_spec()->mutable_training()->set_optimizer(TrainingSpec::OPTIMIZER_UNSPECIFIED);
  ASSERT_OK_AND_ASSIGN(config, EngineConfigFor(assignment, settings));
  EXPECT_EQ(config.train.strategy, engine::Strategy::kFineTune);
  EXPECT_EQ(config.train.optimizer, engine::OptimizerKind::kAdam);
  EXPECT_EQ(config.train.lr_schedule, engine::LrSchedule::kConstant);
}

TEST_F(JobRunnerTest, EngineConfigWithoutValDirHoldsOutAFraction) {
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.mutable_spec()->mutable_dataset()->clear_val_dir();
  ASSERT_OK_AND_ASSIGN(engine::ImageJobConfig config, EngineConfigFor(assignment, Settings()));
  EXPECT_THAT(config.val_dir, IsEmpty());
  EXPECT_DOUBLE_EQ(config.val_fraction, 0.2);
}

TEST_F(JobRunnerTest, FeatureCacheLivesUnderTheArtifactRootUnlessTurnedOff) {
  const Assignment assignment = MakeAssignment(TrainingSpec::FEATURE_EXTRACTION);
  ASSERT_OK_AND_ASSIGN(engine::ImageJobConfig config, EngineConfigFor(assignment, Settings()));
  EXPECT_EQ(fs::path(config.feature_cache_dir).lexically_normal(),
            fs::path(artifact_root_ + "/feature_cache").lexically_normal());
  WorkerSettings off = Settings();
  off.feature_cache = false;
  ASSERT_OK_AND_ASSIGN(config, EngineConfigFor(assignment, off));
  EXPECT_THAT(config.feature_cache_dir, IsEmpty());
}

TEST_F(JobRunnerTest, TheResultSaysWhetherTheHeadTrainedOnCachedFeatures) {
  Assignment assignment = MakeAssignment(TrainingSpec::FEATURE_EXTRACTION);
  assignment.mutable_spec()->mutable_preprocessing()->set_horizontal_flip(false);
  const JobFinished first = FinishedOf(Run(assignment));
  ASSERT_EQ(first.outcome(), JobFinished::SUCCEEDED) << first.error();
  EXPECT_TRUE(first.result().features_cached());
  EXPECT_FALSE(first.result().features_from_disk());
  // Another job on the same images (a sweep's next trial) reads them back.
  assignment.set_job_id("job-next");
  assignment.set_output_dir("jobs/job-next");
  assignment.mutable_spec()->mutable_training()->set_learning_rate(0.02);
  const JobFinished second = FinishedOf(Run(assignment));
  ASSERT_EQ(second.outcome(), JobFinished::SUCCEEDED) << second.error();
  EXPECT_TRUE(second.result().features_from_disk());
  // Random flips feed new images every epoch: no cache.
  assignment.set_job_id("job-flipped");
  assignment.set_output_dir("jobs/job-flipped");
  assignment.mutable_spec()->mutable_preprocessing()->set_horizontal_flip(true);
  const JobFinished flipped = FinishedOf(Run(assignment));
  ASSERT_EQ(flipped.outcome(), JobFinished::SUCCEEDED) << flipped.error();
  EXPECT_FALSE(flipped.result().features_cached());
}

TEST_F(JobRunnerTest, BackboneFromArtifactsResolvesUnderTheArtifactRoot) {
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.set_backbone_from_artifacts(true);
  assignment.set_backbone_path("jobs/job-0/backbone.pt");
  ASSERT_OK_AND_ASSIGN(engine::ImageJobConfig config, EngineConfigFor(assignment, Settings()));
  EXPECT_EQ(config.backbone_path, Canonical(artifact_root_) + "/jobs/job-0/backbone.pt");
  // The datasets stay under the data root whatever the backbone's source.
  EXPECT_EQ(config.train_dir, Canonical(data_root_) + "/fruit/train");
}

TEST_F(JobRunnerTest, AbsolutePathsInsideTheRootsAreAccepted) {
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.set_backbone_path(Canonical(data_root_) + "/backbones/tiny.pt");
  assignment.mutable_spec()->mutable_dataset()->set_train_dir(Canonical(data_root_) +
                                                              "/fruit/train");
  ASSERT_OK_AND_ASSIGN(engine::ImageJobConfig config, EngineConfigFor(assignment, Settings()));
  EXPECT_EQ(config.backbone_path, Canonical(data_root_) + "/backbones/tiny.pt");
  EXPECT_EQ(config.train_dir, Canonical(data_root_) + "/fruit/train");
}

TEST_F(JobRunnerTest, EngineConfigRefusesEscapesNamingTheField) {
  const std::string outside = temp_.Sub("outside");
  fs::create_directories(outside);
  struct Case {
    std::string field;
    std::function<void(Assignment&)> spoil;
  };
  const std::vector<Case> cases = {
      {"backbone.path", [](Assignment& a) { a.set_backbone_path("../secret.pt"); }},
      {"backbone.path",
       // A data path must not reach into the artifact root either.
       [this](Assignment& a) { a.set_backbone_path(artifact_root_ + "/x.pt"); }},
      {"backbone.from_job",
       [](Assignment& a) {
         a.set_backbone_from_artifacts(true);
         a.set_backbone_path("../data/backbones/tiny.pt");
       }},
      {"backbone.from_job",
       [this](Assignment& a) {
         // Inside the data root, but that is not where a job's backbone lives.
         a.set_backbone_from_artifacts(true);
         a.set_backbone_path(Canonical(data_root_) + "/backbones/tiny.pt");
       }},
      {"dataset.train_dir",
       [](Assignment& a) { a.mutable_spec()->mutable_dataset()->set_train_dir("/etc"); }},
      {"dataset.train_dir",
       [](Assignment& a) { a.mutable_spec()->mutable_dataset()->set_train_dir("fruit/../.."); }},
      {"dataset.train_dir",
       [](Assignment& a) { a.mutable_spec()->mutable_dataset()->clear_train_dir(); }},
      {"dataset.val_dir",
       [outside](Assignment& a) { a.mutable_spec()->mutable_dataset()->set_val_dir(outside); }},
      {"output_dir", [](Assignment& a) { a.set_output_dir("../data/fruit"); }},
      {"output_dir", [](Assignment& a) { a.set_output_dir("/tmp"); }},
  };
  for (const Case& c : cases) {
    Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
    c.spoil(assignment);
    EXPECT_THAT(EngineConfigFor(assignment, Settings()),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)))
        << assignment.ShortDebugString();
  }
}

TEST_F(JobRunnerTest, EngineConfigRefusesSymbolicLinksLeadingOut) {
  const std::string outside = temp_.Sub("outside");
  WriteImageFolder(outside, kClasses, 1);
  fs::create_directory_symlink(outside, data_root_ + "/linked");
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.mutable_spec()->mutable_dataset()->set_train_dir("linked");
  EXPECT_THAT(EngineConfigFor(assignment, Settings()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dataset.train_dir")));
}

// The engine confines each file it opens to these roots and decodes no
// image above the worker's pixel limit; training and evaluation jobs alike.
TEST_F(JobRunnerTest, EngineConfigCarriesTheRootsAndThePixelLimit) {
  WorkerSettings settings = Settings();
  settings.max_image_pixels = 12345;
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  ASSERT_OK_AND_ASSIGN(engine::ImageJobConfig config, EngineConfigFor(assignment, settings));
  EXPECT_EQ(config.data_root, data_root_);
  EXPECT_EQ(config.artifact_root, artifact_root_);
  EXPECT_FALSE(config.backbone_from_artifacts);
  EXPECT_EQ(config.max_image_pixels, 12345);
  EXPECT_EQ(engine::ImageReadRulesOf(config).root, data_root_);
  EXPECT_EQ(engine::BackboneRootOf(config), data_root_);

  fs::create_directories(artifact_root_ + "/earlier");
  assignment.set_backbone_from_artifacts(true);
  assignment.set_backbone_path("earlier/backbone.pt");
  ASSERT_OK_AND_ASSIGN(config, EngineConfigFor(assignment, settings));
  EXPECT_TRUE(config.backbone_from_artifacts);
  EXPECT_EQ(engine::BackboneRootOf(config), artifact_root_);

  Assignment evaluation = MakeAssignment(TrainingSpec::FINE_TUNE);
  evaluation.mutable_spec()->mutable_evaluate()->set_model_path("earlier/model.pt");
  ASSERT_OK_AND_ASSIGN(config, EngineConfigFor(evaluation, settings));
  EXPECT_EQ(config.artifact_root, artifact_root_);
  EXPECT_EQ(config.max_image_pixels, 12345);
}

// ------------------------------------------------------------- epoch figures

// A field of tl.v1.EpochMetrics, read through reflection, as a double.
double ProtoFigure(const tl::v1::EpochMetrics& metrics, std::string_view name) {
  const google::protobuf::FieldDescriptor* field =
      tl::v1::EpochMetrics::descriptor()->FindFieldByName(std::string(name));
  if (field == nullptr) {
    ADD_FAILURE() << "tl.v1.EpochMetrics has no field " << name;
    return std::nan("");
  }
  const google::protobuf::Reflection* reflection = metrics.GetReflection();
  switch (field->cpp_type()) {
    case google::protobuf::FieldDescriptor::CPPTYPE_INT32:
      return reflection->GetInt32(metrics, field);
    case google::protobuf::FieldDescriptor::CPPTYPE_INT64:
      return static_cast<double>(reflection->GetInt64(metrics, field));
    case google::protobuf::FieldDescriptor::CPPTYPE_DOUBLE:
      return reflection->GetDouble(metrics, field);
    default:
      ADD_FAILURE() << name << " is not a number";
      return std::nan("");
  }
}

TEST(EpochMetricsProtoTest, EveryFigureOnTheWireKeepsItsValueAndName) {
  // Each figure a value of its own, so that one sent as another shows.
  engine::EpochStats stats;
  double next = 1;
#define TL_SET_DISTINCT(member, type, ...)       \
  stats.member = static_cast<type>(next + 0.25); \
  next += 1;
  TL_EPOCH_METRICS(TL_SET_DISTINCT, TL_SET_DISTINCT)
#undef TL_SET_DISTINCT
  const tl::v1::EpochMetrics metrics = EpochMetricsProto(stats, kAttempt);
  EXPECT_EQ(metrics.attempt(), kAttempt);
#define TL_EXPECT_ON_WIRE(member, ...) \
  EXPECT_EQ(ProtoFigure(metrics, #member), static_cast<double>(stats.member)) << #member;
  TL_EPOCH_METRICS(TL_EXPECT_ON_WIRE, TL_EPOCH_METRICS_SKIP)
#undef TL_EXPECT_ON_WIRE
  // Nothing else is set: every figure and the attempt, each once.
  std::vector<const google::protobuf::FieldDescriptor*> set;
  metrics.GetReflection()->ListFields(metrics, &set);
  size_t on_wire = 0;
  for (const EpochMetricInfo& figure : kEpochMetrics) on_wire += figure.on_wire ? 1 : 0;
  EXPECT_EQ(set.size(), on_wire + 1);
}

// ---------------------------------------------------------------- whole jobs

class JobRunnerStrategyTest : public JobRunnerTest,
                              public ::testing::WithParamInterface<TrainingSpec::Strategy> {};

TEST_P(JobRunnerStrategyTest, ReportsStartProgressEpochsAndResultInOrder) {
  const std::vector<WorkerMessage> messages = Run(MakeAssignment(GetParam()));
  ASSERT_GE(messages.size(), 4u);

  // JobStarted comes first and describes the data.
  ASSERT_TRUE(messages.front().has_started()) << messages.front().ShortDebugString();
  const tl::v1::JobStarted& started = messages.front().started();
  EXPECT_EQ(started.job_id(), kJobId);
  EXPECT_EQ(started.attempt(), kAttempt);
  EXPECT_THAT(started.dataset().class_names(), ElementsAre("apple", "banana", "cherry"));
  EXPECT_EQ(started.dataset().train_images(), 3 * kTrainPerClass);
  EXPECT_EQ(started.dataset().val_images(), 3 * kValPerClass);
  EXPECT_EQ(started.dataset().skipped_images(), 0);
  EXPECT_EQ(CountOf(messages, WorkerMessage::kStarted), 1);

  // Between start and finish: progress of epoch 1, epoch 1, progress of
  // epoch 2, epoch 2. Each epoch's last batch is always reported.
  std::vector<int> epochs_reported;
  std::vector<int> progress_per_epoch(3, 0);
  for (size_t i = 1; i + 1 < messages.size(); ++i) {
    const WorkerMessage& message = messages[i];
    if (message.has_progress()) {
      const tl::v1::ProgressReport& report = message.progress();
      EXPECT_EQ(report.job_id(), kJobId);
      EXPECT_EQ(report.attempt(), kAttempt);
      const tl::v1::Progress& progress = report.progress();
      // Progress belongs to the epoch after the last one reported finished.
      EXPECT_EQ(progress.epoch(), static_cast<int>(epochs_reported.size()) + 1);
      EXPECT_EQ(progress.epochs(), 2);
      EXPECT_EQ(progress.batches(), 6);  // 24 images in batches of 4
      EXPECT_GE(progress.batch(), 1);
      EXPECT_LE(progress.batch(), progress.batches());
      EXPECT_GT(progress.loss(), 0);
      EXPECT_GT(progress.images_per_second(), 0);
      if (progress.epoch() >= 1 && progress.epoch() <= 2) ++progress_per_epoch[progress.epoch()];
    } else if (message.has_epoch()) {
      const tl::v1::EpochReport& report = message.epoch();
      EXPECT_EQ(report.job_id(), kJobId);
      EXPECT_EQ(report.metrics().attempt(), kAttempt);
      EXPECT_TRUE(std::isfinite(report.metrics().train_loss()));
      EXPECT_GT(report.metrics().train_loss(), 0);
      EXPECT_GT(report.metrics().val_loss(), 0);
      EXPECT_GT(report.metrics().images_per_second(), 0);
      EXPECT_GT(report.metrics().learning_rate(), 0);
      epochs_reported.push_back(report.metrics().epoch());
    } else {
      ADD_FAILURE() << "unexpected message " << i << ": " << message.ShortDebugString();
    }
  }
  EXPECT_THAT(epochs_reported, ElementsAre(1, 2));
  EXPECT_GE(progress_per_epoch[1], 1);
  EXPECT_GE(progress_per_epoch[2], 1);

  // JobFinished: SUCCEEDED, with artifact paths relative to the artifact root.
  const JobFinished finished = FinishedOf(messages);
  ASSERT_EQ(finished.outcome(), JobFinished::SUCCEEDED) << finished.error();
  EXPECT_EQ(finished.job_id(), kJobId);
  EXPECT_EQ(finished.attempt(), kAttempt);
  EXPECT_THAT(finished.error(), IsEmpty());
  const tl::v1::JobResult& result = finished.result();
  for (const std::string& path : {result.model_path(), result.model_info_path(),
                                  result.backbone_path(), result.metrics_path()}) {
    EXPECT_THAT(path, StartsWith("jobs/job-1/"));
    EXPECT_TRUE(fs::path(path).is_relative()) << path;
    EXPECT_TRUE(fs::is_regular_file(fs::path(artifact_root_) / path)) << path;
  }
  EXPECT_THAT(result.dataset().class_names(), ElementsAre("apple", "banana", "cherry"));
  EXPECT_EQ(result.dataset().train_images(), 3 * kTrainPerClass);
  EXPECT_EQ(result.dataset().val_images(), 3 * kValPerClass);
  EXPECT_EQ(result.final_metrics().epoch(), 2);
  EXPECT_EQ(result.final_metrics().attempt(), kAttempt);
  EXPECT_GT(result.train_seconds(), 0);

  // The exported classifier is TorchScript that names its classes and
  // classifies an input of the backbone's size.
  torch::jit::Module model = torch::jit::load(artifact_root_ + "/" + result.model_path());
  ASSERT_TRUE(model.hasattr("class_names"));
  std::vector<std::string> names;
  for (const c10::IValue& name : model.attr("class_names").toListRef()) {
    names.push_back(name.toStringRef());
  }
  EXPECT_THAT(names, ElementsAre("apple", "banana", "cherry"));
  model.eval();
  const torch::Tensor logits = model
                                   .forward({torch::zeros({2, 3, engine::testing::kTinyInputSize,
                                                           engine::testing::kTinyInputSize})})
                                   .toTensor();
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 3}));

  // The trained backbone comes with its manifest, recording where it came from.
  const std::string backbone = artifact_root_ + "/" + result.backbone_path();
  EXPECT_EQ(fs::path(backbone).filename(), "backbone.pt");
  ASSERT_TRUE(fs::is_regular_file(engine::ManifestPathFor(backbone)));
  EXPECT_THAT(engine::ReadManifest(engine::ManifestPathFor(backbone)).source, HasSubstr("job-1"));
  EXPECT_NO_THROW(torch::jit::load(backbone));

  std::ifstream metrics_file(artifact_root_ + "/" + result.metrics_path());
  const nlohmann::json metrics = nlohmann::json::parse(metrics_file);
  ASSERT_TRUE(metrics.contains("epochs")) << metrics.dump();
  const nlohmann::json& epochs = metrics["epochs"];
  ASSERT_TRUE(epochs.is_array()) << metrics.dump();
  ASSERT_EQ(epochs.size(), 2u) << metrics.dump();
  EXPECT_EQ(epochs[0]["epoch"], 1);
  EXPECT_EQ(epochs[1]["epoch"], 2);
  // The job's metrics.json and its reports carry the same figures.
  for (const EpochMetricInfo& figure : kEpochMetrics) {
    if (!figure.on_wire) continue;
    const std::string name(figure.name);
    ASSERT_TRUE(epochs[1].contains(name) && epochs[1][name].is_number()) << name;
    EXPECT_DOUBLE_EQ(epochs[1][name].get<double>(), ProtoFigure(result.final_metrics(), name))
        << name;
  }
  // A succeeded job leaves no checkpoint for a retry to resume from.
  EXPECT_FALSE(fs::exists(artifact_root_ + "/jobs/job-1/checkpoint"));
}

TEST_F(JobRunnerTest, EvaluationReportsTravelInTheResult) {
  Assignment assignment = MakeAssignment(TrainingSpec::FULL);
  WriteImageFolder(data_root_ + "/fruit/test", kClasses, 2);
  assignment.mutable_spec()->mutable_dataset()->set_test_dir("fruit/test");
  ASSERT_OK_AND_ASSIGN(engine::ImageJobConfig config, EngineConfigFor(assignment, Settings()));
  EXPECT_EQ(config.test_dir, Canonical(data_root_ + "/fruit/test"));

  const JobFinished finished = FinishedOf(Run(assignment));
  ASSERT_EQ(finished.outcome(), JobFinished::SUCCEEDED) << finished.error();
  const tl::v1::JobResult& result = finished.result();
  EXPECT_EQ(result.report_path(), "jobs/job-1/report.json");
  EXPECT_EQ(result.confusion_matrix_path(), "jobs/job-1/confusion_matrix.png");
  EXPECT_TRUE(fs::is_regular_file(artifact_root_ + "/" + result.report_path()));
  EXPECT_TRUE(fs::is_regular_file(artifact_root_ + "/" + result.confusion_matrix_path()));
  ASSERT_TRUE(result.has_val_report());
  ASSERT_TRUE(result.has_test_report());
  EXPECT_EQ(result.val_report().images(), 3 * kValPerClass);
  const tl::v1::EvaluationReport& test = result.test_report();
  EXPECT_EQ(test.images(), 3 * 2);
  EXPECT_EQ(test.top_k(), 3);
  ASSERT_EQ(test.classes_size(), 3);
  ASSERT_EQ(test.confusion_size(), 9);
  int64_t counted = 0;
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(test.classes(c).class_name(), kClasses[c]);
    EXPECT_EQ(test.classes(c).support(), 2);
    for (int p = 0; p < 3; ++p) counted += test.confusion(c * 3 + p);
  }
  EXPECT_EQ(counted, test.images());
  // The last epoch's validation is the final validation report.
  EXPECT_DOUBLE_EQ(result.final_metrics().val_accuracy(), result.val_report().accuracy());
  EXPECT_DOUBLE_EQ(result.final_metrics().val_top_k_accuracy(),
                   result.val_report().top_k_accuracy());
  EXPECT_DOUBLE_EQ(result.final_metrics().val_weighted_f1(), result.val_report().weighted_f1());
}

TEST_F(JobRunnerTest, EvaluationJobReportsTheExportedModelOnAFolder) {
  const JobFinished trained = FinishedOf(Run(MakeAssignment(TrainingSpec::FULL)));
  ASSERT_EQ(trained.outcome(), JobFinished::SUCCEEDED) << trained.error();

  Assignment assignment;
  assignment.set_job_id("job-2");
  assignment.set_attempt(1);
  assignment.set_output_dir("jobs/job-2");
  tl::v1::JobSpec& spec = *assignment.mutable_spec();
  spec.mutable_evaluate()->set_model_path(trained.result().model_path());
  spec.mutable_dataset()->set_test_dir("fruit/val");
  spec.mutable_training()->set_batch_size(4);
  spec.mutable_training()->set_threads(1);
  const JobFinished finished = FinishedOf(Run(assignment));
  ASSERT_EQ(finished.outcome(), JobFinished::SUCCEEDED) << finished.error();
  const tl::v1::JobResult& result = finished.result();
  EXPECT_THAT(result.model_path(), IsEmpty());
  EXPECT_FALSE(result.has_final_metrics());
  EXPECT_FALSE(result.has_val_report());
  EXPECT_EQ(result.report_path(), "jobs/job-2/report.json");
  EXPECT_TRUE(fs::is_regular_file(artifact_root_ + "/" + result.confusion_matrix_path()));
  ASSERT_TRUE(result.has_test_report());
  // The training job validated this model on these very images.
  EXPECT_EQ(result.test_report().images(), trained.result().val_report().images());
  EXPECT_DOUBLE_EQ(result.test_report().accuracy(), trained.result().val_report().accuracy());
  EXPECT_THAT(result.dataset().class_names(), ElementsAre("apple", "banana", "cherry"));

  spec.mutable_evaluate()->set_model_path("../elsewhere/model.pt");
  EXPECT_THAT(EngineConfigFor(assignment, Settings()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("evaluate.model_path")));
}

INSTANTIATE_TEST_SUITE_P(Strategies, JobRunnerStrategyTest,
                         ::testing::Values(TrainingSpec::FEATURE_EXTRACTION,
                                           TrainingSpec::FINE_TUNE),
                         [](const ::testing::TestParamInfo<TrainingSpec::Strategy>& info) {
                           return TrainingSpec::Strategy_Name(info.param);
                         });

// Records what the worker's /metrics would see.
class RecordingListener : public JobListener {
 public:
  void OnBatch(const std::string& job_id, const engine::BatchProgress& progress) override {
    std::lock_guard<std::mutex> lock(mutex);
    batches.emplace_back(job_id, progress);
  }
  void OnJobEnded(const std::string& job_id) override {
    std::lock_guard<std::mutex> lock(mutex);
    ended.push_back(job_id);
  }
  std::mutex mutex;
  std::vector<std::pair<std::string, engine::BatchProgress>> batches;
  std::vector<std::string> ended;
};

TEST_F(JobRunnerTest, ListenerSeesEveryBatchThenTheEnd) {
  auto listener = std::make_shared<RecordingListener>();
  listener_ = listener;
  const std::vector<WorkerMessage> messages = Run(MakeAssignment(TrainingSpec::FULL));
  ASSERT_EQ(FinishedOf(messages).outcome(), JobFinished::SUCCEEDED) << FinishedOf(messages).error();
  std::lock_guard<std::mutex> lock(listener->mutex);
  ASSERT_FALSE(listener->batches.empty());
  // Progress reports are thinned out to a few a second; the listener sees every batch.
  const int64_t batches_per_epoch = listener->batches.front().second.batches;
  EXPECT_EQ(static_cast<int64_t>(listener->batches.size()), 2 * batches_per_epoch);
  for (const auto& [job_id, progress] : listener->batches) {
    EXPECT_EQ(job_id, kJobId);
    EXPECT_GE(progress.data_wait_seconds, 0);
  }
  EXPECT_EQ(listener->ended, std::vector<std::string>{kJobId});
}

TEST_F(JobRunnerTest, CancelOnTheFirstProgressEndsCancelledWithoutEpochs) {
  // Cancelling from the runner's own thread makes the point of the cancel
  // exact: before the second batch of epoch 1.
  const std::vector<WorkerMessage> messages =
      Run(MakeAssignment(TrainingSpec::FINE_TUNE), [](JobRunner& runner, const WorkerMessage& m) {
        if (m.has_progress()) runner.Cancel();
      });
  const JobFinished finished = FinishedOf(messages);
  EXPECT_EQ(finished.outcome(), JobFinished::CANCELLED) << finished.error();
  EXPECT_EQ(finished.attempt(), kAttempt);
  EXPECT_THAT(finished.error(), HasSubstr("epoch 1"));
  EXPECT_EQ(CountOf(messages, WorkerMessage::kProgress), 1);
  EXPECT_EQ(CountOf(messages, WorkerMessage::kEpoch), 0);
  EXPECT_FALSE(finished.has_result());
  EXPECT_FALSE(fs::exists(artifact_root_ + "/jobs/job-1/model.pt"));
}

TEST_F(JobRunnerTest, CancelOnTheFirstEpochEndsCancelledAfterOneEpoch) {
  const std::vector<WorkerMessage> messages = Run(MakeAssignment(TrainingSpec::FEATURE_EXTRACTION),
                                                  [](JobRunner& runner, const WorkerMessage& m) {
                                                    if (m.has_epoch()) runner.Cancel();
                                                  });
  const JobFinished finished = FinishedOf(messages);
  EXPECT_EQ(finished.outcome(), JobFinished::CANCELLED) << finished.error();
  EXPECT_THAT(finished.error(), HasSubstr("epoch 2"));
  EXPECT_EQ(CountOf(messages, WorkerMessage::kEpoch), 1);
  // The finished epoch stays checkpointed, for a later attempt to resume from.
  EXPECT_TRUE(fs::exists(artifact_root_ + "/jobs/job-1/checkpoint"));
}

TEST_F(JobRunnerTest, PauseStopsAfterTheEpochAndALaterAttemptResumes) {
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.mutable_spec()->mutable_training()->set_epochs(3);
  const std::vector<WorkerMessage> paused =
      Run(assignment, [](JobRunner& runner, const WorkerMessage& m) {
        if (m.has_started()) runner.Pause();
      });
  const JobFinished pause = FinishedOf(paused);
  EXPECT_EQ(pause.outcome(), JobFinished::PAUSED) << pause.error();
  EXPECT_THAT(pause.error(), HasSubstr("paused after epoch 1"));
  EXPECT_FALSE(pause.retryable());
  EXPECT_EQ(CountOf(paused, WorkerMessage::kEpoch), 1);

  assignment.set_attempt(kAttempt + 1);
  const std::vector<WorkerMessage> resumed = Run(assignment);
  EXPECT_EQ(FinishedOf(resumed).outcome(), JobFinished::SUCCEEDED) << FinishedOf(resumed).error();
  // Epoch 1 comes back from the checkpoint, then 2 and 3 are trained.
  std::vector<int> epochs;
  for (const WorkerMessage& m : resumed) {
    if (m.has_epoch()) epochs.push_back(m.epoch().metrics().epoch());
  }
  EXPECT_THAT(epochs, ::testing::ElementsAre(1, 2, 3));
}

TEST_F(JobRunnerTest, LogLinesTellTheJobsStory) {
  const std::vector<WorkerMessage> messages = Run(MakeAssignment(TrainingSpec::FINE_TUNE));
  ASSERT_EQ(FinishedOf(messages).outcome(), JobFinished::SUCCEEDED);
  ASSERT_EQ(log_lines_.size(), 6u) << ::testing::PrintToString(log_lines_);
  EXPECT_THAT(log_lines_[0], HasSubstr("attempt 3 starting on cpu"));
  EXPECT_THAT(log_lines_[1], HasSubstr("precision: "));
  EXPECT_THAT(log_lines_[2], HasSubstr("dataset: 3 classes"));
  EXPECT_THAT(log_lines_[3], HasSubstr("epoch 1: train loss"));
  EXPECT_THAT(log_lines_[3], HasSubstr(", val accuracy "));
  EXPECT_THAT(log_lines_[4], HasSubstr("epoch 2: train loss"));
  EXPECT_EQ(log_lines_[5], "SUCCEEDED");
}

TEST_F(JobRunnerTest, EpochLinesOfAJobWithoutValidationImagesGiveTrainAccuracyNotZeros) {
  tl::v1::Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.mutable_spec()->mutable_dataset()->clear_val_dir();
  assignment.mutable_spec()->mutable_dataset()->set_val_fraction(0);
  const std::vector<WorkerMessage> messages = Run(assignment);
  ASSERT_EQ(FinishedOf(messages).outcome(), JobFinished::SUCCEEDED) << FinishedOf(messages).error();
  int epoch_lines = 0;
  for (const std::string& line : log_lines_) {
    if (line.rfind("epoch ", 0) != 0) continue;
    ++epoch_lines;
    EXPECT_THAT(line, HasSubstr(", train accuracy "));
    EXPECT_THAT(line, Not(HasSubstr("val ")));
  }
  EXPECT_EQ(epoch_lines, 2);
}

TEST_F(JobRunnerTest, AutoStrategyReportsItsChoiceInResultAndLog) {
  Assignment assignment = MakeAssignment(TrainingSpec::AUTO);
  assignment.mutable_spec()->mutable_training()->clear_backbone_lr_scale();
  // The rate is left to the probe too.
  assignment.mutable_spec()->mutable_training()->clear_learning_rate();
  ASSERT_OK_AND_ASSIGN(engine::ImageJobConfig config, EngineConfigFor(assignment, Settings()));
  EXPECT_TRUE(config.auto_strategy.enabled);
  EXPECT_FALSE(config.auto_strategy.backbone_lr_scale.has_value());
  EXPECT_FALSE(config.auto_strategy.learning_rate.has_value());

  const std::vector<WorkerMessage> messages = Run(assignment);
  const JobFinished finished = FinishedOf(messages);
  ASSERT_EQ(finished.outcome(), JobFinished::SUCCEEDED) << finished.error();
  ASSERT_TRUE(finished.result().has_auto_strategy());

  // RUNNING from before the probe: a JobStarted without the dataset first,
  // then the probe's progress (its runs counted), then the JobStarted with
  // the dataset and the training's progress.
  ASSERT_TRUE(messages.front().has_started());
  EXPECT_FALSE(messages.front().started().has_dataset());
  std::vector<std::string> order;
  int probe_runs = 0;
  for (const WorkerMessage& m : messages) {
    if (m.has_started()) order.push_back(m.started().has_dataset() ? "dataset" : "started");
    if (!m.has_progress()) continue;
    const bool probe = m.progress().progress().phase() == tl::v1::Progress::AUTO_PROBE;
    if (order.empty() || order.back() != (probe ? "probe" : "training")) {
      order.push_back(probe ? "probe" : "training");
    }
    if (probe) probe_runs = m.progress().progress().epochs();
  }
  EXPECT_THAT(order, ElementsAre("started", "probe", "dataset", "training"));
  // Three candidates (FE, FT, FULL) on three folds at this size, and the
  // fine-tune's second rate on the first fold when it is chosen; the count
  // of runs shown grows by that one as it starts.
  const tl::v1::AutoStrategyDecision& decision = finished.result().auto_strategy();
  int scored_runs = 0;
  for (const tl::v1::AutoCandidate& candidate : decision.candidates()) {
    scored_runs += candidate.fold_accuracies_size();
  }
  const bool fine_tune = decision.chosen() == TrainingSpec::FINE_TUNE;
  EXPECT_EQ(scored_runs, 3 * decision.folds() + (fine_tune ? 1 : 0));
  EXPECT_EQ(probe_runs, scored_runs);
  EXPECT_EQ(decision.candidates_size(), fine_tune ? 4 : 3);
  EXPECT_GT(decision.chosen_learning_rate(), 0);
  EXPECT_TRUE(decision.probed());
  EXPECT_NE(decision.chosen(), TrainingSpec::AUTO);
  EXPECT_NE(decision.chosen(), TrainingSpec::STRATEGY_UNSPECIFIED);
  EXPECT_DOUBLE_EQ(decision.images_per_class(), kTrainPerClass);
  EXPECT_GT(decision.probe_holdout_images(), 0);
  EXPECT_FALSE(decision.reason().empty());
  const std::string chosen = TrainingSpec::Strategy_Name(decision.chosen());
  EXPECT_THAT(log_lines_, ::testing::Contains(AllOf(StartsWith("auto strategy: " + chosen),
                                                     HasSubstr(decision.reason()))));
  std::ifstream metrics(artifact_root_ + "/" + finished.result().metrics_path());
  EXPECT_EQ(nlohmann::json::parse(metrics)["auto_strategy"]["strategy"], chosen);
}

TEST_F(JobRunnerTest, DestroyingARunningRunnerCancelsItAndJoins) {
  // Epochs take milliseconds here; a thousand of them take seconds, far longer
  // than the destructor needs to be reached once the job has started.
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.mutable_spec()->mutable_training()->set_epochs(1000);
  Reports reports;
  {
    JobRunner runner(assignment, Settings(),
                     [&](const WorkerMessage& message) { reports.Add(message); });
    runner.Start();
    ASSERT_TRUE(
        reports.WaitFor([](const WorkerMessage& m) { return m.has_started(); }, kJobDeadline));
  }
  // The destructor returned, so the thread is gone and its last word was sent.
  const std::vector<WorkerMessage> messages = reports.messages();
  ASSERT_FALSE(messages.empty());
  ASSERT_TRUE(messages.back().has_finished());
  EXPECT_EQ(messages.back().finished().outcome(), JobFinished::CANCELLED)
      << messages.back().finished().error();
  EXPECT_LT(CountOf(messages, WorkerMessage::kEpoch), 1000);
}

TEST_F(JobRunnerTest, PathEscapeFailsBeforeStartingNamingTheField) {
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.mutable_spec()->mutable_dataset()->set_train_dir("../../etc");
  const std::vector<WorkerMessage> messages = Run(assignment);
  ASSERT_EQ(messages.size(), 1u) << "no JobStarted for a job that cannot start";
  const JobFinished finished = FinishedOf(messages);
  EXPECT_EQ(finished.outcome(), JobFinished::FAILED);
  // A bad spec fails the same way on every worker: not worth another attempt.
  EXPECT_FALSE(finished.retryable());
  ASSERT_FALSE(log_lines_.empty());
  EXPECT_THAT(log_lines_.back(), HasSubstr("dataset.train_dir"));
  EXPECT_EQ(finished.job_id(), kJobId);
  EXPECT_EQ(finished.attempt(), kAttempt);
  EXPECT_THAT(finished.error(), HasSubstr("dataset.train_dir"));
}

TEST_F(JobRunnerTest, BackboneThatIsNotTorchScriptFailsNamingTheFile) {
  const std::string dir = data_root_ + "/broken";
  fs::create_directories(dir);
  std::ofstream(dir + "/fake.pt") << "this is not a TorchScript archive\n";
  // A valid manifest, so that the failure is the model file's own.
  fs::copy_file(data_root_ + "/backbones/tiny.json", dir + "/fake.json");
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.set_backbone_path("broken/fake.pt");
  const JobFinished finished = FinishedOf(Run(assignment));
  EXPECT_EQ(finished.outcome(), JobFinished::FAILED);
  EXPECT_THAT(finished.error(), AllOf(HasSubstr("fake.pt"), HasSubstr("TorchScript")));
}

TEST_F(JobRunnerTest, MissingBackboneFailsNamingTheFile) {
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.set_backbone_path("backbones/absent.pt");
  const JobFinished finished = FinishedOf(Run(assignment));
  EXPECT_EQ(finished.outcome(), JobFinished::FAILED);
  EXPECT_THAT(finished.error(), HasSubstr("absent.pt"));
}

TEST_F(JobRunnerTest, DatasetWithOneClassFailsNamingTheField) {
  WriteImageFolder(data_root_ + "/single", {"only"}, 6);
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.mutable_spec()->mutable_dataset()->set_train_dir("single");
  assignment.mutable_spec()->mutable_dataset()->clear_val_dir();
  const std::vector<WorkerMessage> messages = Run(assignment);
  EXPECT_EQ(CountOf(messages, WorkerMessage::kStarted), 0);
  const JobFinished finished = FinishedOf(messages);
  EXPECT_EQ(finished.outcome(), JobFinished::FAILED);
  EXPECT_THAT(finished.error(), AllOf(HasSubstr("dataset.train_dir"), HasSubstr("1 class")));
}

TEST_F(JobRunnerTest, MostlyCorruptDatasetFails) {
  const std::string train = data_root_ + "/noisy";
  WriteImageFolder(train, kClasses, 2);
  for (size_t label = 0; label < kClasses.size(); ++label) {
    for (int i = 0; i < 4; ++i) {
      WriteCorruptImage(train + "/" + kClasses[label] + "/bad" + std::to_string(i) + ".png",
                        static_cast<uint32_t>(label * 10 + i));
    }
  }
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.mutable_spec()->mutable_dataset()->set_train_dir("noisy");
  const std::vector<WorkerMessage> messages = Run(assignment);
  const JobFinished finished = FinishedOf(messages);
  EXPECT_EQ(finished.outcome(), JobFinished::FAILED);
  EXPECT_THAT(finished.error(), AllOf(HasSubstr("dataset.train_dir"),
                                      HasSubstr("12 of 18 images could not be read")));
  EXPECT_EQ(CountOf(messages, WorkerMessage::kEpoch), 0);
}

// A spec that leaves the batch and the validation slice unset gets them from
// the data: JobStarted and the result say what was used and which fields the
// data sized, so the scheduler can store them in the spec.
TEST_F(JobRunnerTest, FieldsLeftUnsetAreSizedByTheDataAndReported) {
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  tl::v1::JobSpec& spec = *assignment.mutable_spec();
  spec.mutable_dataset()->clear_val_dir();
  spec.mutable_dataset()->clear_val_fraction();
  spec.mutable_training()->clear_batch_size();
  const std::vector<WorkerMessage> messages = Run(assignment);
  const JobFinished finished = FinishedOf(messages);
  ASSERT_EQ(finished.outcome(), JobFinished::SUCCEEDED) << finished.error();
  const auto started = std::find_if(messages.begin(), messages.end(),
                                    [](const WorkerMessage& m) { return m.has_started(); });
  ASSERT_NE(started, messages.end());
  for (const tl::v1::DataSizing& sizing :
       {started->started().data_sizing(), finished.result().data_sizing()}) {
    EXPECT_THAT(sizing.sized_fields(),
                UnorderedElementsAre("training.batch_size", "dataset.val_fraction"));
    // A few images per class: nothing is held out, and the batch is a share of them.
    EXPECT_EQ(sizing.val_fraction(), 0);
    EXPECT_EQ(sizing.train_images(), 3 * kTrainPerClass);
    EXPECT_EQ(sizing.batch_size(), engine::SizedBatchSize(3 * kTrainPerClass));
    EXPECT_EQ(sizing.epochs(), 2);  // set in the spec
    const int64_t batches = (sizing.train_images() + sizing.batch_size() - 1) / sizing.batch_size();
    EXPECT_EQ(sizing.steps(), 2 * batches);
  }
  EXPECT_EQ(finished.result().dataset().val_images(), 0);
  EXPECT_EQ(CountOf(messages, WorkerMessage::kEpoch), 2);
}

TEST_F(JobRunnerTest, OneCorruptImageIsSkippedAndCounted) {
  WriteCorruptImage(data_root_ + "/fruit/train/banana/zz_bad.png", 99);
  const std::vector<WorkerMessage> messages = Run(MakeAssignment(TrainingSpec::FEATURE_EXTRACTION));
  ASSERT_FALSE(messages.empty());
  ASSERT_TRUE(messages.front().has_started());
  EXPECT_EQ(messages.front().started().dataset().skipped_images(), 1);
  const JobFinished finished = FinishedOf(messages);
  ASSERT_EQ(finished.outcome(), JobFinished::SUCCEEDED) << finished.error();
  // The unreadable file is listed with the others and counted apart.
  EXPECT_EQ(finished.result().dataset().train_images(), 3 * kTrainPerClass + 1);
  EXPECT_EQ(finished.result().dataset().skipped_images(), 1);
  EXPECT_EQ(CountOf(messages, WorkerMessage::kEpoch), 2);
}

// ---------------------------------------------------------------- the recipe

std::vector<tl::v1::EpochMetrics> EpochsOf(const std::vector<WorkerMessage>& messages) {
  std::vector<tl::v1::EpochMetrics> epochs;
  for (const WorkerMessage& message : messages) {
    if (message.has_epoch()) epochs.push_back(message.epoch().metrics());
  }
  return epochs;
}

TEST_F(JobRunnerTest, OneSeedRepeatsAJobExactlyAndAnotherDoesNot) {
  auto run_with_seed = [&](const std::string& job_id, uint64_t seed) {
    Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
    assignment.set_job_id(job_id);
    assignment.set_output_dir("jobs/" + job_id);
    // The held-out split and shuffling depend on the seed too.
    assignment.mutable_spec()->mutable_dataset()->clear_val_dir();
    assignment.mutable_spec()->mutable_training()->set_seed(seed);
    const std::vector<WorkerMessage> messages = Run(assignment);
    EXPECT_EQ(FinishedOf(messages).outcome(), JobFinished::SUCCEEDED)
        << FinishedOf(messages).error();
    return EpochsOf(messages);
  };
  const std::vector<tl::v1::EpochMetrics> first = run_with_seed("seed-a", 5);
  const std::vector<tl::v1::EpochMetrics> again = run_with_seed("seed-b", 5);
  const std::vector<tl::v1::EpochMetrics> other = run_with_seed("seed-c", 6);
  ASSERT_EQ(first.size(), 2u);
  ASSERT_EQ(again.size(), 2u);
  ASSERT_EQ(other.size(), 2u);
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(first[i].train_loss(), again[i].train_loss()) << "epoch " << i + 1;
    EXPECT_EQ(first[i].train_accuracy(), again[i].train_accuracy()) << "epoch " << i + 1;
    EXPECT_EQ(first[i].val_loss(), again[i].val_loss()) << "epoch " << i + 1;
    EXPECT_EQ(first[i].val_accuracy(), again[i].val_accuracy()) << "epoch " << i + 1;
    EXPECT_EQ(first[i].learning_rate(), again[i].learning_rate()) << "epoch " << i + 1;
  }
  EXPECT_NE(first[0].train_loss(), other[0].train_loss());
}

TEST_F(JobRunnerTest, WholeRecipeTrainsAndReportsTheScheduledRate) {
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  TrainingSpec& training = *assignment.mutable_spec()->mutable_training();
  training.set_epochs(3);
  training.set_optimizer(TrainingSpec::ADAMW);
  training.set_weight_decay(0.01);
  training.set_lr_schedule(TrainingSpec::COSINE);
  training.set_learning_rate(0.02);
  training.set_min_learning_rate(0.001);
  training.set_warmup_epochs(1);
  training.set_clip_grad_norm(1.0);
  training.set_label_smoothing(0.1);
  training.set_balanced_class_weights(true);
  const std::vector<WorkerMessage> messages = Run(assignment);
  const JobFinished finished = FinishedOf(messages);
  ASSERT_EQ(finished.outcome(), JobFinished::SUCCEEDED) << finished.error();
  const std::vector<tl::v1::EpochMetrics> epochs = EpochsOf(messages);
  ASSERT_EQ(epochs.size(), 3u);
  EXPECT_DOUBLE_EQ(epochs[0].learning_rate(), 0.02);  // the warmup's last batch
  EXPECT_LT(epochs[1].learning_rate(), 0.02);
  EXPECT_GT(epochs[1].learning_rate(), 0.001);
  EXPECT_DOUBLE_EQ(epochs[2].learning_rate(), 0.001);  // the cosine's last batch
}

TEST_F(JobRunnerTest, ClassWeightForAnUnknownClassFailsNamingTheField) {
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  (*assignment.mutable_spec()->mutable_training()->mutable_class_weights())["durian"] = 2;
  const std::vector<WorkerMessage> messages = Run(assignment);
  EXPECT_EQ(CountOf(messages, WorkerMessage::kStarted), 0);
  const JobFinished finished = FinishedOf(messages);
  EXPECT_EQ(finished.outcome(), JobFinished::FAILED);
  EXPECT_THAT(finished.error(), AllOf(HasSubstr("training.class_weights"), HasSubstr("durian")));
}

// ---------------------------------------------------------------- bad input from the backbone

TEST_F(JobRunnerTest, UnfreezingMoreGroupsThanTheBackboneHasFailsNamingTheCount) {
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.mutable_spec()->mutable_training()->set_unfreeze_groups(5);
  const std::vector<WorkerMessage> messages = Run(assignment);
  EXPECT_EQ(CountOf(messages, WorkerMessage::kStarted), 0);
  const JobFinished finished = FinishedOf(messages);
  EXPECT_EQ(finished.outcome(), JobFinished::FAILED);
  const size_t groups = engine::testing::TinyManifest().layer_groups.size();
  EXPECT_THAT(finished.error(),
              AllOf(HasSubstr("training.unfreeze_groups is 5"),
                    HasSubstr("has " + std::to_string(groups) + " layer groups")));
}

TEST_F(JobRunnerTest, UnknownManifestFieldFailsNamingFieldAndFile) {
  const std::string dir = data_root_ + "/typo";
  fs::create_directories(dir);
  fs::copy_file(data_root_ + "/backbones/tiny.pt", dir + "/tiny.pt");
  std::ifstream in(data_root_ + "/backbones/tiny.json");
  nlohmann::json manifest = nlohmann::json::parse(in);
  manifest["input_sise"] = 8;
  std::ofstream(dir + "/tiny.json") << manifest.dump();
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.set_backbone_path("typo/tiny.pt");
  const JobFinished finished = FinishedOf(Run(assignment));
  EXPECT_EQ(finished.outcome(), JobFinished::FAILED);
  EXPECT_THAT(finished.error(), AllOf(HasSubstr("\"input_sise\" is not a known field"),
                                      HasSubstr(Canonical(dir) + "/tiny.json")));
}

// A backbone whose first convolution has a 12x12 kernel and no padding: it
// cannot take images under 12 px, as Inception v3 cannot under 75.
void WriteUnpaddedBackbone(const std::string& dir) {
  fs::create_directories(dir);
  torch::jit::Module backbone{c10::QualifiedName("__torch__.tl_test.UnpaddedBackbone")};
  backbone.register_attribute("training", c10::BoolType::get(), true);
  torch::jit::Module stem{c10::QualifiedName("__torch__.tl_test.UnpaddedStem")};
  stem.register_attribute("training", c10::BoolType::get(), true);
  stem.register_parameter("weight", torch::randn({4, 3, 12, 12}) * 0.1, false);
  stem.define(R"JIT(
def forward(self, x: Tensor) -> Tensor:
    return torch.relu(torch.conv2d(x, self.weight))
)JIT");
  backbone.register_module("stem", stem);
  backbone.define(R"JIT(
def forward(self, x: Tensor) -> Tensor:
    return torch.flatten(torch.adaptive_avg_pool2d(self.stem.forward(x), [1, 1]), 1)
)JIT");
  backbone.save(dir + "/unpadded.pt");
  engine::BackboneManifest manifest = engine::testing::TinyManifest();
  manifest.architecture = "unpadded";
  manifest.feature_dim = 4;
  manifest.input_size = 16;
  manifest.layer_groups = {{"stem", {"stem"}}};
  engine::WriteManifest(manifest, dir + "/unpadded.json");
}

TEST_F(JobRunnerTest, ImageSizeTheBackboneCannotTakeFailsBeforeTraining) {
  WriteUnpaddedBackbone(data_root_ + "/unpadded");
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.set_backbone_path("unpadded/unpadded.pt");
  assignment.mutable_spec()->mutable_preprocessing()->set_image_size(8);
  const std::vector<WorkerMessage> messages = Run(assignment);
  EXPECT_EQ(CountOf(messages, WorkerMessage::kStarted), 0) << "found before the data is decoded";
  EXPECT_EQ(CountOf(messages, WorkerMessage::kProgress), 0);
  const JobFinished finished = FinishedOf(messages);
  EXPECT_EQ(finished.outcome(), JobFinished::FAILED);
  EXPECT_THAT(finished.error(), AllOf(HasSubstr("preprocessing.image_size 8"),
                                      HasSubstr("unpadded"), HasSubstr("forward pass fails"),
                                      HasSubstr("Kernel size")));

  // The same backbone at a size it can take trains.
  assignment.mutable_spec()->mutable_preprocessing()->set_image_size(12);
  assignment.set_output_dir("jobs/job-1-retry");
  const JobFinished retried = FinishedOf(Run(assignment));
  EXPECT_EQ(retried.outcome(), JobFinished::SUCCEEDED) << retried.error();
}

TEST_F(JobRunnerTest, LearningRateThatMakesTheLossNaNFailsNamingEpochAndBatch) {
  Assignment assignment = MakeAssignment(TrainingSpec::FULL);
  assignment.mutable_spec()->mutable_training()->clear_unfreeze_groups();
  assignment.mutable_spec()->mutable_training()->set_optimizer(TrainingSpec::SGD);
  assignment.mutable_spec()->mutable_training()->set_momentum(0);
  assignment.mutable_spec()->mutable_training()->set_learning_rate(1e30);
  const std::vector<WorkerMessage> messages = Run(assignment);
  const JobFinished finished = FinishedOf(messages);
  EXPECT_EQ(finished.outcome(), JobFinished::FAILED);
  EXPECT_THAT(finished.error(), HasSubstr("loss became NaN at epoch 1, batch "));
  EXPECT_EQ(CountOf(messages, WorkerMessage::kEpoch), 0);
}

// Lists dir's class folders in a CSV at csv_path, paths relative to the CSV.
void WriteCsvListing(const std::string& csv_path, const std::string& dir,
                     const std::vector<std::string>& classes) {
  std::ofstream out(csv_path);
  out << "path,label\n";
  for (const std::string& name : classes) {
    for (const auto& entry : fs::directory_iterator(dir + "/" + name)) {
      out << fs::relative(entry.path(), fs::path(csv_path).parent_path()).string() << "," << name
          << "\n";
    }
  }
}

TEST_F(JobRunnerTest, EngineConfigMapsAugmentationAndCsvDatasets) {
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  tl::v1::DatasetSpec& dataset = *assignment.mutable_spec()->mutable_dataset();
  dataset.clear_train_dir();
  dataset.clear_val_dir();
  dataset.set_train_csv("fruit/train.csv");
  dataset.set_val_csv("fruit/val.csv");
  tl::v1::PreprocessingSpec& preprocessing = *assignment.mutable_spec()->mutable_preprocessing();
  tl::v1::PreprocessingSpec::RandomResizedCrop& crop = *preprocessing.mutable_random_resized_crop();
  crop.set_min_scale(0.25);
  crop.set_max_scale(0.75);
  crop.set_min_aspect_ratio(0.5);
  crop.set_max_aspect_ratio(1.5);
  preprocessing.set_rotation_degrees(10);
  preprocessing.set_brightness(0.1);
  preprocessing.set_contrast(0.2);
  preprocessing.set_saturation(0.3);
  ASSERT_OK_AND_ASSIGN(engine::ImageJobConfig config, EngineConfigFor(assignment, Settings()));
  EXPECT_EQ(config.train_csv, Canonical(data_root_) + "/fruit/train.csv");
  EXPECT_EQ(config.val_csv, Canonical(data_root_) + "/fruit/val.csv");
  EXPECT_EQ(config.train_dir, "");
  EXPECT_EQ(config.val_dir, "");
  EXPECT_EQ(config.data_root, data_root_);
  EXPECT_TRUE(config.augmentation.random_resized_crop);
  EXPECT_DOUBLE_EQ(config.augmentation.min_scale, 0.25);
  EXPECT_DOUBLE_EQ(config.augmentation.max_scale, 0.75);
  EXPECT_DOUBLE_EQ(config.augmentation.min_aspect_ratio, 0.5);
  EXPECT_DOUBLE_EQ(config.augmentation.max_aspect_ratio, 1.5);
  EXPECT_DOUBLE_EQ(config.augmentation.rotation_degrees, 10);
  EXPECT_DOUBLE_EQ(config.augmentation.brightness, 0.1);
  EXPECT_DOUBLE_EQ(config.augmentation.contrast, 0.2);
  EXPECT_DOUBLE_EQ(config.augmentation.saturation, 0.3);

  dataset.set_val_csv("../outside.csv");
  EXPECT_THAT(EngineConfigFor(assignment, Settings()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dataset.val_csv")));
}

TEST_F(JobRunnerTest, CsvDatasetWithAugmentationTrains) {
  WriteCsvListing(data_root_ + "/fruit/train.csv", data_root_ + "/fruit/train", kClasses);
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  tl::v1::DatasetSpec& dataset = *assignment.mutable_spec()->mutable_dataset();
  dataset.clear_train_dir();
  dataset.clear_val_dir();
  dataset.set_train_csv("fruit/train.csv");
  dataset.set_val_fraction(0.25);
  // The crop as the server stores one given without bounds.
  tl::v1::PreprocessingSpec::RandomResizedCrop& crop =
      *assignment.mutable_spec()->mutable_preprocessing()->mutable_random_resized_crop();
  crop.set_min_scale(0.08);
  crop.set_max_scale(1);
  crop.set_min_aspect_ratio(3.0 / 4.0);
  crop.set_max_aspect_ratio(4.0 / 3.0);
  assignment.mutable_spec()->mutable_preprocessing()->set_rotation_degrees(15);
  assignment.mutable_spec()->mutable_preprocessing()->set_brightness(0.2);
  const std::vector<WorkerMessage> messages = Run(assignment);
  const JobFinished finished = FinishedOf(messages);
  ASSERT_EQ(finished.outcome(), JobFinished::SUCCEEDED) << finished.error();
  const tl::v1::DatasetSummary& summary = finished.result().dataset();
  EXPECT_EQ(summary.class_names_size(), static_cast<int>(kClasses.size()));
  EXPECT_EQ(summary.train_images() + summary.val_images(),
            static_cast<int64_t>(kClasses.size()) * kTrainPerClass);
  EXPECT_GT(summary.val_images(), 0);
}

TEST_F(JobRunnerTest, CsvPathLeavingTheDataRootFailsTheJobNamingTheLine) {
  {
    std::ofstream out(data_root_ + "/fruit/escape.csv");
    out << "train/apple/img0.png,apple\n../../../outside.png,pear\n";
  }
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.mutable_spec()->mutable_dataset()->clear_train_dir();
  assignment.mutable_spec()->mutable_dataset()->set_train_csv("fruit/escape.csv");
  const JobFinished finished = FinishedOf(Run(assignment));
  EXPECT_EQ(finished.outcome(), JobFinished::FAILED);
  EXPECT_THAT(finished.error(), AllOf(HasSubstr("dataset.train_csv"), HasSubstr("line 2"),
                                      HasSubstr("outside the data root")));
}

TEST_F(JobRunnerTest, DatasetCheckIsReportedAtTheStartAndKeptWithTheJob) {
  // The fixture's validation images are copies of the first training images
  // of each class; one more training file is unreadable.
  WriteCorruptImage(data_root_ + "/fruit/train/banana/zz_broken.png", 5);
  const std::vector<WorkerMessage> messages = Run(MakeAssignment(TrainingSpec::FINE_TUNE));
  const JobFinished finished = FinishedOf(messages);
  ASSERT_EQ(finished.outcome(), JobFinished::SUCCEEDED) << finished.error();
  const auto started = std::find_if(messages.begin(), messages.end(),
                                    [](const WorkerMessage& m) { return m.has_started(); });
  ASSERT_NE(started, messages.end());
  for (const tl::v1::DatasetSummary& summary :
       {started->started().dataset(), finished.result().dataset()}) {
    EXPECT_THAT(summary.train_images_per_class(), ElementsAre(8, 9, 8));
    EXPECT_THAT(summary.val_images_per_class(), ElementsAre(3, 3, 3));
    EXPECT_DOUBLE_EQ(summary.imbalance_ratio(), 9.0 / 8.0);
    EXPECT_EQ(summary.skipped_images(), 1);
    EXPECT_THAT(summary.unreadable_examples(), ElementsAre("fruit/train/banana/zz_broken.png"));
    EXPECT_EQ(summary.duplicate_images(), 9);
    ASSERT_EQ(summary.duplicate_examples_size(), 9);
    EXPECT_EQ(summary.duplicate_examples(0), "fruit/val/apple/img0.png = fruit/train/apple/img0.png");
  }
  std::ifstream report(artifact_root_ + "/jobs/job-1/dataset.json");
  ASSERT_TRUE(report.good());
  const nlohmann::json json = nlohmann::json::parse(report);
  EXPECT_EQ(json["classes"][1]["name"], "banana");
  EXPECT_EQ(json["classes"][1]["train_images"], 9);
  EXPECT_EQ(json["unreadable_images"], 1);
  EXPECT_EQ(json["duplicate_images"], 9);
}

// The head weights of an exported model.pt.
torch::Tensor ExportedHead(const std::string& model_path) {
  torch::jit::Module model = torch::jit::load(model_path);
  return model.attr("head_weight").toTensor().clone();
}

std::vector<int> EpochsReported(const std::vector<WorkerMessage>& messages) {
  std::vector<int> epochs;
  for (const WorkerMessage& m : messages) {
    if (m.has_epoch()) epochs.push_back(m.epoch().metrics().epoch());
  }
  return epochs;
}

// An early stopping no later epoch can satisfy: the first epoch stays best.
void StopAfterStalling(Assignment& assignment, int patience) {
  TrainingSpec& training = *assignment.mutable_spec()->mutable_training();
  training.set_epochs(6);
  training.mutable_early_stopping()->set_metric(TrainingSpec::EarlyStopping::VAL_ACCURACY);
  training.mutable_early_stopping()->set_mode(TrainingSpec::EarlyStopping::MAX);
  training.mutable_early_stopping()->set_patience(patience);
  training.mutable_early_stopping()->set_min_delta(1000);
}

TEST_F(JobRunnerTest, EarlyStoppingEndsTrainingAndExportsTheBestEpoch) {
  // The reference: the same job trained for one epoch only.
  Assignment one_epoch = MakeAssignment(TrainingSpec::FINE_TUNE);
  one_epoch.mutable_spec()->mutable_training()->set_epochs(1);
  one_epoch.set_output_dir("jobs/one-epoch");
  const JobFinished reference = FinishedOf(Run(one_epoch));
  ASSERT_EQ(reference.outcome(), JobFinished::SUCCEEDED) << reference.error();

  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  StopAfterStalling(assignment, 2);
  const std::vector<WorkerMessage> messages = Run(assignment);
  const JobFinished finished = FinishedOf(messages);
  ASSERT_EQ(finished.outcome(), JobFinished::SUCCEEDED) << finished.error();
  EXPECT_THAT(EpochsReported(messages), ElementsAre(1, 2, 3));
  EXPECT_EQ(finished.result().best_epoch(), 1);
  EXPECT_TRUE(finished.result().stopped_early());
  EXPECT_EQ(finished.result().final_metrics().epoch(), 3);
  EXPECT_TRUE(torch::equal(ExportedHead(artifact_root_ + "/jobs/job-1/model.pt"),
                           ExportedHead(artifact_root_ + "/jobs/one-epoch/model.pt")));
  std::ifstream metrics_file(artifact_root_ + "/jobs/job-1/metrics.json");
  const nlohmann::json metrics = nlohmann::json::parse(metrics_file);
  EXPECT_EQ(metrics["epochs"].size(), 3u);
  EXPECT_EQ(metrics["early_stopping"]["best_epoch"], 1);
  EXPECT_EQ(metrics["early_stopping"]["stopped_early"], true);
  EXPECT_EQ(metrics["early_stopping"]["metric"], "val_accuracy");
  EXPECT_EQ(metrics["early_stopping"]["mode"], "max");
  EXPECT_FALSE(fs::exists(artifact_root_ + "/jobs/job-1/best"));
}

TEST_F(JobRunnerTest, EarlyStoppingContinuesCorrectlyAfterAResume) {
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  StopAfterStalling(assignment, 3);
  // Paused after epoch 2: epoch 1 is best, one epoch without improvement.
  const std::vector<WorkerMessage> paused =
      Run(assignment, [](JobRunner& runner, const WorkerMessage& m) {
        if (m.has_epoch() && m.epoch().metrics().epoch() == 2) runner.Pause();
      });
  ASSERT_EQ(FinishedOf(paused).outcome(), JobFinished::PAUSED) << FinishedOf(paused).error();
  EXPECT_TRUE(fs::exists(artifact_root_ + "/jobs/job-1/best/epoch-1.pt"));

  assignment.set_attempt(kAttempt + 1);
  const std::vector<WorkerMessage> resumed = Run(assignment);
  const JobFinished finished = FinishedOf(resumed);
  ASSERT_EQ(finished.outcome(), JobFinished::SUCCEEDED) << finished.error();
  // Two more epochs without improvement make three: it stops after epoch 4.
  EXPECT_THAT(EpochsReported(resumed), ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(finished.result().best_epoch(), 1);
  EXPECT_TRUE(finished.result().stopped_early());

  Assignment one_epoch = MakeAssignment(TrainingSpec::FINE_TUNE);
  one_epoch.mutable_spec()->mutable_training()->set_epochs(1);
  one_epoch.set_output_dir("jobs/one-epoch");
  ASSERT_EQ(FinishedOf(Run(one_epoch)).outcome(), JobFinished::SUCCEEDED);
  EXPECT_TRUE(torch::equal(ExportedHead(artifact_root_ + "/jobs/job-1/model.pt"),
                           ExportedHead(artifact_root_ + "/jobs/one-epoch/model.pt")));
}

TEST_F(JobRunnerTest, EarlyStoppingWithoutValidationImagesFails) {
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  assignment.mutable_spec()->mutable_dataset()->clear_val_dir();
  assignment.mutable_spec()->mutable_dataset()->set_val_fraction(0);
  // Early stopping as the server stores one given without fields.
  TrainingSpec::EarlyStopping& stopping =
      *assignment.mutable_spec()->mutable_training()->mutable_early_stopping();
  stopping.set_metric(TrainingSpec::EarlyStopping::VAL_LOSS);
  stopping.set_mode(TrainingSpec::EarlyStopping::MIN);
  stopping.set_patience(5);
  const JobFinished finished = FinishedOf(Run(assignment));
  EXPECT_EQ(finished.outcome(), JobFinished::FAILED);
  EXPECT_THAT(finished.error(), HasSubstr("training.early_stopping needs validation images"));
}

TEST_F(JobRunnerTest, StagedFineTuningIsMappedAndTrains) {
  Assignment assignment = MakeAssignment(TrainingSpec::FINE_TUNE);
  TrainingSpec& training = *assignment.mutable_spec()->mutable_training();
  training.set_epochs(3);
  training.set_unfreeze_groups(2);
  training.set_head_only_epochs(1);
  training.set_unfreeze_every_epochs(1);
  ASSERT_OK_AND_ASSIGN(engine::ImageJobConfig config, EngineConfigFor(assignment, Settings()));
  EXPECT_EQ(config.train.head_only_epochs, 1);
  EXPECT_EQ(config.train.unfreeze_every_epochs, 1);
  const std::vector<WorkerMessage> messages = Run(assignment);
  const JobFinished finished = FinishedOf(messages);
  ASSERT_EQ(finished.outcome(), JobFinished::SUCCEEDED) << finished.error();
  EXPECT_THAT(EpochsReported(messages), ElementsAre(1, 2, 3));
}

}  // namespace
}  // namespace tl::worker
