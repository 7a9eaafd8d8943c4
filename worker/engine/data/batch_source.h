// Where training and validation batches come from. The image-folder pipeline
// (OpenCV) and in-memory tensors (benchmarks, tests) both implement it, which
// keeps the trainer free of any image library.
#pragma once

#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <optional>

namespace tl::engine {

// An epoch of `images` in batches of at most `batch_size` takes
// ceil(images / batch_size) batches, and the images are dealt evenly among
// them (sizes differ by at most one, larger first). A remainder batch of a
// few images would count as a whole optimizer step on a noisy gradient, and
// as an epoch's last step it leaves its BatchNorm statistics in the model:
// 50 images in batches of 12 and one of 2 ended a FULL run at training loss
// 0.2, five batches of 10 at 0.005.
inline int64_t BatchCount(int64_t images, int64_t batch_size) {
  return images <= 0 ? 0 : (images + batch_size - 1) / batch_size;
}
// Where batch `batch` (0 to BatchCount) of such an epoch starts; batch i
// holds the images [BatchStart(i), BatchStart(i + 1)).
inline int64_t BatchStart(int64_t images, int64_t batch_size, int64_t batch) {
  const int64_t count = BatchCount(images, batch_size);
  if (count == 0) return 0;
  return batch * (images / count) + std::min(batch, images % count);
}

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
