#include "data/augmentation.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <random>
#include <string>

#include "base/errors.h"

namespace tl::engine {
namespace {

// Draws from mt19937_64 directly (whose output the standard fixes) rather
// than through std:: distributions, which differ between standard libraries.
class Draws {
 public:
  explicit Draws(uint64_t key) : rng_(key) {}
  // Uniform in [0, 1) with 53 random bits.
  double Unit() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }
  double Uniform(double low, double high) { return low + (high - low) * Unit(); }
  // Uniform integer in [0, count); count is small, so the modulo bias of a
  // 64-bit draw is far below anything that shows.
  int Below(int count) { return count <= 1 ? 0 : static_cast<int>(rng_() % count); }
  double Factor(double strength) { return Uniform(std::max(0.0, 1.0 - strength), 1.0 + strength); }

 private:
  std::mt19937_64 rng_;
};

void CheckRange(const std::string& field, double value, double low, double high) {
  if (!(value >= low && value <= high)) {
    throw InvalidArgument(field + " is " + std::to_string(value) + "; it must lie in [" +
                          std::to_string(low) + ", " + std::to_string(high) + "]");
  }
}

// Ten tries at a region of the asked-for area and shape, then the largest
// center region whose shape is in range: the usual random-resized-crop rule.
cv::Rect RandomRegion(const cv::Mat& image, const Augmentation& augmentation, Draws& draws) {
  const double area = static_cast<double>(image.rows) * image.cols;
  const double log_low = std::log(augmentation.min_aspect_ratio);
  const double log_high = std::log(augmentation.max_aspect_ratio);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * draws.Uniform(augmentation.min_scale, augmentation.max_scale);
    const double ratio = std::exp(draws.Uniform(log_low, log_high));
    const int width = static_cast<int>(std::lround(std::sqrt(target * ratio)));
    const int height = static_cast<int>(std::lround(std::sqrt(target / ratio)));
    if (width > 0 && height > 0 && width <= image.cols && height <= image.rows) {
      const int y = draws.Below(image.rows - height + 1);
      const int x = draws.Below(image.cols - width + 1);
      return cv::Rect(x, y, width, height);
    }
  }
  const double ratio = static_cast<double>(image.cols) / image.rows;
  int width = image.cols;
  int height = image.rows;
  if (ratio < augmentation.min_aspect_ratio) {
    height = std::max(1, static_cast<int>(std::lround(width / augmentation.min_aspect_ratio)));
  } else if (ratio > augmentation.max_aspect_ratio) {
    width = std::max(1, static_cast<int>(std::lround(height * augmentation.max_aspect_ratio)));
  }
  return cv::Rect((image.cols - width) / 2, (image.rows - height) / 2, width, height);
}

void ResizeTo(const cv::Mat& region, int side, cv::Mat& out) {
  const bool shrinking = region.cols > side || region.rows > side;
  cv::resize(region, out, cv::Size(side, side), 0, 0,
             shrinking ? cv::INTER_AREA : cv::INTER_LINEAR);
}

// Values are kept in [0, 255] after every step, as 8-bit images would be.
void ClampPixels(cv::Mat& values) { cv::min(cv::max(values, 0.0), 255.0, values); }

void JitterColour(cv::Mat& rgb, const Augmentation& augmentation, double brightness,
                  double contrast, double saturation) {
  cv::Mat values;
  rgb.convertTo(values, CV_32FC3);
  if (augmentation.brightness > 0) {
    values *= brightness;
    ClampPixels(values);
  }
  if (augmentation.contrast > 0) {
    cv::Mat grey;
    cv::cvtColor(values, grey, cv::COLOR_RGB2GRAY);
    const double mean = cv::mean(grey)[0];
    values = values * contrast + cv::Scalar::all(mean * (1.0 - contrast));
    ClampPixels(values);
  }
  if (augmentation.saturation > 0) {
    cv::Mat grey;
    cv::cvtColor(values, grey, cv::COLOR_RGB2GRAY);
    cv::Mat grey3;
    cv::cvtColor(grey, grey3, cv::COLOR_GRAY2RGB);
    values = values * saturation + grey3 * (1.0 - saturation);
    ClampPixels(values);
  }
  values.convertTo(rgb, CV_8UC3);  // rounds to the nearest level
}

}  // namespace

void CheckAugmentation(const Augmentation& augmentation) {
  if (augmentation.random_resized_crop) {
    CheckRange("preprocessing.random_resized_crop.min_scale", augmentation.min_scale, 1e-3, 1.0);
    CheckRange("preprocessing.random_resized_crop.max_scale", augmentation.max_scale,
               augmentation.min_scale, 1.0);
    CheckRange("preprocessing.random_resized_crop.min_aspect_ratio",
               augmentation.min_aspect_ratio, 0.1, 10.0);
    CheckRange("preprocessing.random_resized_crop.max_aspect_ratio",
               augmentation.max_aspect_ratio, augmentation.min_aspect_ratio, 10.0);
  }
  CheckRange("preprocessing.rotation_degrees", augmentation.rotation_degrees, 0.0, 180.0);
  CheckRange("preprocessing.brightness", augmentation.brightness, 0.0, 1.0);
  CheckRange("preprocessing.contrast", augmentation.contrast, 0.0, 1.0);
  CheckRange("preprocessing.saturation", augmentation.saturation, 0.0, 1.0);
}

void AugmentImage(const cv::Mat& rgb, int side, const Augmentation& augmentation, uint64_t key,
                  cv::Mat& out) {
  Draws draws(key);
  // Every draw is taken whether or not its step is on, so that turning one
  // step on does not change what the others draw.
  const cv::Rect region = RandomRegion(rgb, augmentation, draws);
  const double angle = draws.Uniform(-augmentation.rotation_degrees, augmentation.rotation_degrees);
  const double brightness = draws.Factor(augmentation.brightness);
  const double contrast = draws.Factor(augmentation.contrast);
  const double saturation = draws.Factor(augmentation.saturation);

  if (augmentation.random_resized_crop) {
    ResizeTo(rgb(region), side, out);
  } else {
    rgb.copyTo(out);
  }
  if (augmentation.rotation_degrees > 0) {
    const cv::Point2f center(side / 2.0f - 0.5f, side / 2.0f - 0.5f);
    const cv::Mat rotation = cv::getRotationMatrix2D(center, angle, 1.0);
    cv::Mat rotated;
    cv::warpAffine(out, rotated, rotation, out.size(), cv::INTER_LINEAR, cv::BORDER_REFLECT_101);
    out = rotated;
  }
  if (augmentation.brightness > 0 || augmentation.contrast > 0 || augmentation.saturation > 0) {
    JitterColour(out, augmentation, brightness, contrast, saturation);
  }
}

}  // namespace tl::engine
