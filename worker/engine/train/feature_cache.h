// Features of a frozen backbone, computed once per job instead of once per
// epoch. Under FEATURE_EXTRACTION with no random augmentation, every epoch
// feeds the same images through the same eval-mode backbone, so the head
// can train on their features directly; an epoch then costs a linear layer.
// The features are spilled to disk under a key of everything they depend
// on (the backbone's bytes, the preprocessing, each image's path, label and
// bytes), so a retry or a later job on the same data skips the backbone.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "data/batch_source.h"
#include "data/image_folder.h"
#include "data/tensor_source.h"
#include "model/transfer_model.h"

namespace tl::engine {

// Whether training on cached features is the same training as on images:
// a frozen backbone, no random augmentation and no channels-last layout
// (features are not images).
bool FeatureCacheApplies(Strategy strategy, bool random_augmentation, bool channels_last);

// FNV-1a (64 bit) of a file's bytes, in hex: stable across runs and
// machines, unlike std::hash. Throws EngineError(kInvalidArgument) naming a
// file that cannot be read or resolves outside `root` (confined_file.h;
// empty: anywhere).
std::string FileDigest(const std::string& path, const std::string& root = "");

// The cache key of `samples` (in order) under a backbone and preprocessing;
// images outside `root` count as unreadable.
std::string FeatureCacheKey(const std::string& backbone_digest, const Preprocessing& preprocessing,
                            const std::vector<ImageSample>& samples, const std::string& root = "");

struct CachedFeatures {
  torch::Tensor features;  // float [N, feature_dim], on the CPU
  torch::Tensor labels;    // int64 [N]
  bool from_disk = false;
  double seconds = 0;      // to load or compute them
};

// Loads cache_dir/<key>.pt, or runs every batch of `images` (unshuffled,
// unaugmented) through the model's backbone on `device` and saves the result
// there (written beside and renamed, so a crash leaves no half file). An
// empty cache_dir keeps the features in memory only.
CachedFeatures LoadOrComputeFeatures(TransferModel& model, BatchSource& images,
                                     const torch::Device& device, const std::string& cache_dir,
                                     const std::string& key);

// The training and validation splits as cached features, and the model
// switched to take them (SetFeatureInput) for as long as this lives.
class FeatureTraining {
 public:
  struct Options {
    std::string cache_dir;       // empty: memory only
    std::string backbone_path;   // its bytes are part of the key
    Preprocessing preprocessing;
    ImageFolderSourceOptions decode;  // unshuffled, unaugmented
    int64_t batch_size = 32;
    uint64_t seed = 1;           // shuffles the training features per epoch
    torch::Device device = torch::kCPU;
  };
  FeatureTraining(TransferModel& model, const std::vector<ImageSample>& train,
                  const std::vector<ImageSample>& val, const Options& options);
  ~FeatureTraining();
  FeatureTraining(const FeatureTraining&) = delete;
  FeatureTraining& operator=(const FeatureTraining&) = delete;

  BatchSource& train() { return *train_; }
  BatchSource* validation() { return val_->size() > 0 ? val_.get() : nullptr; }
  // Both splits came from disk.
  bool from_disk() const { return from_disk_; }
  double seconds() const { return seconds_; }

 private:
  TransferModel& model_;
  std::unique_ptr<TensorSource> train_;
  std::unique_ptr<TensorSource> val_;
  bool from_disk_ = true;
  double seconds_ = 0;
};

}  // namespace tl::engine
