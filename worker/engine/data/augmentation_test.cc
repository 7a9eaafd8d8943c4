#include "data/augmentation.h"

#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <string>

#include "base/errors.h"

namespace tl::engine {
namespace {

// A 40 x 60 RGB gradient: every region differs from every other.
cv::Mat Gradient() {
  cv::Mat image(40, 60, CV_8UC3);
  for (int y = 0; y < image.rows; ++y) {
    for (int x = 0; x < image.cols; ++x) {
      image.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uint8_t>(4 * x), static_cast<uint8_t>(6 * y),
                                            static_cast<uint8_t>(100 + x - y));
    }
  }
  return image;
}

bool Same(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

Augmentation Everything() {
  Augmentation augmentation;
  augmentation.random_resized_crop = true;
  augmentation.rotation_degrees = 20;
  augmentation.brightness = 0.4;
  augmentation.contrast = 0.4;
  augmentation.saturation = 0.4;
  return augmentation;
}

TEST(AugmentImageTest, SameKeySameImageOtherKeyOther) {
  const cv::Mat image = Gradient();
  cv::Mat first, again, other;
  AugmentImage(image, 16, Everything(), 11, first);
  AugmentImage(image, 16, Everything(), 11, again);
  AugmentImage(image, 16, Everything(), 12, other);
  EXPECT_EQ(first.rows, 16);
  EXPECT_EQ(first.cols, 16);
  EXPECT_EQ(first.type(), CV_8UC3);
  EXPECT_TRUE(Same(first, again));
  EXPECT_FALSE(Same(first, other));
}

TEST(AugmentImageTest, NothingOnCopiesTheCrop) {
  const cv::Mat crop = Gradient()(cv::Rect(0, 0, 16, 16)).clone();
  cv::Mat out;
  AugmentImage(crop, 16, Augmentation{}, 5, out);
  EXPECT_TRUE(Same(out, crop));
}

TEST(AugmentImageTest, FullScaleSquareCropOfSquareImageIsTheWholeImage) {
  const cv::Mat square = Gradient()(cv::Rect(0, 0, 40, 40)).clone();
  Augmentation augmentation;
  augmentation.random_resized_crop = true;
  augmentation.min_scale = augmentation.max_scale = 1.0;
  augmentation.min_aspect_ratio = augmentation.max_aspect_ratio = 1.0;
  cv::Mat out, expected;
  AugmentImage(square, 20, augmentation, 3, out);
  cv::resize(square, expected, cv::Size(20, 20), 0, 0, cv::INTER_AREA);
  EXPECT_TRUE(Same(out, expected));
}

TEST(AugmentImageTest, CropsComeFromDifferentPlacesForDifferentKeys) {
  Augmentation augmentation;
  augmentation.random_resized_crop = true;
  augmentation.min_scale = 0.1;
  augmentation.max_scale = 0.2;
  int distinct = 0;
  cv::Mat first;
  AugmentImage(Gradient(), 8, augmentation, 0, first);
  for (uint64_t key = 1; key < 6; ++key) {
    cv::Mat out;
    AugmentImage(Gradient(), 8, augmentation, key, out);
    if (!Same(out, first)) ++distinct;
  }
  EXPECT_EQ(distinct, 5);
}

TEST(AugmentImageTest, BrightnessStaysWithinItsFactorRange) {
  const cv::Mat grey(8, 8, CV_8UC3, cv::Scalar(100, 100, 100));
  Augmentation augmentation;
  augmentation.brightness = 0.5;
  bool changed = false;
  for (uint64_t key = 0; key < 20; ++key) {
    cv::Mat out;
    AugmentImage(grey, 8, augmentation, key, out);
    double low, high;
    cv::minMaxLoc(out.reshape(1), &low, &high);
    EXPECT_EQ(low, high) << "a uniform image stays uniform";
    EXPECT_GE(low, 50);
    EXPECT_LE(high, 150);
    changed = changed || low != 100;
  }
  EXPECT_TRUE(changed);
}

TEST(AugmentImageTest, UniformGreyImageSurvivesContrastAndSaturation) {
  // Saturation pulls colours towards grey; a grey image has nothing to lose.
  const cv::Mat grey(8, 8, CV_8UC3, cv::Scalar(70, 70, 70));
  Augmentation augmentation;
  augmentation.saturation = 1.0;
  augmentation.contrast = 1.0;
  cv::Mat out;
  AugmentImage(grey, 8, augmentation, 9, out);
  EXPECT_TRUE(Same(out, grey));
}

TEST(AugmentImageTest, RotationKeepsTheCenterPixel) {
  cv::Mat image(9, 9, CV_8UC3, cv::Scalar(0, 0, 0));
  image.at<cv::Vec3b>(4, 4) = cv::Vec3b(255, 255, 255);
  Augmentation augmentation;
  augmentation.rotation_degrees = 90;
  cv::Mat out;
  AugmentImage(image, 9, augmentation, 4, out);
  EXPECT_GT(out.at<cv::Vec3b>(4, 4)[0], 100);
}

void ExpectRejected(const Augmentation& augmentation, const std::string& field) {
  try {
    CheckAugmentation(augmentation);
    ADD_FAILURE() << "no error for " << field;
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find(field), std::string::npos) << error.what();
  }
}

TEST(CheckAugmentationTest, NamesTheFieldOutOfBounds) {
  EXPECT_NO_THROW(CheckAugmentation(Everything()));
  Augmentation a = Everything();
  a.min_scale = 0;
  ExpectRejected(a, "preprocessing.random_resized_crop.min_scale");
  a = Everything();
  a.min_scale = 0.5;
  a.max_scale = 0.4;
  ExpectRejected(a, "preprocessing.random_resized_crop.max_scale");
  a = Everything();
  a.max_aspect_ratio = 0.5;
  ExpectRejected(a, "preprocessing.random_resized_crop.max_aspect_ratio");
  a = Everything();
  a.rotation_degrees = 181;
  ExpectRejected(a, "preprocessing.rotation_degrees");
  a = Everything();
  a.brightness = -0.1;
  ExpectRejected(a, "preprocessing.brightness");
  a = Everything();
  a.saturation = 1.5;
  ExpectRejected(a, "preprocessing.saturation");
}

}  // namespace
}  // namespace tl::engine
