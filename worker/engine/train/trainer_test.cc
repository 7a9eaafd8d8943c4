#include "train/trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>

#include "base/errors.h"
#include "common/testing/temp_dir.h"
#include "data/tensor_source.h"
#include "testing/tiny_backbone.h"

namespace tl::engine {
namespace {

using testing::kTinyInputSize;
using ::tl::testing::TempDir;
using testing::TinyManifest;
using testing::WriteTinyBackbone;

// Two classes a linear probe can tell apart: bright images and dark ones.
std::pair<torch::Tensor, torch::Tensor> BrightOrDark(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  torch::Tensor labels = torch::arange(n, torch::kInt64).remainder(2);
  torch::Tensor images = torch::randn({n, 3, kTinyInputSize, kTinyInputSize}) * 0.3 +
                         (labels.to(torch::kFloat32) * 2 - 1).view({n, 1, 1, 1});
  return {images, labels};
}

class RecordingObserver : public TrainObserver {
 public:
  void OnBatch(const BatchProgress& progress) override { batches.push_back(progress); }
  void OnEpoch(const EpochStats& stats) override { epochs.push_back(stats); }
  bool StopRequested() override {
    return (stop_after >= 0 && batches.size() >= size_t(stop_after)) ||
           (stop_after_epochs >= 0 && epochs.size() >= size_t(stop_after_epochs));
  }

  std::vector<BatchProgress> batches;
  std::vector<EpochStats> epochs;
  int stop_after = -1;         // batches
  int stop_after_epochs = -1;
};

TrainOptions Options(int epochs) {
  TrainOptions options;
  options.strategy = Strategy::kFull;
  options.epochs = epochs;
  options.optimizer = OptimizerKind::kAdam;
  options.learning_rate = 0.01;
  options.backbone_lr_scale = 1.0;
  return options;
}

TEST(TrainerTest, LearnsASeparableProblemAndReportsEveryEpoch) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 2, 1);
  Trainer trainer(model, Options(4));
  auto [train_images, train_labels] = BrightOrDark(64, 1);
  auto [val_images, val_labels] = BrightOrDark(32, 2);
  TensorSource train(train_images, train_labels, 16, /*shuffle=*/true, 1);
  TensorSource val(val_images, val_labels, 16, /*shuffle=*/false, 1);
  RecordingObserver observer;

  const std::vector<EpochStats> epochs = trainer.Run(train, &val, observer).epochs;

  ASSERT_EQ(epochs.size(), 4u);
  ASSERT_EQ(observer.epochs.size(), 4u);
  EXPECT_EQ(observer.batches.size(), 16u);  // 4 epochs of 4 batches
  EXPECT_EQ(observer.batches.back().batch, 4);
  EXPECT_EQ(observer.batches.back().batches, 4);
  EXPECT_EQ(epochs.back().epoch, 4);
  EXPECT_EQ(epochs.back().train_images, 64);
  EXPECT_EQ(epochs.back().val_images, 32);
  EXPECT_GT(epochs.back().val_accuracy, 0.9);
  EXPECT_GT(epochs.back().val_macro_f1, 0.9);
  EXPECT_LT(epochs.back().train_loss, epochs.front().train_loss);
  EXPECT_GT(epochs.back().images_per_second, 0);
  EXPECT_DOUBLE_EQ(epochs.back().learning_rate, 0.01);
}

// A source whose batches take `delay` each to arrive, like a decoder that
// cannot keep up; the delay is what the trainer is to measure.
class SlowSource : public BatchSource {
 public:
  SlowSource(BatchSource& inner, std::chrono::milliseconds delay) : inner_(inner), delay_(delay) {}
  int64_t size() const override { return inner_.size(); }
  int64_t batches() const override { return inner_.batches(); }
  void StartEpoch(int epoch) override { inner_.StartEpoch(epoch); }
  std::optional<Batch> Next() override {
    const auto ready = std::chrono::steady_clock::now() + delay_;
    while (std::chrono::steady_clock::now() < ready) {
    }
    return inner_.Next();
  }

 private:
  BatchSource& inner_;
  const std::chrono::milliseconds delay_;
};

TEST(TrainerTest, ProgressCountsTheTimeSpentWaitingForBatches) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 2, 1);
  Trainer trainer(model, Options(2));
  auto [images, labels] = BrightOrDark(16, 1);
  TensorSource fast(images, labels, 4, /*shuffle=*/false, 1);
  SlowSource slow(fast, std::chrono::milliseconds(30));
  RecordingObserver observer;

  trainer.Run(slow, nullptr, observer);

  ASSERT_EQ(observer.batches.size(), 8u);  // 2 epochs of 4 batches
  for (const BatchProgress& progress : observer.batches) {
    // Each batch waited 30 ms; the figure restarts with each epoch.
    EXPECT_GE(progress.data_wait_seconds, 0.030 * progress.batch) << "batch " << progress.batch;
    EXPECT_LT(progress.data_wait_seconds, 1.0 * progress.batch) << "batch " << progress.batch;
  }
}

TEST(TrainerTest, StopRequestEndsTheRunBetweenBatches) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 2, 1);
  Trainer trainer(model, Options(3));
  auto [images, labels] = BrightOrDark(64, 1);
  TensorSource train(images, labels, 8, true, 1);
  RecordingObserver observer;
  observer.stop_after = 2;
  const Trainer::RunResult run = trainer.Run(train, nullptr, observer);
  EXPECT_EQ(run.outcome.kind, RunOutcome::Kind::kCancelled);
  EXPECT_EQ(run.outcome.reason, "stopped on request in epoch 1");
  EXPECT_TRUE(run.epochs.empty());
  EXPECT_EQ(observer.batches.size(), 2u);
}

// Pauses after the epochs it is told to.
class PausingObserver : public TrainObserver {
 public:
  explicit PausingObserver(int after) : after_(after) {}
  void OnEpoch(const EpochStats& stats) override { seen.push_back(stats.epoch); }
  bool PauseRequested() override { return static_cast<int>(seen.size()) >= after_; }
  std::vector<int> seen;

 private:
  int after_;
};

TEST(TrainerTest, APauseEndsTheRunAfterTheEpochsObserver) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 2, 1);
  Trainer trainer(model, Options(4));
  auto [images, labels] = BrightOrDark(32, 1);
  TensorSource train(images, labels, 8, true, 1);
  PausingObserver observer(2);
  const Trainer::RunResult run = trainer.Run(train, nullptr, observer);
  EXPECT_EQ(run.outcome.kind, RunOutcome::Kind::kPaused);
  EXPECT_EQ(run.outcome.reason, "paused after epoch 2");
  ASSERT_EQ(run.epochs.size(), 2u);
  EXPECT_EQ(observer.seen, (std::vector<int>{1, 2}));
}

TEST(TrainerTest, AFinishedRunSaysSo) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 2, 1);
  Trainer trainer(model, Options(2));
  auto [images, labels] = BrightOrDark(16, 1);
  TensorSource train(images, labels, 8, true, 1);
  RecordingObserver observer;
  const Trainer::RunResult run = trainer.Run(train, nullptr, observer);
  EXPECT_TRUE(run.outcome.finished());
  EXPECT_TRUE(run.outcome.reason.empty());
  EXPECT_EQ(run.epochs.size(), 2u);
}

// The message of the kFailedPrecondition error a run must end with.
std::string FailedPreconditionOfRun(Trainer& trainer, BatchSource& train,
                                    RecordingObserver& observer) {
  try {
    trainer.Run(train, nullptr, observer);
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kFailedPrecondition);
    return error.what();
  }
  ADD_FAILURE() << "expected a failure";
  return "";
}

TEST(TrainerTest, NonFiniteLossNamesEpochAndBatch) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 2, 1);
  Trainer trainer(model, Options(1));
  auto [images, labels] = BrightOrDark(32, 1);
  images[20][0][0][0] = std::numeric_limits<float>::quiet_NaN();  // lands in batch 3 of 8-image batches
  TensorSource train(images, labels, 8, /*shuffle=*/false, 1);
  RecordingObserver observer;
  const std::string error = FailedPreconditionOfRun(trainer, train, observer);
  EXPECT_NE(error.find("loss became NaN at epoch 1, batch 3"), std::string::npos) << error;
}

TEST(TrainerTest, CheckpointRestoresWeightsOptimizerAndEpochs) {
  TempDir dir;
  const std::string backbone = WriteTinyBackbone(dir.path());
  auto [images, labels] = BrightOrDark(32, 1);
  TransferModel first(backbone, TinyManifest(), 2, 1);
  Trainer first_trainer(first, Options(2));
  TensorSource train(images, labels, 8, true, 1);
  RecordingObserver observer;
  const std::vector<EpochStats> done = first_trainer.Run(train, nullptr, observer).epochs;
  first_trainer.SaveCheckpoint(dir.path(), done);

  TransferModel second(backbone, TinyManifest(), 2, 99);  // another head init
  Trainer second_trainer(second, Options(2));
  const std::vector<EpochStats> restored = second_trainer.LoadCheckpoint(dir.path());
  ASSERT_EQ(restored.size(), 2u);
  EXPECT_DOUBLE_EQ(restored[1].train_loss, done[1].train_loss);
  EXPECT_TRUE(torch::equal(first.HeadParameters()[0], second.HeadParameters()[0]));
  // Same state, same next step: the optimizer's moments came back too.
  first.SetTraining(true);
  second.SetTraining(true);
  Batch batch{images.slice(0, 0, 8), labels.slice(0, 0, 8)};
  first_trainer.Step(batch, nullptr);
  second_trainer.Step(batch, nullptr);
  EXPECT_TRUE(torch::allclose(first.HeadParameters()[0], second.HeadParameters()[0]));
}

TEST(TrainerTest, NoCheckpointMeansNoEpochs) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 2, 1);
  Trainer trainer(model, Options(1));
  EXPECT_TRUE(trainer.LoadCheckpoint(dir.Sub("nothing")).empty());
}

TEST(TrainerTest, UnknownDeviceIsAnError) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 2, 1);
  TrainOptions options = Options(1);
  options.device = "tpu:7";
  EXPECT_THROW(Trainer(model, options), EngineError);
}

// ---------------------------------------------------------------- schedules

TrainOptions Scheduled(LrSchedule schedule, int epochs, int warmup_epochs) {
  TrainOptions options = Options(epochs);
  options.lr_schedule = schedule;
  options.warmup_epochs = warmup_epochs;
  return options;
}

TEST(LearningRateFactorTest, WarmupRisesLinearlyBatchByBatch) {
  const TrainOptions options = Scheduled(LrSchedule::kConstant, 5, 2);
  // 4 batches an epoch: 8 warmup batches reach the base rate at the 8th.
  EXPECT_DOUBLE_EQ(LearningRateFactor(options, 0, 4), 1.0 / 8);
  EXPECT_DOUBLE_EQ(LearningRateFactor(options, 3, 4), 4.0 / 8);
  EXPECT_DOUBLE_EQ(LearningRateFactor(options, 7, 4), 1.0);
  EXPECT_DOUBLE_EQ(LearningRateFactor(options, 8, 4), 1.0);
  EXPECT_DOUBLE_EQ(LearningRateFactor(options, 19, 4), 1.0);
}

TEST(LearningRateFactorTest, StepDecaysEveryStepEpochsAfterWarmup) {
  TrainOptions options = Scheduled(LrSchedule::kStep, 8, 1);
  options.step_epochs = 2;
  options.step_gamma = 0.5;
  const int64_t per_epoch = 3;
  auto at_epoch = [&](int epoch, int64_t batch) {
    return LearningRateFactor(options, (epoch - 1) * per_epoch + batch, per_epoch);
  };
  EXPECT_DOUBLE_EQ(at_epoch(1, 0), 1.0 / 3);  // warmup
  EXPECT_DOUBLE_EQ(at_epoch(2, 0), 1.0);
  EXPECT_DOUBLE_EQ(at_epoch(3, 2), 1.0);
  EXPECT_DOUBLE_EQ(at_epoch(4, 0), 0.5);
  EXPECT_DOUBLE_EQ(at_epoch(5, 2), 0.5);
  EXPECT_DOUBLE_EQ(at_epoch(6, 1), 0.25);
  EXPECT_DOUBLE_EQ(at_epoch(8, 2), 0.125);
}

TEST(LearningRateFactorTest, CosineFallsFromBaseToTheFloorAtTheLastBatch) {
  TrainOptions options = Scheduled(LrSchedule::kCosine, 3, 1);
  options.learning_rate = 0.1;
  options.min_learning_rate = 0.01;
  // 2 batches an epoch: warmup is steps 0-1, the cosine runs over steps 2-5.
  EXPECT_DOUBLE_EQ(LearningRateFactor(options, 1, 2), 1.0);
  EXPECT_DOUBLE_EQ(LearningRateFactor(options, 2, 2), 1.0);
  const double floor = 0.1;
  EXPECT_DOUBLE_EQ(LearningRateFactor(options, 5, 2), floor);
  const double third = floor + (1 - floor) * 0.5 * (1 + std::cos(M_PI / 3));
  EXPECT_DOUBLE_EQ(LearningRateFactor(options, 3, 2), third);
  EXPECT_GT(LearningRateFactor(options, 3, 2), LearningRateFactor(options, 4, 2));
}

TEST(TrainerTest, EpochsReportTheScheduledRateOfTheirLastBatch) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 2, 1);
  TrainOptions options = Scheduled(LrSchedule::kCosine, 3, 1);
  options.learning_rate = 0.02;
  options.min_learning_rate = 0.002;
  Trainer trainer(model, options);
  auto [images, labels] = BrightOrDark(32, 1);
  TensorSource train(images, labels, 8, /*shuffle=*/true, 1);  // 4 batches an epoch
  RecordingObserver observer;
  const std::vector<EpochStats> epochs = trainer.Run(train, nullptr, observer).epochs;
  ASSERT_EQ(epochs.size(), 3u);
  EXPECT_DOUBLE_EQ(epochs[0].learning_rate, 0.02);  // end of warmup
  EXPECT_DOUBLE_EQ(epochs[1].learning_rate, 0.02 * LearningRateFactor(options, 7, 4));
  EXPECT_DOUBLE_EQ(epochs[2].learning_rate, 0.002);
  EXPECT_LT(epochs[1].learning_rate, epochs[0].learning_rate);
}

// Two runs of four epochs: one straight through, one stopped after two and
// resumed from its checkpoint by a new trainer. Everything the schedule and
// the random draws depend on comes back, so the last two epochs match.
TEST(TrainerTest, ResumedRunContinuesTheScheduleExactly) {
  TempDir dir;
  const std::string backbone = WriteTinyBackbone(dir.path(), 7, /*dropout=*/true);
  auto [images, labels] = BrightOrDark(32, 1);
  TrainOptions options = Scheduled(LrSchedule::kStep, 4, 1);
  options.step_epochs = 1;
  options.step_gamma = 0.5;
  options.seed = 5;

  TransferModel straight_model(backbone, TinyManifest(), 2, 1);
  Trainer straight(straight_model, options);
  TensorSource straight_train(images, labels, 8, true, 1);
  RecordingObserver straight_observer;
  const std::vector<EpochStats> expected = straight.Run(straight_train, nullptr, straight_observer).epochs;

  TransferModel first_model(backbone, TinyManifest(), 2, 1);
  Trainer first(first_model, options);
  TensorSource first_train(images, labels, 8, true, 1);
  RecordingObserver first_observer;
  first_observer.stop_after_epochs = 2;
  EXPECT_EQ(first.Run(first_train, nullptr, first_observer).outcome.kind,
            RunOutcome::Kind::kCancelled);
  ASSERT_EQ(first_observer.epochs.size(), 2u);
  first.SaveCheckpoint(dir.path(), first_observer.epochs);

  TransferModel resumed_model(backbone, TinyManifest(), 2, 99);
  Trainer resumed(resumed_model, options);
  ASSERT_EQ(resumed.LoadCheckpoint(dir.path()).size(), 2u);
  TensorSource resumed_train(images, labels, 8, true, 1);
  RecordingObserver resumed_observer;
  const std::vector<EpochStats> rest = resumed.Run(resumed_train, nullptr, resumed_observer, 3).epochs;
  ASSERT_EQ(rest.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(rest[i].epoch, expected[i + 2].epoch);
    EXPECT_DOUBLE_EQ(rest[i].learning_rate, expected[i + 2].learning_rate);
    EXPECT_DOUBLE_EQ(rest[i].train_loss, expected[i + 2].train_loss);
    EXPECT_DOUBLE_EQ(rest[i].train_accuracy, expected[i + 2].train_accuracy);
  }
  EXPECT_DOUBLE_EQ(rest[1].learning_rate, 0.01 * 0.25);
}

// ---------------------------------------------------------------- the seed

// Trains on `train_images` bright-or-dark images (shuffled) and validates
// on `val_images` others.
std::vector<EpochStats> RunOnBrightOrDark(Trainer& trainer, int64_t train_images,
                                          int64_t val_images, int64_t batch_size) {
  auto [images, labels] = BrightOrDark(train_images, 1);
  auto [held_out_images, held_out_labels] = BrightOrDark(val_images, 2);
  TensorSource train(images, labels, batch_size, /*shuffle=*/true, 1);
  TensorSource val(held_out_images, held_out_labels, batch_size, /*shuffle=*/false, 1);
  RecordingObserver observer;
  return trainer.Run(train, &val, observer).epochs;
}

std::vector<EpochStats> RunWithTrainerSeed(const std::string& backbone, uint64_t seed) {
  TransferModel model(backbone, TinyManifest(), 2, 1);
  TrainOptions options = Options(2);
  options.seed = seed;
  Trainer trainer(model, options);
  return RunOnBrightOrDark(trainer, 32, 16, 8);
}

TEST(TrainerTest, TheSeedMakesDropoutRepeatExactly) {
  TempDir dir;
  const std::string backbone = WriteTinyBackbone(dir.path(), 7, /*dropout=*/true);
  const std::vector<EpochStats> first = RunWithTrainerSeed(backbone, 3);
  const std::vector<EpochStats> again = RunWithTrainerSeed(backbone, 3);
  const std::vector<EpochStats> other = RunWithTrainerSeed(backbone, 4);
  ASSERT_EQ(first.size(), 2u);
  ASSERT_EQ(again.size(), 2u);
  ASSERT_EQ(other.size(), 2u);
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(first[i].train_loss, again[i].train_loss) << "epoch " << i + 1;
    EXPECT_EQ(first[i].val_loss, again[i].val_loss) << "epoch " << i + 1;
  }
  // Only the trainer's seed differs: the dropout masks, hence the losses.
  EXPECT_NE(first[0].train_loss, other[0].train_loss);
}

// ---------------------------------------------------------------- optimizers and loss

class OptimizerTest : public ::testing::TestWithParam<OptimizerKind> {};

TEST_P(OptimizerTest, LearnsASeparableProblem) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 2, 1);
  TrainOptions options = Options(4);
  options.optimizer = GetParam();
  options.nesterov = GetParam() == OptimizerKind::kSgd;
  options.weight_decay = 0.01;
  options.learning_rate = GetParam() == OptimizerKind::kSgd ? 0.05 : 0.01;
  Trainer trainer(model, options);
  const std::vector<EpochStats> epochs = RunOnBrightOrDark(trainer, 64, 32, 16);
  EXPECT_GT(epochs.back().val_accuracy, 0.9);
  EXPECT_LT(epochs.back().train_loss, epochs.front().train_loss);
}

INSTANTIATE_TEST_SUITE_P(Kinds, OptimizerTest,
                         ::testing::Values(OptimizerKind::kSgd, OptimizerKind::kAdam,
                                           OptimizerKind::kAdamW));

TEST(TrainerTest, AdamWDecouplesWeightDecayFromAdam) {
  // Identical models and batch; only the optimizer differs. With a large
  // decay, Adam folds it into the gradient (then normalized away) while
  // AdamW shrinks the weights directly, so their steps differ.
  TempDir dir;
  const std::string backbone = WriteTinyBackbone(dir.path());
  auto [images, labels] = BrightOrDark(8, 1);
  std::vector<torch::Tensor> heads;
  for (OptimizerKind kind : {OptimizerKind::kAdam, OptimizerKind::kAdamW}) {
    TransferModel model(backbone, TinyManifest(), 2, 1);
    TrainOptions options = Options(1);
    options.optimizer = kind;
    options.weight_decay = 0.5;
    Trainer trainer(model, options);
    model.SetTraining(true);
    trainer.Step(Batch{images, labels}, nullptr);
    heads.push_back(model.HeadParameters()[0].clone());
  }
  EXPECT_FALSE(torch::allclose(heads[0], heads[1]));
}

std::string ConstructionError(const TrainOptions& options, int64_t classes = 2) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), classes, 1);
  try {
    Trainer trainer(model, options);
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
    return error.what();
  }
  return "";
}

TEST(TrainerTest, OptionsThatCannotWorkAreNamed) {
  TrainOptions nesterov = Options(1);
  nesterov.optimizer = OptimizerKind::kSgd;
  nesterov.nesterov = true;
  nesterov.momentum = 0;
  EXPECT_NE(ConstructionError(nesterov).find("training.nesterov"), std::string::npos);
  nesterov.optimizer = OptimizerKind::kAdam;
  nesterov.momentum = 0.9;
  EXPECT_NE(ConstructionError(nesterov).find("training.nesterov"), std::string::npos);
  TrainOptions smoothing = Options(1);
  smoothing.label_smoothing = 1.0;
  EXPECT_NE(ConstructionError(smoothing).find("training.label_smoothing"), std::string::npos);
  TrainOptions weights = Options(1);
  weights.class_weights = {1.0, 2.0, 3.0};
  EXPECT_NE(ConstructionError(weights).find("training.class_weights has 3 weights for 2 classes"),
            std::string::npos);
  TrainOptions warmup = Options(2);
  warmup.warmup_epochs = 3;
  EXPECT_NE(ConstructionError(warmup).find("training.warmup_epochs"), std::string::npos);
}

TEST(TrainerTest, ClippingBoundsTheStepOfEveryTrainedParameter) {
  // Plain SGD at lr 1 moves the parameters by exactly the (clipped)
  // gradient, so the step's norm shows the clip.
  TempDir dir;
  const std::string backbone = WriteTinyBackbone(dir.path());
  auto [images, labels] = BrightOrDark(8, 1);
  auto step_norm = [&](double clip) {
    TransferModel model(backbone, TinyManifest(), 2, 1);
    TrainOptions options = Options(1);
    options.optimizer = OptimizerKind::kSgd;
    options.momentum = 0;
    options.learning_rate = 1.0;
    options.clip_grad_norm = clip;
    Trainer trainer(model, options);
    model.SetTraining(true);
    std::vector<torch::Tensor> before;
    std::vector<torch::Tensor> parameters = model.HeadParameters();
    for (const torch::Tensor& p : model.TrainableBackboneParameters()) parameters.push_back(p);
    for (const torch::Tensor& p : parameters) before.push_back(p.detach().clone());
    trainer.Step(Batch{images, labels}, nullptr);
    double squared = 0;
    for (size_t i = 0; i < parameters.size(); ++i) {
      squared += (parameters[i].detach() - before[i]).pow(2).sum().item<double>();
    }
    return std::sqrt(squared);
  };
  const double unclipped = step_norm(0);
  const double clipped = step_norm(0.01);
  EXPECT_GT(unclipped, 0.02) << "the test needs a gradient larger than the clip";
  EXPECT_NEAR(clipped, 0.01, 1e-4);
}

// The loss of one step, and the same loss computed here from the logits the
// model gives before that step.
std::pair<double, torch::Tensor> StepLossAndLogits(const TrainOptions& options,
                                                   const torch::Tensor& images,
                                                   const torch::Tensor& labels) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 2, 1);
  Trainer trainer(model, options);
  model.SetTraining(true);
  torch::Tensor logits;
  {
    torch::NoGradGuard no_grad;
    logits = model.Forward(images);
  }
  const double loss = trainer.Step(Batch{images, labels}, nullptr).item<double>();
  return {loss, logits};
}

TEST(TrainerTest, LabelSmoothingEntersTheLoss) {
  auto [images, labels] = BrightOrDark(8, 1);
  TrainOptions options = Options(1);
  options.label_smoothing = 0.2;
  const auto [loss, logits] = StepLossAndLogits(options, images, labels);
  // Smoothing spreads 0.2 of the target's mass evenly over both classes.
  const torch::Tensor log_probabilities = torch::log_softmax(logits, 1);
  const torch::Tensor target_term = -log_probabilities.gather(1, labels.view({-1, 1})).squeeze(1);
  const torch::Tensor uniform_term = -log_probabilities.mean(1);
  const double expected = (0.8 * target_term + 0.2 * uniform_term).mean().item<double>();
  EXPECT_NEAR(loss, expected, 1e-5);
  EXPECT_GT(std::abs(loss - target_term.mean().item<double>()), 1e-4);
}

TEST(TrainerTest, ClassWeightsEnterTheLoss) {
  auto [images, labels] = BrightOrDark(8, 1);
  TrainOptions options = Options(1);
  options.class_weights = {1.0, 3.0};
  const auto [loss, logits] = StepLossAndLogits(options, images, labels);
  // A weighted mean: each image's loss times its class's weight, over the
  // sum of those weights.
  const torch::Tensor per_image =
      -torch::log_softmax(logits, 1).gather(1, labels.view({-1, 1})).squeeze(1);
  const torch::Tensor weights = torch::tensor({1.0f, 3.0f}).index_select(0, labels);
  const double expected = ((per_image * weights).sum() / weights.sum()).item<double>();
  EXPECT_NEAR(loss, expected, 1e-5);
  EXPECT_GT(std::abs(loss - per_image.mean().item<double>()), 1e-4);
}

TEST(TrainerTest, LearningRateThatMakesTheLossNaNNamesEpochAndBatch) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 2, 1);
  TrainOptions options = Options(3);
  options.optimizer = OptimizerKind::kSgd;
  options.momentum = 0;
  options.learning_rate = 1e30;
  Trainer trainer(model, options);
  auto [images, labels] = BrightOrDark(32, 1);
  TensorSource train(images, labels, 8, false, 1);
  RecordingObserver observer;
  const std::string error = FailedPreconditionOfRun(trainer, train, observer);
  EXPECT_NE(error.find("loss became NaN at epoch 1, batch "), std::string::npos) << error;
  EXPECT_NE(error.find("training.learning_rate"), std::string::npos) << error;
  EXPECT_TRUE(observer.epochs.empty());
}

}  // namespace
}  // namespace tl::engine
