// The image-folder data pipeline: a folder per class, decoded with OpenCV,
// resized, center-cropped, normalized, randomly flipped, batched by a pool of
// loader threads ahead of the trainer.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/augmentation.h"
#include "data/batch_source.h"
#include "data/image_file.h"

namespace tl::engine {

struct ImageSample {
  std::string path;
  int64_t label = 0;
};

struct ImageFolderIndex {
  // Subfolder names in byte order; a class's label is its position here.
  std::vector<std::string> class_names;
  // Sorted by class, then by file name.
  std::vector<ImageSample> samples;
};

// Lists dir/<class>/<image file>. Only files with an image extension count
// (.png .jpg .jpeg .bmp .pgm .ppm .pbm .tif .tiff .webp, any case); hidden
// entries are ignored. Throws EngineError(kInvalidArgument) naming `dir` when
// it is missing, not a folder, or holds no class folder.
ImageFolderIndex ScanImageFolder(const std::string& dir);

// Holds out round(n * val_fraction) images of each class (at least one when
// the class has two or more images and val_fraction > 0), chosen by a
// shuffle seeded with `seed`. Returns {train, val}, each sorted as the input.
std::pair<std::vector<ImageSample>, std::vector<ImageSample>> StratifiedSplit(
    const std::vector<ImageSample>& samples, double val_fraction, uint64_t seed);

struct Preprocessing {
  int resize_size = 0;  // shorter side after resizing
  int crop_size = 0;    // side of the square center crop, <= resize_size
  std::array<float, 3> mean{};  // per RGB channel, on [0, 1] pixel values
  std::array<float, 3> std{};
};

// Decodes one image file (grayscale and alpha turned into RGB), resizes it so
// that its shorter side is resize_size (area interpolation when shrinking,
// bilinear when growing), takes the center crop_size square, and writes it to
// `chw` as float CHW RGB in [0, 1], normalized with mean and std, mirrored left
// to right when `flip`. Returns false when the file cannot be read or decoded,
// or `rules` refuse it (outside their root, above their pixel limit); then
// `why_not`, when given, says why for a refusal (empty for a file that is
// simply unreadable).
bool LoadImage(const std::string& path, const Preprocessing& preprocessing, bool flip,
               float* chw, const ImageReadRules& rules = {}, std::string* why_not = nullptr);

struct ImageFolderSourceOptions {
  int batch_size = 32;
  bool shuffle = false;      // a new order each epoch, from seed and epoch
  bool random_hflip = false;
  // Random crops, rotation and colour jitter, drawn per image and epoch from
  // `seed`. With random_resized_crop the cache keeps each decoded, resized
  // image (not its center crop), and the crop is cut anew every epoch.
  Augmentation augmentation;
  // Drops a final batch of one image: BatchNorm cannot train on it.
  bool drop_singleton_batch = false;
  uint64_t seed = 1;
  int threads = 2;  // loader threads
  // Decoded and cropped images are kept (uint8) up to this many bytes, so
  // that later epochs skip decoding and resizing.
  int64_t cache_bytes = int64_t{1} << 30;
  // Data-parallel training: only slice shard_index of shard_count of every
  // batch is delivered (ShardRange in shard_range.h); the batches, their
  // order and the epoch's shuffle are those of the whole source.
  int shard_count = 1;
  int shard_index = 0;
  // Every batch is delivered, empty or of one image too, so that all
  // replicas step alike (a training source's shard).
  bool keep_every_batch = false;
  // Where images may be read from and how many pixels one may have; files
  // refused by them are skipped and counted as unreadable ones are.
  ImageReadRules read_rules;
};

// The options of a source for validation or test images, from those of the
// training source: the same batches and threads, and neither shuffling nor
// any random change, so that every epoch sees the very same images.
ImageFolderSourceOptions EvaluationOptions(const ImageFolderSourceOptions& training);

// Batches of an image list, prepared by loader threads a few batches ahead.
// Unreadable images are skipped (the batch is shorter) and counted.
class ImageFolderSource : public BatchSource {
 public:
  ImageFolderSource(std::vector<ImageSample> samples, Preprocessing preprocessing,
                    ImageFolderSourceOptions options);
  ~ImageFolderSource() override;

  int64_t size() const override;
  int64_t batches() const override;
  void StartEpoch(int epoch) override;
  std::optional<Batch> Next() override;
  int64_t skipped() const override;
  // The paths of the first `limit` images found unreadable so far, in
  // sample order.
  std::vector<std::string> SkippedPaths(size_t limit) const;
  struct SkippedImage {
    std::string path;
    ImageSkip skip = ImageSkip::kUnreadable;
    std::string reason;  // for refusals (image_file.h)
  };
  // As SkippedPaths, with why each was skipped.
  std::vector<SkippedImage> SkippedImages(size_t limit) const;
  // Images skipped so far for this reason.
  int64_t skipped(ImageSkip skip) const;

  // Decodes every image into the cache now, on `threads` threads, when they
  // all fit in it; returns whether they did. Called between epochs (before
  // the first, typically): decoding then never competes with training for
  // the cores, and unreadable files are counted before any training starts.
  // `stop_requested`, polled between images, ends it early (returns false).
  bool Preload(int threads, const std::function<bool()>& stop_requested = {});

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tl::engine
