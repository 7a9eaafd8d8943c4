#include "model/transfer_model.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "base/errors.h"
#include "common/testing/temp_dir.h"
#include "data/tensor_source.h"
#include "testing/tiny_backbone.h"
#include "train/trainer.h"

namespace tl::engine {
namespace {

using testing::kTinyFeatureDim;
using testing::kTinyInputSize;
using ::tl::testing::TempDir;
using testing::TinyManifest;
using testing::WriteTinyBackbone;

// Copies of every backbone parameter and buffer, by name.
std::map<std::string, torch::Tensor> Snapshot(const torch::jit::Module& module) {
  std::map<std::string, torch::Tensor> copies;
  for (const auto& named : module.named_parameters()) copies[named.name] = named.value.clone();
  for (const auto& named : module.named_buffers()) copies[named.name] = named.value.clone();
  return copies;
}

std::set<std::string> ChangedSince(const std::map<std::string, torch::Tensor>& before,
                                   const torch::jit::Module& module) {
  std::set<std::string> changed;
  for (const auto& [name, tensor] : Snapshot(module)) {
    if (!torch::equal(before.at(name), tensor)) changed.insert(name);
  }
  return changed;
}

Batch RandomBatch(int64_t n = 6) {
  return Batch{torch::randn({n, 3, kTinyInputSize, kTinyInputSize}),
               torch::randint(0, 3, {n}, torch::kInt64)};
}

TrainOptions OptionsFor(Strategy strategy, int unfreeze_groups = 1) {
  TrainOptions options;
  options.strategy = strategy;
  options.unfreeze_groups = unfreeze_groups;
  options.optimizer = OptimizerKind::kSgd;
  options.learning_rate = 0.1;
  options.backbone_lr_scale = 1.0;
  return options;
}

std::set<std::string> StepAndReportChanges(TransferModel& model, Strategy strategy,
                                           int unfreeze_groups = 1) {
  Trainer trainer(model, OptionsFor(strategy, unfreeze_groups));
  model.SetTraining(true);
  const auto before = Snapshot(model.backbone());
  const auto head_before = model.HeadParameters()[0].clone();
  trainer.Step(RandomBatch(), nullptr);
  EXPECT_FALSE(torch::equal(head_before, model.HeadParameters()[0])) << "the head must train";
  return ChangedSince(before, model.backbone());
}

TEST(TransferModelTest, FeatureExtractionFreezesWeightsAndBatchNormStatistics) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 3, 1);
  EXPECT_TRUE(StepAndReportChanges(model, Strategy::kFeatureExtraction).empty());
  EXPECT_TRUE(model.TrainableBackboneParameters().empty());
}

TEST(TransferModelTest, FineTuneTrainsOnlyTheLastGroups) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 3, 1);
  const std::set<std::string> changed = StepAndReportChanges(model, Strategy::kFineTune, 1);
  EXPECT_EQ(changed, (std::set<std::string>{"block.weight", "block.bias"}));
}

TEST(TransferModelTest, FullTrainsEverythingAndUpdatesStatistics) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 3, 1);
  const std::set<std::string> changed = StepAndReportChanges(model, Strategy::kFull);
  EXPECT_TRUE(changed.count("stem.weight"));
  EXPECT_TRUE(changed.count("stem.running_mean"));
  EXPECT_TRUE(changed.count("block.weight"));
}

TEST(TransferModelTest, TooManyUnfrozenGroupsIsAnError) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 3, 1);
  try {
    model.Configure(Strategy::kFineTune, 3);
    FAIL() << "expected an error";
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("unfreeze_groups is 3"), std::string::npos);
    EXPECT_NE(std::string(error.what()).find("has 2 layer groups"), std::string::npos);
  }
}

TEST(TransferModelTest, ManifestThatDisagreesWithTheBackboneIsRejected) {
  TempDir dir;
  const std::string path = WriteTinyBackbone(dir.path());
  BackboneManifest wrong_dim = TinyManifest();
  wrong_dim.feature_dim = 32;
  EXPECT_THROW(TransferModel(path, wrong_dim, 3, 1), EngineError);
  BackboneManifest wrong_module = TinyManifest();
  wrong_module.layer_groups[1].modules = {"layer9"};
  try {
    TransferModel(path, wrong_module, 3, 1);
    FAIL() << "expected an error";
  } catch (const EngineError& error) {
    EXPECT_NE(std::string(error.what()).find("\"layer9\""), std::string::npos);
  }
}

TEST(TransferModelTest, BackboneThatDoesNotLoadIsNamed) {
  TempDir dir;
  const std::string path = dir.Sub("broken.pt");
  std::ofstream(path) << "not a torchscript archive";
  try {
    TransferModel(path, TinyManifest(), 3, 1);
    FAIL() << "expected an error";
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find(path), std::string::npos);
  }
}

TEST(TransferModelTest, ExportedClassifierComputesTheSameAndCarriesClassNames) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 3, 1);
  Trainer trainer(model, OptionsFor(Strategy::kFull));
  model.SetTraining(true);
  trainer.Step(RandomBatch(), nullptr);
  model.ExportClassifier(dir.Sub("model.pt"), {"a", "b", "c"});

  torch::jit::Module exported = torch::jit::load(dir.Sub("model.pt"));
  torch::NoGradGuard no_grad;
  model.SetTraining(false);
  const torch::Tensor images = RandomBatch().images;
  EXPECT_TRUE(torch::allclose(exported.forward({images}).toTensor(), model.Forward(images)));
  const auto names = exported.attr("class_names").toList();
  ASSERT_EQ(names.size(), 3u);
  EXPECT_EQ(names.get(2).toStringRef(), "c");
  EXPECT_EQ(exported.attr("input_size").toInt(), kTinyInputSize);
}

TEST(TransferModelTest, ExportedBackboneServesAsANewBackbone) {
  TempDir dir;
  TransferModel model(WriteTinyBackbone(dir.path()), TinyManifest(), 3, 1);
  Trainer trainer(model, OptionsFor(Strategy::kFull));
  model.SetTraining(true);
  trainer.Step(RandomBatch(), nullptr);
  model.ExportBackbone(dir.Sub("trained.pt"), "trained by a test");

  const BackboneManifest manifest = ReadManifest(dir.Sub("trained.json"));
  EXPECT_EQ(manifest.source, "trained by a test");
  TransferModel reloaded(dir.Sub("trained.pt"), manifest, 5, 2);
  torch::NoGradGuard no_grad;
  model.backbone().eval();
  reloaded.backbone().eval();
  const torch::Tensor images = RandomBatch().images;
  EXPECT_TRUE(torch::allclose(model.backbone().forward({images}).toTensor(),
                              reloaded.backbone().forward({images}).toTensor()));
  EXPECT_EQ(reloaded.Forward(images).size(1), 5);
}

}  // namespace
}  // namespace tl::engine
