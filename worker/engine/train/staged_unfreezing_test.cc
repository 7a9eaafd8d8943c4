#include "train/staged_unfreezing.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "base/errors.h"
#include "common/testing/temp_dir.h"
#include "data/tensor_source.h"
#include "testing/tiny_backbone.h"

namespace tl::engine {
namespace {

TrainOptions Staged(int unfreeze_groups, int head_only_epochs, int unfreeze_every_epochs,
                    int epochs = 10) {
  TrainOptions options;
  options.strategy = Strategy::kFineTune;
  options.unfreeze_groups = unfreeze_groups;
  options.head_only_epochs = head_only_epochs;
  options.unfreeze_every_epochs = unfreeze_every_epochs;
  options.epochs = epochs;
  return options;
}

std::vector<int> GroupsByEpoch(const TrainOptions& options) {
  std::vector<int> groups;
  for (int epoch = 1; epoch <= options.epochs; ++epoch) {
    groups.push_back(UnfrozenGroupsAt(options, epoch));
  }
  return groups;
}

TEST(UnfrozenGroupsAtTest, HeadOnlyThenAllAtOnce) {
  EXPECT_EQ(GroupsByEpoch(Staged(3, 2, 0, 5)), (std::vector<int>{0, 0, 3, 3, 3}));
}

TEST(UnfrozenGroupsAtTest, OneMoreGroupEveryKEpochsUpToTheLimit) {
  EXPECT_EQ(GroupsByEpoch(Staged(3, 1, 2, 8)), (std::vector<int>{0, 1, 1, 2, 2, 3, 3, 3}));
  EXPECT_EQ(GroupsByEpoch(Staged(2, 0, 1, 4)), (std::vector<int>{1, 2, 2, 2}));
}

TEST(UnfrozenGroupsAtTest, UnstagedRunsKeepTheirGroups) {
  EXPECT_FALSE(IsStaged(Staged(2, 0, 0)));
  EXPECT_EQ(GroupsByEpoch(Staged(2, 0, 0, 3)), (std::vector<int>{2, 2, 2}));
}

void ExpectRejected(const TrainOptions& options, const std::string& field) {
  try {
    CheckStagedUnfreezing(options);
    ADD_FAILURE() << "accepted; expected an error naming " << field;
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find(field), std::string::npos) << error.what();
  }
}

TEST(CheckStagedUnfreezingTest, NamesTheFieldAtFault) {
  EXPECT_NO_THROW(CheckStagedUnfreezing(Staged(2, 9, 3, 10)));
  ExpectRejected(Staged(2, 10, 0, 10), "training.head_only_epochs is 10");
  ExpectRejected(Staged(2, -1, 0), "training.head_only_epochs");
  ExpectRejected(Staged(2, 0, -2), "training.unfreeze_every_epochs");
  TrainOptions full = Staged(1, 2, 0);
  full.strategy = Strategy::kFull;
  ExpectRejected(full, "FINE_TUNE");
}

// Copies of every backbone parameter and buffer, by name.
std::map<std::string, torch::Tensor> Snapshot(TransferModel& model) {
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& named : model.backbone().named_parameters(/*recurse=*/true)) {
    tensors[named.name] = named.value.detach().clone();
  }
  for (const auto& named : model.backbone().named_buffers(/*recurse=*/true)) {
    tensors[named.name] = named.value.detach().clone();
  }
  return tensors;
}

// Whether any tensor of the module at `prefix` ("stem.", "block.") differs.
bool Changed(const std::map<std::string, torch::Tensor>& before,
             const std::map<std::string, torch::Tensor>& after, const std::string& prefix) {
  for (const auto& [name, tensor] : before) {
    if (name.rfind(prefix, 0) == 0 && !torch::equal(tensor, after.at(name))) return true;
  }
  return false;
}

class SnapshotEachEpoch : public TrainObserver {
 public:
  explicit SnapshotEachEpoch(TransferModel& model) : model_(model) {}
  void OnEpoch(const EpochStats&) override { snapshots.push_back(Snapshot(model_)); }
  std::vector<std::map<std::string, torch::Tensor>> snapshots;

 private:
  TransferModel& model_;
};

struct StagedRun {
  tl::testing::TempDir dir;
  TransferModel model;
  torch::Tensor images;
  torch::Tensor labels;

  StagedRun()
      : model(testing::WriteTinyBackbone(dir.path()), testing::TinyManifest(), 2, 1),
        images(torch::randn({16, 3, testing::kTinyInputSize, testing::kTinyInputSize},
                            torch::TensorOptions().dtype(torch::kFloat32))),
        labels(torch::arange(16, torch::kInt64).remainder(2)) {}
};

// The tiny backbone has two groups, stem (with BatchNorm) and block:
// epoch 1 trains the head alone, epoch 2 the block too, epoch 3 the stem.
TrainOptions HeadThenBlockThenStem(double backbone_lr_scale) {
  TrainOptions options = Staged(2, 1, 1, 3);
  options.learning_rate = 0.05;
  options.backbone_lr_scale = backbone_lr_scale;
  return options;
}

TEST(StagedTrainerTest, UnfreezesGroupsEpochByEpochAtTheBackboneRate) {
  torch::manual_seed(3);
  StagedRun run;
  const auto initial = Snapshot(run.model);
  Trainer trainer(run.model, HeadThenBlockThenStem(0.5));
  TensorSource train(run.images, run.labels, 4, /*shuffle=*/true, 1);
  SnapshotEachEpoch observer(run.model);
  trainer.Run(train, nullptr, observer);
  ASSERT_EQ(observer.snapshots.size(), 3u);
  const auto& after1 = observer.snapshots[0];
  const auto& after2 = observer.snapshots[1];
  const auto& after3 = observer.snapshots[2];
  // Frozen groups keep their weights and their BatchNorm statistics.
  EXPECT_FALSE(Changed(initial, after1, "stem."));
  EXPECT_FALSE(Changed(initial, after1, "block."));
  EXPECT_TRUE(Changed(after1, after2, "block."));
  EXPECT_FALSE(Changed(after1, after2, "stem."));
  EXPECT_TRUE(Changed(after2, after3, "stem."));
  EXPECT_TRUE(Changed(after2, after3, "block."));
}

TEST(StagedTrainerTest, UnfrozenGroupsTrainAtTheBackboneRate) {
  // At a backbone rate of 0, unfrozen weights stay (only BatchNorm
  // statistics move): they are in the backbone's parameter group.
  torch::manual_seed(3);
  StagedRun run;
  Trainer trainer(run.model, HeadThenBlockThenStem(0.0));
  TensorSource train(run.images, run.labels, 4, /*shuffle=*/true, 1);
  SnapshotEachEpoch observer(run.model);
  const auto initial = Snapshot(run.model);
  trainer.Run(train, nullptr, observer);
  for (const auto& [name, tensor] : initial) {
    if (name.find("running") != std::string::npos) continue;
    EXPECT_TRUE(torch::equal(tensor, observer.snapshots.back().at(name))) << name;
  }
}

// Saves a checkpoint after epoch `at`.
class CheckpointAt : public TrainObserver {
 public:
  CheckpointAt(Trainer& trainer, std::string dir, int at)
      : trainer_(trainer), dir_(std::move(dir)), at_(at) {}
  void OnEpoch(const EpochStats& stats) override {
    done_.push_back(stats);
    if (stats.epoch == at_) trainer_.SaveCheckpoint(dir_, done_);
  }

 private:
  Trainer& trainer_;
  std::string dir_;
  int at_;
  std::vector<EpochStats> done_;
};

TEST(StagedTrainerTest, AResumedRunContinuesAtItsStage) {
  torch::manual_seed(3);
  StagedRun whole;
  Trainer whole_trainer(whole.model, HeadThenBlockThenStem(0.5));
  TensorSource whole_train(whole.images, whole.labels, 4, /*shuffle=*/true, 1);
  CheckpointAt checkpoint(whole_trainer, whole.dir.path(), 1);
  whole_trainer.Run(whole_train, nullptr, checkpoint);

  torch::manual_seed(3);
  StagedRun resumed;
  Trainer resumed_trainer(resumed.model, HeadThenBlockThenStem(0.5));
  ASSERT_EQ(resumed_trainer.LoadCheckpoint(whole.dir.path()).size(), 1u);
  TensorSource resumed_train(resumed.images, resumed.labels, 4, /*shuffle=*/true, 1);
  TrainObserver quiet;
  resumed_trainer.Run(resumed_train, nullptr, quiet, /*first_epoch=*/2);

  const auto expected = Snapshot(whole.model);
  const auto actual = Snapshot(resumed.model);
  for (const auto& [name, tensor] : expected) {
    EXPECT_TRUE(torch::equal(tensor, actual.at(name))) << name;
  }
  EXPECT_TRUE(torch::equal(whole.model.HeadParameters()[0], resumed.model.HeadParameters()[0]));
}

}  // namespace
}  // namespace tl::engine
