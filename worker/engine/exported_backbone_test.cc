// Backbones written by tools/export_backbone.py (run by the ctest fixture
// tools.export_backbones) load in the engine, agree with their manifests and
// train under every strategy. argv[1] is the folder they were written to.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "worker/engine/tensor_source.h"
#include "worker/engine/trainer.h"
#include "worker/engine/transfer_model.h"

namespace tl::engine {
namespace {

std::string g_backbone_dir;

class ExportedBackboneTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ExportedBackboneTest, LoadsTrainsAndExports) {
  const std::string path = g_backbone_dir + "/" + GetParam() + ".pt";
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " was not exported";
  const BackboneManifest manifest = ReadManifest(ManifestPathFor(path));
  EXPECT_EQ(manifest.architecture, GetParam());
  for (Strategy strategy : {Strategy::kFeatureExtraction, Strategy::kFineTune, Strategy::kFull}) {
    TransferModel model(path, manifest, 3, 1);
    TrainOptions options;
    options.strategy = strategy;
    options.unfreeze_groups = static_cast<int>(manifest.layer_groups.size());
    options.optimizer = OptimizerKind::kSgd;
    options.learning_rate = 0.01;
    Trainer trainer(model, options);
    model.SetTraining(true);
    if (strategy == Strategy::kFeatureExtraction) {
      EXPECT_TRUE(model.TrainableBackboneParameters().empty());
    } else {
      // Every parameter sits in some layer group, so unfreezing all of them
      // trains the whole backbone.
      EXPECT_EQ(model.TrainableBackboneParameters().size(), model.backbone().parameters().size());
    }
    torch::manual_seed(2);
    // A small image keeps the test quick; every exported network pools
    // globally, so any size above its total stride works.
    const int side = std::min(manifest.input_size, 64);
    const torch::Tensor head_before = model.HeadParameters()[0].clone();
    const double loss =
        trainer.Step(Batch{torch::randn({4, 3, side, side}), torch::tensor({0, 1, 2, 0})}, nullptr)
            .item<double>();
    EXPECT_TRUE(std::isfinite(loss)) << StrategyName(strategy);
    EXPECT_FALSE(torch::equal(head_before, model.HeadParameters()[0])) << StrategyName(strategy);
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, ExportedBackboneTest,
                         ::testing::Values("smallcnn", "resnet18", "mobilenet_v3_small"));

}  // namespace
}  // namespace tl::engine

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc < 2) {
    std::cerr << "usage: exported_backbone_test BACKBONE_DIR\n";
    return 2;
  }
  tl::engine::g_backbone_dir = argv[1];
  return RUN_ALL_TESTS();
}
