// Backbones written by tools/export_backbone.py (run by the ctest fixture
// tools.export_backbones) load in the engine, agree with their manifests and
// train under every strategy. argv: the folder they were written to, then the
// architectures exported there.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

#include "data/tensor_source.h"
#include "model/transfer_model.h"
#include "train/trainer.h"

namespace tl::engine {
namespace {

std::string g_backbone_dir;
std::vector<std::string> g_architectures;

// A small image keeps the test quick; every exported network pools globally,
// so any size above its total stride works, except that Inception v3's
// unpadded stem needs 75 px.
int TestImageSide(const BackboneManifest& manifest) {
  return manifest.architecture == "inception_v3" ? 80 : std::min(manifest.input_size, 64);
}

class ExportedBackboneTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ExportedBackboneTest, LoadsAndTrainsOneStepUnderEveryStrategy) {
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
    const int side = TestImageSide(manifest);
    // The head's bias: a randomly initialised EfficientNet's features are
    // about 1e-14 in eval mode, too small to move the head's weights in fp32.
    const torch::Tensor head_bias_before = model.HeadParameters()[1].clone();
    // A batch of two: BatchNorm in training mode needs more than one value
    // per channel.
    const double loss =
        trainer.Step(Batch{torch::randn({2, 3, side, side}), torch::tensor({0, 2})}, nullptr)
            .item<double>();
    EXPECT_TRUE(std::isfinite(loss)) << StrategyName(strategy);
    EXPECT_FALSE(torch::equal(head_bias_before, model.HeadParameters()[1]))
        << StrategyName(strategy);
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, ExportedBackboneTest, ::testing::ValuesIn(g_architectures),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace tl::engine

int main(int argc, char** argv) {
  // Parameters are read when InitGoogleTest registers the tests, so the
  // architectures must be known before it runs.
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]).rfind("--gtest", 0) != 0) positional.push_back(argv[i]);
  }
  if (positional.size() < 2) {
    std::cerr << "usage: exported_backbone_test BACKBONE_DIR ARCHITECTURE...\n";
    return 2;
  }
  tl::engine::g_backbone_dir = positional[0];
  tl::engine::g_architectures.assign(positional.begin() + 1, positional.end());
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
