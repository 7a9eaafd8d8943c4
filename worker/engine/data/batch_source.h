// Where training and validation batches come from. The image-folder pipeline
// (OpenCV) and in-memory tensors (benchmarks, tests) both implement it, which
// keeps the trainer free of any image library.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <optional>

namespace tl::engine {

struct Batch {
  torch::Tensor images;  // float32 [N, 3, H, W], normalized, on the CPU
  torch::Tensor labels;  // int64 [N]
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Images delivered per epoch when none are skipped.
  virtual int64_t size() const = 0;
  // Batches per epoch.
  virtual int64_t batches() const = 0;
  // Begins an epoch; a shuffling source derives its order from the epoch.
  virtual void StartEpoch(int epoch) = 0;
  // The next batch of the epoch, or nullopt at its end.
  virtual std::optional<Batch> Next() = 0;
  // Images that could not be read, over the source's life.
  virtual int64_t skipped() const { return 0; }
};

}  // namespace tl::engine
