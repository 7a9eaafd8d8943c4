// A pretrained TorchScript backbone with a new linear head, and the rules of
// the three transfer strategies: which parameters train, which modules stay
// in eval mode, and at which learning rate.
#pragma once

#include <torch/script.h>
#include <torch/types.h>

#include <optional>
#include <string>
#include <vector>

#include "model/manifest.h"

namespace tl::engine {

enum class Strategy {
  kFeatureExtraction,  // backbone frozen and in eval mode; only the head trains
  kFineTune,           // the last N layer groups train with the head
  kFull,               // everything trains
};

const char* StrategyName(Strategy strategy);

class TransferModel {
 public:
  // Loads the TorchScript backbone (throws EngineError(kInvalidArgument)
  // naming the file when it does not load or its output does not match the
  // manifest's feature_dim) and attaches a head of num_classes outputs,
  // initialised as torch.nn.Linear would be, from `seed`. `open_as`, when
  // set, is the name the file is loaded by (an already opened, confined
  // file's descriptor name, confined_file.h); messages name backbone_path.
  TransferModel(const std::string& backbone_path, BackboneManifest manifest, int64_t num_classes,
                uint64_t seed, const std::string& open_as = "");

  // Decides which parameters train. unfreeze_groups (FINE_TUNE only) counts
  // layer groups from the last; more than the manifest has is an error.
  void Configure(Strategy strategy, int unfreeze_groups);

  // Train mode for what trains; frozen modules stay in eval mode so that
  // their BatchNorm statistics do not drift.
  void SetTraining(bool training);

  void To(const torch::Device& device);

  // A forward pass of one blank side x side image through the backbone, so
  // that a size the backbone cannot take (Inception v3 under 75 px) fails the
  // job before training, naming preprocessing.image_size, rather than in the
  // middle of an epoch. Throws EngineError(kInvalidArgument).
  void CheckImageSize(int side) const;

  // Logits [N, num_classes]. A fully frozen backbone runs without autograd.
  torch::Tensor Forward(const torch::Tensor& images);
  // Flattened backbone features [N, feature_dim] of images, without autograd.
  torch::Tensor Features(const torch::Tensor& images);
  // While on, Forward takes Features' output instead of images and applies
  // the head alone: a frozen backbone's head trains on cached features.
  void SetFeatureInput(bool on) { feature_input_ = on; }

  std::vector<torch::Tensor> HeadParameters() const;
  // Backbone parameters that train under the configured strategy.
  std::vector<torch::Tensor> TrainableBackboneParameters() const;

  // The whole classifier as one TorchScript module: forward(images) ->
  // logits, with attributes class_names, mean, std, input_size.
  torch::jit::Module& classifier() { return classifier_; }
  torch::jit::Module backbone() const;
  const BackboneManifest& manifest() const { return manifest_; }
  Strategy strategy() const { return strategy_; }
  int64_t num_classes() const { return num_classes_; }

  // Writes model.pt (classifier, CPU, eval mode) and backbone.pt with its
  // manifest. Leaves this model on its device and mode.
  void ExportClassifier(const std::string& path, const std::vector<std::string>& class_names);
  void ExportBackbone(const std::string& path, const std::string& source_note);

 private:
  torch::jit::Module FindSubmodule(const std::string& dotted_path) const;
  void CheckFeatureDim(const std::string& backbone_path);
  std::optional<torch::Tensor> ProbeFeatures(int side, std::string* failure) const;

  BackboneManifest manifest_;
  int64_t num_classes_;
  torch::jit::Module classifier_;
  Strategy strategy_ = Strategy::kFull;
  // Submodules held in eval mode because nothing in them trains.
  std::vector<torch::jit::Module> frozen_modules_;
  bool backbone_frozen_ = false;
  bool feature_input_ = false;
};

}  // namespace tl::engine
