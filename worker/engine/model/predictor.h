// Classifies image files with an exported model: model.pt (TorchScript) and
// model.json beside it (class names and preprocessing, written by
// RunImageJob). Images go through the preprocessing the model was trained
// with (LoadImage: resize, center crop, normalize).
#pragma once

#include <string>
#include <vector>

#include <torch/script.h>

#include "data/image_folder.h"

namespace tl::engine {

struct ModelInfo {
  std::vector<std::string> class_names;
  Preprocessing preprocessing;
  std::string architecture;
};

// model.json of model.pt: the same path with the extension ".json".
std::string ModelInfoPathFor(const std::string& model_path);

// Throws EngineError(kInvalidArgument) naming the file, and the field when
// one is missing or wrong; with a `root`, also when the file resolves
// outside it.
ModelInfo ReadModelInfo(const std::string& path);
ModelInfo ReadModelInfo(const std::string& path, const std::string& root);

struct Prediction {
  int64_t label = 0;
  std::string class_name;
  double probability = 0;
};

class Predictor {
 public:
  // Throws EngineError(kInvalidArgument) naming model_path or its model.json
  // when either is missing, unreadable, or resolves outside `root`
  // (confined_file.h; empty: anywhere).
  explicit Predictor(const std::string& model_path, const std::string& device = "cpu",
                     const std::string& root = "");

  // Logits [N, classes] of normalized images [N, 3, size, size] (on any device).
  torch::Tensor Logits(const torch::Tensor& images);
  // The k most probable classes of an image file, most probable first (k is
  // capped at the class count). Throws EngineError(kInvalidArgument) naming
  // the file when it cannot be read as an image or has more pixels than
  // kDefaultMaxImagePixels (image_header.h).
  std::vector<Prediction> Classify(const std::string& image_path, int k);

  const ModelInfo& info() const { return info_; }

 private:
  std::string model_path_;
  ModelInfo info_;
  torch::Device device_;
  torch::jit::Module module_;
};

}  // namespace tl::engine
