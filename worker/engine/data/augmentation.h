// Random changes to training images: a random resized crop, a small
// rotation and colour jitter. Every draw comes from one 64-bit key, which the
// image source derives from (seed, epoch, image), so that a CPU run repeats
// exactly and an image looks different from one epoch to the next.
// Validation and test images are never augmented.
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>

namespace tl::engine {

// The member defaults serve the engine's direct users (tests, benchmarks);
// the worker sets every field from the job's stored spec, and the JobSpec's
// documented defaults live in server/spec/spec_fields.cc. CheckAugmentation's
// bounds are the engine's own invariants.
struct Augmentation {
  // Crops a random region of the resized image (its area a share in
  // [min_scale, max_scale] of the image's, its width / height in
  // [min_aspect_ratio, max_aspect_ratio], drawn log-uniformly) and scales it
  // to the crop size, in place of the center crop.
  bool random_resized_crop = false;
  double min_scale = 0.08;
  double max_scale = 1.0;
  double min_aspect_ratio = 3.0 / 4.0;
  double max_aspect_ratio = 4.0 / 3.0;
  // Rotates the crop by an angle drawn from [-rotation_degrees,
  // rotation_degrees]; the corners it uncovers mirror the image.
  double rotation_degrees = 0;
  // Colour jitter: each factor is drawn from [max(0, 1 - x), 1 + x] and
  // applied in this order: brightness (scales the values), contrast (towards
  // the image's mean grey), saturation (towards each pixel's grey).
  double brightness = 0;
  double contrast = 0;
  double saturation = 0;

  // Whether anything above changes an image.
  bool any() const {
    return random_resized_crop || rotation_degrees > 0 || brightness > 0 || contrast > 0 ||
           saturation > 0;
  }
};

// Throws EngineError(kInvalidArgument) naming the preprocessing.* field that
// is out of bounds (the scheduler checks the same bounds at submit).
void CheckAugmentation(const Augmentation& augmentation);

// Writes the augmented side x side RGB image to `out` (allocated when it has
// another shape). `rgb` is 8-bit RGB: the resized image when
// random_resized_crop is on, else the side x side center crop.
void AugmentImage(const cv::Mat& rgb, int side, const Augmentation& augmentation, uint64_t key,
                  cv::Mat& out);

}  // namespace tl::engine
