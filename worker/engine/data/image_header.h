// An image's size from its header, read before anything is decoded: a small
// file can declare a huge image (a 875 KB PNG of 30,000 x 30,000 pixels
// decodes to 2.7 GB), so the pixel limit is applied to what the header
// says. Pure byte parsing, no OpenCV.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace tl::engine {

// Images above this many pixels are refused unless a job's reader is given
// another limit (tlworker --max_image_pixels). 2^26 is 8192 x 8192: every
// camera short of medium format, while one decode stays under 200 MB of
// 8-bit BGR.
inline constexpr int64_t kDefaultMaxImagePixels = int64_t{1} << 26;

struct ImageHeader {
  const char* format = "";  // "PNG", "JPEG", ...
  int64_t width = 0;
  int64_t height = 0;
  int64_t pixels() const { return width * height; }
};

// The format and size the header of `data` states, for the formats the
// image pipeline decodes: PNG, JPEG (the first SOF marker), BMP, PNM/PAM/PFM,
// TIFF (the first page, BigTIFF too) and WebP (lossy, lossless, extended).
// Empty for any other content, for a header cut short, and for a zero side.
std::optional<ImageHeader> ReadImageHeader(const void* data, size_t size);

}  // namespace tl::engine
