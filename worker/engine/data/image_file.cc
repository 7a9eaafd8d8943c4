#include "data/image_file.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <condition_variable>
#include <mutex>
#include <opencv2/imgcodecs.hpp>
#include <vector>

#include "base/confined_file.h"
#include "base/errors.h"

namespace tl::engine {
namespace {

// Pixels being decoded at once in this process. A decode waits while the
// others hold too much, except when nothing is held (so any image within
// the limit gets through).
class DecodeBudget {
 public:
  void Acquire(int64_t pixels, int64_t capacity) {
    std::unique_lock<std::mutex> lock(mutex_);
    released_.wait(lock, [&] { return in_use_ == 0 || in_use_ + pixels <= capacity; });
    in_use_ += pixels;
  }
  void Release(int64_t pixels) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      in_use_ -= pixels;
    }
    released_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable released_;
  int64_t in_use_ = 0;
};

DecodeBudget& ProcessDecodeBudget() {
  static DecodeBudget budget;
  return budget;
}

class BudgetHold {
 public:
  BudgetHold(int64_t pixels, int64_t capacity) : pixels_(pixels) {
    ProcessDecodeBudget().Acquire(pixels, capacity);
  }
  ~BudgetHold() { ProcessDecodeBudget().Release(pixels_); }
  BudgetHold(const BudgetHold&) = delete;
  BudgetHold& operator=(const BudgetHold&) = delete;

 private:
  int64_t pixels_;
};

ImageReadResult Skipped(ImageSkip skip, std::string reason = "") {
  ImageReadResult result;
  result.skip = skip;
  result.reason = std::move(reason);
  return result;
}

std::string AboveLimit(int64_t max_pixels) {
  return "above the limit of " + std::to_string(max_pixels) + " pixels";
}

}  // namespace

void CheckImageReadRules(const ImageReadRules& rules) {
  if (rules.max_pixels < 1) {
    throw InvalidArgument("the image pixel limit must be at least 1, got " +
                          std::to_string(rules.max_pixels));
  }
}

int64_t MaxImageFileBytes(int64_t max_pixels) {
  constexpr int64_t kMetadataBytes = int64_t{16} << 20;
  constexpr int64_t kBytesPerPixel = 8;
  // cv::imdecode takes the bytes as one row of an int-sized matrix.
  constexpr int64_t kLargestBuffer = INT32_MAX;
  return std::min(std::min(max_pixels, kLargestBuffer / kBytesPerPixel) * kBytesPerPixel +
                      kMetadataBytes,
                  kLargestBuffer);
}

ImageReadResult ReadImageFile(const std::string& path, const ImageReadRules& rules) {
  const ConfinedFile file = ConfinedFile::Open(path, rules.root);
  if (file.outcome() == OpenOutcome::kOutsideRoot) {
    return Skipped(ImageSkip::kOutsideRoot, "outside the data root");
  }
  if (!file.ok()) return Skipped(ImageSkip::kUnreadable);
  if (file.size() > MaxImageFileBytes(rules.max_pixels)) {
    return Skipped(ImageSkip::kTooLarge, std::to_string(file.size()) + " bytes, more than an image " +
                                             AboveLimit(rules.max_pixels) + " needs");
  }
  std::string bytes;
  if (!file.ReadAll(bytes)) return Skipped(ImageSkip::kUnreadable);
  // The decoders would allocate whatever the header declares; it is read
  // first, and formats whose header gives no size are not decoded at all.
  const std::optional<ImageHeader> header = ReadImageHeader(bytes.data(), bytes.size());
  if (!header) return Skipped(ImageSkip::kUnreadable);
  if (header->pixels() > rules.max_pixels) {
    return Skipped(ImageSkip::kTooLarge, std::string(header->format) + " of " +
                                             std::to_string(header->width) + " x " +
                                             std::to_string(header->height) + " pixels, " +
                                             AboveLimit(rules.max_pixels));
  }
  ImageReadResult result;
  try {
    // Twice the limit, so that one image of the limit and others beside it fit.
    const int64_t capacity =
        rules.max_pixels > INT64_MAX / 2 ? INT64_MAX : 2 * rules.max_pixels;
    const BudgetHold hold(header->pixels(), capacity);
    // IMREAD_COLOR turns gray, alpha and 16-bit inputs into 8-bit BGR.
    const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8UC1, bytes.data());
    result.bgr = cv::imdecode(encoded, cv::IMREAD_COLOR);
  } catch (const cv::Exception&) {
    result.bgr = cv::Mat();  // some decoders throw on truncated or malformed files
  }
  if (result.bgr.empty()) return Skipped(ImageSkip::kUnreadable);
  // A decoder that disagreed with the header it was given is not trusted.
  if (static_cast<int64_t>(result.bgr.total()) > rules.max_pixels) {
    return Skipped(ImageSkip::kTooLarge, "decoded to " + std::to_string(result.bgr.cols) + " x " +
                                             std::to_string(result.bgr.rows) + " pixels, " +
                                             AboveLimit(rules.max_pixels));
  }
  return result;
}

std::string DescribeSkip(const std::string& name, ImageSkip skip, const std::string& reason) {
  if (skip == ImageSkip::kUnreadable || skip == ImageSkip::kNone || reason.empty()) return name;
  return name + " (" + reason + ")";
}

}  // namespace tl::engine
