// Batches sliced from tensors already in memory: synthetic data for
// benchmarks and tests, and machines built without OpenCV.
#pragma once

#include <torch/torch.h>

#include "data/batch_source.h"

namespace tl::engine {

class TensorSource : public BatchSource {
 public:
  // images: float [N, 3, H, W]; labels: int64 [N]. With shuffle, each epoch
  // takes a permutation drawn from (seed, epoch).
  TensorSource(torch::Tensor images, torch::Tensor labels, int64_t batch_size, bool shuffle,
               uint64_t seed);

  int64_t size() const override { return images_.size(0); }
  int64_t batches() const override { return BatchCount(size(), batch_size_); }
  void StartEpoch(int epoch) override;
  std::optional<Batch> Next() override;

 private:
  torch::Tensor images_;
  torch::Tensor labels_;
  int64_t batch_size_;
  bool shuffle_;
  uint64_t seed_;
  torch::Tensor order_;
  int64_t next_batch_ = 0;
};

inline TensorSource::TensorSource(torch::Tensor images, torch::Tensor labels, int64_t batch_size,
                                  bool shuffle, uint64_t seed)
    : images_(std::move(images)),
      labels_(std::move(labels)),
      batch_size_(batch_size),
      shuffle_(shuffle),
      seed_(seed) {}

inline void TensorSource::StartEpoch(int epoch) {
  next_batch_ = 0;
  if (shuffle_) {
    auto generator = at::detail::createCPUGenerator(seed_ * 1000003u + static_cast<uint64_t>(epoch));
    order_ = torch::randperm(size(), generator, torch::kInt64);
  } else {
    order_ = torch::arange(size(), torch::kInt64);
  }
}

inline std::optional<Batch> TensorSource::Next() {
  if (next_batch_ >= batches()) return std::nullopt;
  const int64_t begin = BatchStart(size(), batch_size_, next_batch_);
  const int64_t end = BatchStart(size(), batch_size_, ++next_batch_);
  if (!shuffle_) {
    // Views keep the storage's properties (pinned memory stays pinned).
    return Batch{images_.slice(0, begin, end), labels_.slice(0, begin, end)};
  }
  torch::Tensor indices = order_.slice(0, begin, end);
  return Batch{images_.index_select(0, indices), labels_.index_select(0, indices)};
}

}  // namespace tl::engine
