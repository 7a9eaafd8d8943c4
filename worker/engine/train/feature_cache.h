// Features of a frozen backbone, computed once per job instead of once per
// epoch. Under FEATURE_EXTRACTION with no random augmentation, every epoch
// feeds the same images through the same eval-mode backbone, so the head
// can train on their features directly; an epoch then costs a linear layer.
// The features of a whole image set (a job's training and validation images
// together) are spilled to disk under a key of everything they depend on
// (the backbone's bytes, the preprocessing, each image's path, label and
// bytes), and any split of the set takes its rows from them: a retry, a
// later job on the same data, the trials of a sweep whatever their seeds
// and validation slices, and AUTO's folds all skip the backbone.
#pragma once

#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include <torch/torch.h>

#include "data/batch_source.h"
#include "data/image_folder.h"
#include "data/tensor_source.h"
#include "model/transfer_model.h"
#include "train/precision.h"

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

// The cache key of `samples` (in order) under a backbone, preprocessing and
// the rules images are read by: images outside rules.root count as
// unreadable, and max_pixels decides which large ones are refused.
std::string FeatureCacheKey(const std::string& backbone_digest, const Preprocessing& preprocessing,
                            const std::vector<ImageSample>& samples,
                            const ImageReadRules& rules = {},
                            Precision precision = Precision::kFloat32);

struct CachedFeatures {
  torch::Tensor features;  // float [M, feature_dim], on the CPU: the readable images'
  torch::Tensor labels;    // int64 [M]
  torch::Tensor rows;      // int64 [N]: each sample's row in features; -1: unreadable
  bool from_disk = false;
  double seconds = 0;      // to load or compute them
  bool stopped = false;    // a stop request came first: the tensors are empty
};

// Loads cache_dir/<key>.pt, or runs every image of `samples` (in order,
// unaugmented, decoded with `decode`) through the model's backbone on
// `device` and saves the result there (written beside and renamed, so a
// crash leaves no half file). An empty cache_dir keeps the features in
// memory only. `stop_requested` (may be empty) is polled before every batch:
// true leaves the result stopped, and nothing is saved. A table read is
// marked used (its modification time), and after one is saved the folder is
// pruned to cache_max_bytes (PruneFeatureCache; 0: no bound).
CachedFeatures LoadOrComputeFeatures(TransferModel& model, const std::vector<ImageSample>& samples,
                                     const Preprocessing& preprocessing,
                                     const ImageFolderSourceOptions& decode,
                                     const torch::Device& device, const std::string& cache_dir,
                                     const std::string& key,
                                     const std::function<bool()>& stop_requested = {},
                                     int64_t cache_max_bytes = 0,
                                     Precision precision = Precision::kFloat32);

// Removes the least recently used tables (*.pt, oldest modification time
// first) of `cache_dir` until the tables there take at most max_bytes, never
// `keep` (a file name there, the table just written). Workers sharing the
// folder may prune at once: a table removed under a reader fails its load,
// and the reader computes it again. Returns the number removed.
int PruneFeatureCache(const std::string& cache_dir, int64_t max_bytes, const std::string& keep);

// The features of a set of images, from which any subset takes its rows.
// The set is keyed in path order, so the same images given in another order
// or split another way find the same file.
class FeatureTable {
 public:
  struct Options {
    std::string cache_dir;       // empty: memory only
    std::string backbone_path;   // its bytes are part of the key
    Preprocessing preprocessing;
    ImageFolderSourceOptions decode;  // unshuffled, unaugmented
    torch::Device device = torch::kCPU;
    // Polled before every batch of a table being computed: a cancel does not
    // wait for the whole image set to pass the backbone.
    std::function<bool()> stop_requested;
    int64_t cache_max_bytes = 0;  // the folder's bound (PruneFeatureCache); 0: none
    // The backbone's forward passes run in it (bf16 features differ from
    // float32 ones, so it is part of the key); the table holds float32.
    Precision precision = Precision::kFloat32;
  };
  // `samples` may repeat an image (by path); it is computed once.
  FeatureTable(TransferModel& model, const std::vector<ImageSample>& samples,
               const Options& options);

  struct Rows {
    torch::Tensor features;  // float [K, feature_dim]
    torch::Tensor labels;    // int64 [K]
  };
  // The rows of `subset`, in its order, leaving out unreadable images; the
  // labels are the subset's own. Throws EngineError(kInternal) for an image
  // the table was not made of.
  Rows RowsOf(const std::vector<ImageSample>& subset) const;
  bool from_disk() const { return from_disk_; }
  // A stop request ended the computation: the table holds no rows, and the
  // caller hands the stop up.
  bool stopped() const { return cached_.stopped; }
  double seconds() const { return seconds_; }

 private:
  CachedFeatures cached_;
  std::unordered_map<std::string, int64_t> row_of_;  // by path; -1: unreadable
  bool from_disk_ = false;
  double seconds_ = 0;
};

// The training and validation splits as cached features, and the model
// switched to take them (SetFeatureInput) for as long as this lives.
class FeatureTraining {
 public:
  FeatureTraining(TransferModel& model, const FeatureTable& table,
                  const std::vector<ImageSample>& train, const std::vector<ImageSample>& val,
                  int64_t batch_size, uint64_t seed);
  ~FeatureTraining();
  FeatureTraining(const FeatureTraining&) = delete;
  FeatureTraining& operator=(const FeatureTraining&) = delete;

  BatchSource& train() { return *train_; }
  BatchSource* validation() { return val_->size() > 0 ? val_.get() : nullptr; }

 private:
  TransferModel& model_;
  std::unique_ptr<TensorSource> train_;
  std::unique_ptr<TensorSource> val_;
};

}  // namespace tl::engine
