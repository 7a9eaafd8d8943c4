// The sidecar manifest of a TorchScript backbone: what the engine must know
// about a backbone that the TorchScript file does not say.
//
// File format (JSON, next to the backbone: "x.pt" has "x.json"):
//   {"format": "tl.backbone.v1", "architecture": "resnet18",
//    "feature_dim": 512, "input_size": 224,
//    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
//    "layer_groups": [{"name": "stem", "modules": ["conv1", "bn1"]}, ...],
//    "source": "free text: where the weights came from"}
// The backbone maps a float NCHW batch to [N, feature_dim] features. Layer
// groups are ordered from input to output and together hold every parameter;
// FINE_TUNE unfreezes them from the last.
#pragma once

#include <array>
#include <string>
#include <vector>

namespace tl::engine {

struct LayerGroup {
  std::string name;
  // Dotted submodule paths inside the backbone ("layer4", "features.12").
  std::vector<std::string> modules;
};

struct BackboneManifest {
  std::string architecture;
  int64_t feature_dim = 0;
  int input_size = 0;
  std::array<float, 3> mean{};
  std::array<float, 3> std{};
  std::vector<LayerGroup> layer_groups;
  std::string source;
};

// "dir/name.pt" -> "dir/name.json".
std::string ManifestPathFor(const std::string& backbone_path);

// Throws EngineError(kInvalidArgument) naming the file and the field at fault;
// unknown fields are errors too, so that a typo is reported.
BackboneManifest ReadManifest(const std::string& path);
BackboneManifest ParseManifest(const std::string& json_text, const std::string& origin);
void WriteManifest(const BackboneManifest& manifest, const std::string& path);

}  // namespace tl::engine
