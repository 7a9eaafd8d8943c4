#include "data/image_header.h"

#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

namespace tl::engine {
namespace {

std::string Encode(const std::string& extension, const cv::Mat& image,
                   const std::vector<int>& parameters = {}) {
  std::vector<uchar> bytes;
  if (!cv::imencode(extension, image, bytes, parameters)) {
    ADD_FAILURE() << "OpenCV cannot encode " << extension;
  }
  return std::string(bytes.begin(), bytes.end());
}

std::optional<ImageHeader> HeaderOf(const std::string& bytes) {
  return ReadImageHeader(bytes.data(), bytes.size());
}

void ExpectSize(const std::string& bytes, const std::string& format, int64_t width,
                int64_t height) {
  const std::optional<ImageHeader> header = HeaderOf(bytes);
  ASSERT_TRUE(header.has_value()) << format;
  EXPECT_EQ(header->format, format);
  EXPECT_EQ(header->width, width) << format;
  EXPECT_EQ(header->height, height) << format;
}

// Every format the pipeline accepts, as OpenCV writes it: the header reader
// must agree with the encoder on width and height (37 x 23, so that a
// swapped pair shows).
TEST(ImageHeaderTest, ReadsTheSizeOfEveryFormatOpenCvWrites) {
  const cv::Mat colour(23, 37, CV_8UC3, cv::Scalar(10, 20, 30));
  const cv::Mat grey(23, 37, CV_8UC1, cv::Scalar(40));
  const cv::Mat deep(23, 37, CV_16UC3, cv::Scalar(1000, 2000, 3000));
  ExpectSize(Encode(".png", colour), "PNG", 37, 23);
  ExpectSize(Encode(".png", deep), "PNG", 37, 23);
  ExpectSize(Encode(".jpg", colour), "JPEG", 37, 23);
  ExpectSize(Encode(".jpg", colour, {cv::IMWRITE_JPEG_PROGRESSIVE, 1}), "JPEG", 37, 23);
  ExpectSize(Encode(".bmp", colour), "BMP", 37, 23);
  ExpectSize(Encode(".ppm", colour), "PNM", 37, 23);
  ExpectSize(Encode(".pgm", grey), "PNM", 37, 23);
  ExpectSize(Encode(".pbm", grey), "PNM", 37, 23);
  ExpectSize(Encode(".pgm", grey, {cv::IMWRITE_PXM_BINARY, 0}), "PNM", 37, 23);
  ExpectSize(Encode(".tiff", colour), "TIFF", 37, 23);
  ExpectSize(Encode(".tiff", deep), "TIFF", 37, 23);
  ExpectSize(Encode(".webp", colour, {cv::IMWRITE_WEBP_QUALITY, 80}), "WebP", 37, 23);
  ExpectSize(Encode(".webp", colour, {cv::IMWRITE_WEBP_QUALITY, 101}), "WebP", 37, 23);  // lossless
}

// The attack that motivated the reader: a small PNG declaring 30,000 x
// 30,000 pixels. Its IHDR alone tells the size; nothing needs decoding.
TEST(ImageHeaderTest, ReadsAHugeDeclaredSizeFromThePngHeaderAlone) {
  std::string png = Encode(".png", cv::Mat(1, 1, CV_8UC3));
  // IHDR's width and height, big endian, at bytes 16 and 20.
  const std::string side = {0, 0, 0x75, 0x30};  // 30000
  png.replace(16, 4, side);
  png.replace(20, 4, side);
  ExpectSize(png.substr(0, 24), "PNG", 30000, 30000);
  EXPECT_EQ(HeaderOf(png)->pixels(), int64_t{900'000'000});
}

// Cameras put large APP segments (EXIF, ICC) before the frame header.
TEST(ImageHeaderTest, FindsTheJpegFrameHeaderPastApplicationSegments) {
  const std::string jpeg = Encode(".jpg", cv::Mat(23, 37, CV_8UC3, cv::Scalar(1, 2, 3)));
  std::string segment = "\xFF\xE1";
  const size_t payload = 60000;
  segment += static_cast<char>((payload + 2) >> 8);
  segment += static_cast<char>((payload + 2) & 0xFF);
  segment += std::string(payload, 'x');
  ExpectSize(jpeg.substr(0, 2) + segment + jpeg.substr(2), "JPEG", 37, 23);
}

TEST(ImageHeaderTest, AnythingElseHasNoSize) {
  const std::string png = Encode(".png", cv::Mat(23, 37, CV_8UC3));
  const std::string jpeg = Encode(".jpg", cv::Mat(23, 37, CV_8UC3));
  EXPECT_FALSE(HeaderOf("").has_value());
  EXPECT_FALSE(HeaderOf("not an image at all").has_value());
  EXPECT_FALSE(HeaderOf("GIF89a\x10\x00\x10\x00").has_value());  // not decoded by the pipeline
  EXPECT_FALSE(HeaderOf(png.substr(0, 20)).has_value());          // cut inside IHDR
  EXPECT_FALSE(HeaderOf(jpeg.substr(0, 4)).has_value());          // cut before the frame
  EXPECT_FALSE(HeaderOf(Encode(".tiff", cv::Mat(23, 37, CV_8UC3)).substr(0, 8)).has_value());
  EXPECT_FALSE(HeaderOf("P6\n# comment only\n").has_value());
  std::string zero_width = png;
  zero_width.replace(16, 4, std::string(4, '\0'));
  EXPECT_FALSE(HeaderOf(zero_width).has_value());
}

}  // namespace
}  // namespace tl::engine
