// A tiny TorchScript backbone built in C++ for engine tests: a conv + batch
// norm stem and one conv block, global average pooling, 16 features. Real
// BatchNorm statistics let tests see whether frozen modules stay frozen.
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#include <string>

#include "model/manifest.h"

namespace tl::engine::testing {

inline constexpr int kTinyFeatureDim = 16;
inline constexpr int kTinyInputSize = 8;

inline torch::jit::Module MakeConvModule(const std::string& type_name, int64_t in, int64_t out,
                                         bool with_batch_norm) {
  torch::jit::Module module{c10::QualifiedName("__torch__.tl_test." + type_name)};
  module.register_attribute("training", c10::BoolType::get(), true);
  module.register_parameter("weight", torch::randn({out, in, 3, 3}) * 0.3, false);
  module.register_parameter("bias", torch::zeros({out}), false);
  if (with_batch_norm) {
    module.register_parameter("bn_weight", torch::ones({out}), false);
    module.register_parameter("bn_bias", torch::zeros({out}), false);
    module.register_buffer("running_mean", torch::zeros({out}));
    module.register_buffer("running_var", torch::ones({out}));
    module.define(R"JIT(
def forward(self, x: Tensor) -> Tensor:
    y = torch.conv2d(x, self.weight, self.bias, [1, 1], [1, 1])
    y = torch.batch_norm(y, self.bn_weight, self.bn_bias, self.running_mean, self.running_var,
                         self.training, 0.1, 1e-5, False)
    return torch.relu(y)
)JIT");
  } else {
    module.define(R"JIT(
def forward(self, x: Tensor) -> Tensor:
    return torch.relu(torch.conv2d(x, self.weight, self.bias, [1, 1], [1, 1]))
)JIT");
  }
  return module;
}

// With `dropout`, the features pass through dropout (p = 0.5) while
// training: something random for the trainer's seed to govern.
inline torch::jit::Module MakeTinyBackbone(uint64_t seed, bool dropout = false) {
  torch::manual_seed(seed);
  torch::jit::Module backbone{
      c10::QualifiedName(dropout ? "__torch__.tl_test.TinyDropoutBackbone"
                                 : "__torch__.tl_test.TinyBackbone")};
  backbone.register_attribute("training", c10::BoolType::get(), true);
  backbone.register_module("stem", MakeConvModule("Stem", 3, 8, /*with_batch_norm=*/true));
  backbone.register_module("block", MakeConvModule("Block", 8, kTinyFeatureDim, false));
  backbone.define(std::string(R"JIT(
def forward(self, x: Tensor) -> Tensor:
    y = self.block.forward(self.stem.forward(x))
    y = torch.flatten(torch.adaptive_avg_pool2d(y, [1, 1]), 1)
)JIT") + (dropout ? "    return torch.dropout(y, 0.5, self.training)\n" : "    return y\n"));
  return backbone;
}

inline BackboneManifest TinyManifest() {
  BackboneManifest manifest;
  manifest.architecture = "tiny";
  manifest.feature_dim = kTinyFeatureDim;
  manifest.input_size = kTinyInputSize;
  manifest.mean = {0.5f, 0.5f, 0.5f};
  manifest.std = {0.25f, 0.25f, 0.25f};
  manifest.layer_groups = {{"stem", {"stem"}}, {"block", {"block"}}};
  manifest.source = "random weights, built by the engine tests";
  return manifest;
}

// Writes the backbone and its manifest; returns the backbone's path.
inline std::string WriteTinyBackbone(const std::string& dir, uint64_t seed = 7,
                                     bool dropout = false) {
  const std::string path = dir + "/tiny.pt";
  MakeTinyBackbone(seed, dropout).save(path);
  WriteManifest(TinyManifest(), ManifestPathFor(path));
  return path;
}

}  // namespace tl::engine::testing
