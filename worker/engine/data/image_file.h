// Reading one image file for the data pipeline, the one way every image is
// read (image folders, CSV datasets, validation and test sets, Predictor):
// opened confined to the data root (confined_file.h), its size taken from
// its header (image_header.h) and held against the pixel limit, and only
// then decoded.
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>
#include <string>

#include "data/image_header.h"

namespace tl::engine {

struct ImageReadRules {
  // Files whose resolved path leaves this folder are refused; empty: no
  // confinement (the engine run alone).
  std::string root;
  // Images whose header states more pixels than this are refused undecoded.
  int64_t max_pixels = kDefaultMaxImagePixels;
};

// Why an image was skipped. Unreadable files (missing, damaged, in a format
// the header reader does not know) and refused ones are skipped and counted
// alike; refused ones are named with their reason.
enum class ImageSkip : uint8_t {
  kNone,
  kUnreadable,
  kOutsideRoot,  // refused: resolves outside ImageReadRules::root
  kTooLarge,     // refused: more pixels (or bytes) than the limit allows
};

struct ImageReadResult {
  cv::Mat bgr;  // 8-bit, 3 channels; empty when skipped
  ImageSkip skip = ImageSkip::kNone;
  std::string reason;  // for refusals: "30000 x 30000 pixels, above the limit of ..."
};

// Throws EngineError(kInvalidArgument) for a max_pixels below 1.
void CheckImageReadRules(const ImageReadRules& rules);

// Reads and decodes `path` (grey, alpha and 16-bit turned into 8-bit BGR).
// Decodes across the process hold at most twice max_pixels at once (one
// image of the limit always fits), so memory stays bounded however many
// loader threads meet large images together.
ImageReadResult ReadImageFile(const std::string& path, const ImageReadRules& rules);

// The largest file read as an image: 8 bytes per allowed pixel (16-bit
// RGBA, uncompressed) and 16 MiB of metadata. Larger files are refused
// before they are read.
int64_t MaxImageFileBytes(int64_t max_pixels);

// "name (reason)" for refused files, the name alone for unreadable ones.
std::string DescribeSkip(const std::string& name, ImageSkip skip, const std::string& reason);

}  // namespace tl::engine
