#include "worker/engine/trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "worker/engine/errors.h"
#include "worker/engine/tensor_source.h"
#include "common/testing/temp_dir.h"
#include "worker/engine/testing/tiny_backbone.h"

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
  bool StopRequested() override { return stop_after >= 0 && batches.size() >= size_t(stop_after); }

  std::vector<BatchProgress> batches;
  std::vector<EpochStats> epochs;
  int stop_after = -1;
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

  const std::vector<EpochStats> epochs = trainer.Run(train, &val, observer);

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

TEST(TrainerTest, StopRequestEndsTheRunBetweenBatches) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 2, 1);
  Trainer trainer(model, Options(3));
  auto [images, labels] = BrightOrDark(64, 1);
  TensorSource train(images, labels, 8, true, 1);
  RecordingObserver observer;
  observer.stop_after = 2;
  try {
    trainer.Run(train, nullptr, observer);
    FAIL() << "expected a cancellation";
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kCancelled);
  }
  EXPECT_EQ(observer.batches.size(), 2u);
}

TEST(TrainerTest, NonFiniteLossNamesEpochAndBatch) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 2, 1);
  Trainer trainer(model, Options(1));
  auto [images, labels] = BrightOrDark(32, 1);
  images[20][0][0][0] = std::numeric_limits<float>::quiet_NaN();  // lands in batch 3 of 8-image batches
  TensorSource train(images, labels, 8, /*shuffle=*/false, 1);
  RecordingObserver observer;
  try {
    trainer.Run(train, nullptr, observer);
    FAIL() << "expected a failure";
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kFailedPrecondition);
    EXPECT_NE(std::string(error.what()).find("loss became NaN at epoch 1, batch 3"),
              std::string::npos)
        << error.what();
  }
}

TEST(TrainerTest, CheckpointRestoresWeightsOptimizerAndEpochs) {
  TempDir dir;
  const std::string backbone = WriteTinyBackbone(dir.path());
  auto [images, labels] = BrightOrDark(32, 1);
  TransferModel first(backbone, TinyManifest(), 2, 1);
  Trainer first_trainer(first, Options(2));
  TensorSource train(images, labels, 8, true, 1);
  RecordingObserver observer;
  const std::vector<EpochStats> done = first_trainer.Run(train, nullptr, observer);
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

TEST(TrainerTest, EpochStatsSurviveJson) {
  EpochStats stats;
  stats.epoch = 3;
  stats.val_macro_f1 = 0.75;
  stats.train_images = 12;
  const std::vector<EpochStats> parsed = EpochStatsFromJson(EpochStatsToJson({stats}));
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed[0].epoch, 3);
  EXPECT_DOUBLE_EQ(parsed[0].val_macro_f1, 0.75);
  EXPECT_EQ(parsed[0].train_images, 12);
}

}  // namespace
}  // namespace tl::engine
