#include "train/early_stopping.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "base/errors.h"
#include "common/testing/temp_dir.h"
#include "data/tensor_source.h"
#include "testing/tiny_backbone.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;

EpochStats Epoch(int epoch, double val_loss, double val_accuracy = 0) {
  EpochStats stats;
  stats.epoch = epoch;
  stats.val_loss = val_loss;
  stats.val_accuracy = val_accuracy;
  stats.val_macro_f1 = val_accuracy / 2;
  return stats;
}

EarlyStoppingOptions Options(int patience, double min_delta = 0) {
  EarlyStoppingOptions options;
  options.enabled = true;
  options.patience = patience;
  options.min_delta = min_delta;
  return options;
}

TEST(EarlyStoppingTest, StopsAfterPatienceEpochsWithoutALowerLoss) {
  EarlyStopping stopping(Options(2));
  EXPECT_TRUE(stopping.Update(Epoch(1, 1.0)));
  EXPECT_TRUE(stopping.Update(Epoch(2, 0.8)));
  EXPECT_FALSE(stopping.Update(Epoch(3, 0.8)));  // equal is no improvement
  EXPECT_FALSE(stopping.ShouldStop());
  EXPECT_FALSE(stopping.Update(Epoch(4, 0.9)));
  EXPECT_TRUE(stopping.ShouldStop());
  EXPECT_EQ(stopping.best_epoch(), 2);
  EXPECT_DOUBLE_EQ(stopping.best_value(), 0.8);
  EXPECT_EQ(stopping.epochs_since_best(), 2);
}

TEST(EarlyStoppingTest, ImprovementResetsTheCount) {
  EarlyStopping stopping(Options(2));
  stopping.Update(Epoch(1, 1.0));
  stopping.Update(Epoch(2, 1.1));
  EXPECT_TRUE(stopping.Update(Epoch(3, 0.5)));
  EXPECT_EQ(stopping.epochs_since_best(), 0);
  EXPECT_FALSE(stopping.ShouldStop());
}

TEST(EarlyStoppingTest, MinDeltaMustBeBeaten) {
  EarlyStopping stopping(Options(5, 0.1));
  stopping.Update(Epoch(1, 1.0));
  EXPECT_FALSE(stopping.Update(Epoch(2, 0.95)));
  EXPECT_TRUE(stopping.Update(Epoch(3, 0.85)));
  EXPECT_EQ(stopping.best_epoch(), 3);
}

TEST(EarlyStoppingTest, MaximizesAccuracyAndF1) {
  EarlyStoppingOptions options = Options(1);
  options.metric = EarlyStoppingMetric::kValMacroF1;
  options.maximize = true;
  EarlyStopping stopping(options);
  stopping.Update(Epoch(1, 9, 0.5));
  EXPECT_TRUE(stopping.Update(Epoch(2, 9, 0.6)));
  EXPECT_DOUBLE_EQ(stopping.best_value(), 0.3);
  EXPECT_FALSE(stopping.Update(Epoch(3, 0.1, 0.4)));
  EXPECT_TRUE(stopping.ShouldStop());
  EXPECT_STREQ(MetricName(options.metric), "val_macro_f1");
}

TEST(EarlyStoppingTest, NonFiniteValuesNeverImprove) {
  EarlyStopping stopping(Options(3));
  EXPECT_FALSE(stopping.Update(Epoch(1, std::numeric_limits<double>::quiet_NaN())));
  EXPECT_EQ(stopping.best_epoch(), 0);
  EXPECT_TRUE(stopping.Update(Epoch(2, 2.0)));
  EXPECT_FALSE(stopping.Update(Epoch(3, std::numeric_limits<double>::infinity())));
  EXPECT_EQ(stopping.best_epoch(), 2);
}

TEST(EarlyStoppingTest, DisabledNeverStops) {
  EarlyStopping stopping(EarlyStoppingOptions{});
  for (int epoch = 1; epoch <= 20; ++epoch) stopping.Update(Epoch(epoch, 1.0));
  EXPECT_FALSE(stopping.ShouldStop());
}

TEST(CheckEarlyStoppingTest, NamesTheFieldOutOfBounds) {
  EXPECT_NO_THROW(CheckEarlyStopping(Options(5)));
  for (const auto& [options, field] :
       {std::pair{Options(0), "training.early_stopping.patience"},
        std::pair{Options(2, -1), "training.early_stopping.min_delta"}}) {
    try {
      CheckEarlyStopping(options);
      ADD_FAILURE() << field;
    } catch (const EngineError& error) {
      EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
      EXPECT_NE(std::string(error.what()).find(field), std::string::npos) << error.what();
    }
  }
}

torch::Tensor HeadOf(TransferModel& model) { return model.HeadParameters()[0].detach().clone(); }

TEST(BestWeightsTest, SavesRestoresAndKeepsOnlyTheBest) {
  tl::testing::TempDir dir;
  TransferModel model(testing::WriteTinyBackbone(dir.path()), testing::TinyManifest(), 2, 1);
  BestWeights best(dir.path() + "/out");
  best.Save(model, 1);
  const torch::Tensor saved = HeadOf(model);
  {
    torch::NoGradGuard no_grad;
    model.HeadParameters()[0].add_(1.0);
  }
  best.Save(model, 2);
  best.KeepOnly(1);
  EXPECT_TRUE(fs::exists(best.PathFor(1)));
  EXPECT_FALSE(fs::exists(best.PathFor(2)));
  best.Restore(model, 1, torch::kCPU);
  EXPECT_TRUE(torch::equal(HeadOf(model), saved));
  EXPECT_THROW(best.Restore(model, 2, torch::kCPU), EngineError);
}

// Ends the run after `epochs` epochs through TrainingDone.
class DoneAfter : public TrainObserver {
 public:
  explicit DoneAfter(int epochs) : epochs_(epochs) {}
  void OnEpoch(const EpochStats& stats) override { seen.push_back(stats.epoch); }
  bool TrainingDone() override { return static_cast<int>(seen.size()) >= epochs_; }
  std::vector<int> seen;

 private:
  int epochs_;
};

TEST(TrainerTrainingDoneTest, EndsTheRunAfterTheEpoch) {
  tl::testing::TempDir dir;
  TransferModel model(testing::WriteTinyBackbone(dir.path()), testing::TinyManifest(), 2, 1);
  TrainOptions options;
  options.epochs = 5;
  Trainer trainer(model, options);
  torch::Tensor images = torch::randn({8, 3, testing::kTinyInputSize, testing::kTinyInputSize});
  torch::Tensor labels = torch::arange(8, torch::kInt64).remainder(2);
  TensorSource train(images, labels, 4, /*shuffle=*/false, 1);
  DoneAfter observer(2);
  EXPECT_EQ(trainer.Run(train, nullptr, observer).epochs.size(), 2u);
  EXPECT_EQ(observer.seen, (std::vector<int>{1, 2}));
}

}  // namespace
}  // namespace tl::engine
