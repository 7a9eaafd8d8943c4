#include "data/image_header.h"

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <string>

namespace tl::engine {
namespace {

// Bounds-checked reads of a byte range; every read says whether it fit.
class Bytes {
 public:
  Bytes(const void* data, size_t size) : data_(static_cast<const uint8_t*>(data)), size_(size) {}

  size_t size() const { return size_; }
  bool Has(size_t offset, size_t count) const {
    return offset <= size_ && count <= size_ - offset;
  }
  bool Matches(size_t offset, const char* text) const {
    const size_t count = std::strlen(text);
    return Has(offset, count) && std::memcmp(data_ + offset, text, count) == 0;
  }
  uint8_t At(size_t offset) const { return data_[offset]; }
  // Unsigned integers of `count` bytes (at most 8), little or big endian.
  bool Read(size_t offset, size_t count, bool little_endian, uint64_t& value) const {
    if (!Has(offset, count)) return false;
    value = 0;
    for (size_t i = 0; i < count; ++i) {
      const uint64_t byte = data_[offset + (little_endian ? count - 1 - i : i)];
      value = (value << 8) | byte;
    }
    return true;
  }

 private:
  const uint8_t* data_;
  size_t size_;
};

std::optional<ImageHeader> Sized(const char* format, uint64_t width, uint64_t height) {
  // A zero side decodes to nothing; sides above 2^31 are no real image and
  // would overflow the product.
  constexpr uint64_t kLargestSide = uint64_t{1} << 31;
  if (width == 0 || height == 0 || width > kLargestSide || height > kLargestSide) {
    return std::nullopt;
  }
  return ImageHeader{format, static_cast<int64_t>(width), static_cast<int64_t>(height)};
}

std::optional<ImageHeader> Png(const Bytes& bytes) {
  // Signature, then the IHDR chunk first: length, "IHDR", width, height.
  uint64_t width = 0;
  uint64_t height = 0;
  if (!bytes.Matches(12, "IHDR") || !bytes.Read(16, 4, false, width) ||
      !bytes.Read(20, 4, false, height)) {
    return std::nullopt;
  }
  return Sized("PNG", width, height);
}

bool IsJpegFrameMarker(uint8_t marker) {
  // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
  return marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
}

std::optional<ImageHeader> Jpeg(const Bytes& bytes) {
  size_t at = 2;  // after SOI
  while (bytes.Has(at, 2)) {
    if (bytes.At(at) != 0xFF) return std::nullopt;  // not at a marker: damaged
    while (bytes.Has(at + 1, 1) && bytes.At(at + 1) == 0xFF) ++at;  // fill bytes
    if (!bytes.Has(at + 1, 1)) return std::nullopt;
    const uint8_t marker = bytes.At(at + 1);
    at += 2;
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;  // no length
    // The image data (SOS) or its end before any frame header: no size.
    if (marker == 0xD9 || marker == 0xDA) return std::nullopt;
    uint64_t length = 0;
    if (!bytes.Read(at, 2, false, length) || length < 2) return std::nullopt;
    if (IsJpegFrameMarker(marker)) {
      // Length, precision, height, width. A zero height (set later by a DNL
      // marker) is refused with the other unreadable sizes.
      uint64_t height = 0;
      uint64_t width = 0;
      if (!bytes.Read(at + 3, 2, false, height) || !bytes.Read(at + 5, 2, false, width)) {
        return std::nullopt;
      }
      return Sized("JPEG", width, height);
    }
    at += length;
  }
  return std::nullopt;
}

std::optional<ImageHeader> Bmp(const Bytes& bytes) {
  uint64_t info_size = 0;
  if (!bytes.Read(14, 4, true, info_size)) return std::nullopt;
  uint64_t width = 0;
  uint64_t height = 0;
  if (info_size == 12) {  // OS/2 1.x: 16-bit unsigned sides
    if (!bytes.Read(18, 2, true, width) || !bytes.Read(20, 2, true, height)) return std::nullopt;
    return Sized("BMP", width, height);
  }
  if (!bytes.Read(18, 4, true, width) || !bytes.Read(22, 4, true, height)) return std::nullopt;
  // Signed 32-bit sides; a negative height means rows run top down.
  const int32_t signed_width = static_cast<int32_t>(static_cast<uint32_t>(width));
  const int32_t signed_height = static_cast<int32_t>(static_cast<uint32_t>(height));
  if (signed_width <= 0 || signed_height == INT32_MIN) return std::nullopt;
  return Sized("BMP", static_cast<uint64_t>(signed_width),
               static_cast<uint64_t>(std::abs(signed_height)));
}

// PNM text headers: whitespace-separated decimal fields, '#' comments to
// the end of the line.
class PnmFields {
 public:
  PnmFields(const Bytes& bytes, size_t at) : bytes_(bytes), at_(at) {}
  bool Next(std::string& field) {
    field.clear();
    while (bytes_.Has(at_, 1)) {
      const char c = static_cast<char>(bytes_.At(at_));
      if (c == '#') {
        while (bytes_.Has(at_, 1) && bytes_.At(at_) != '\n' && bytes_.At(at_) != '\r') ++at_;
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        ++at_;
      } else {
        break;
      }
    }
    while (bytes_.Has(at_, 1) && !std::isspace(bytes_.At(at_)) && bytes_.At(at_) != '#' &&
           field.size() < 32) {
      field.push_back(static_cast<char>(bytes_.At(at_++)));
    }
    return !field.empty();
  }
  bool NextNumber(uint64_t& value) {
    std::string field;
    if (!Next(field) || field.size() > 12) return false;
    for (char c : field) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    }
    value = std::stoull(field);
    return true;
  }

 private:
  const Bytes& bytes_;
  size_t at_;
};

std::optional<ImageHeader> Pnm(const Bytes& bytes) {
  const char kind = static_cast<char>(bytes.At(1));
  PnmFields fields(bytes, 2);
  uint64_t width = 0;
  uint64_t height = 0;
  if (kind == '7') {  // PAM: "WIDTH n", "HEIGHT n", ... up to ENDHDR
    std::string field;
    while (fields.Next(field) && field != "ENDHDR") {
      if (field == "WIDTH" && !fields.NextNumber(width)) return std::nullopt;
      if (field == "HEIGHT" && !fields.NextNumber(height)) return std::nullopt;
    }
    return Sized("PAM", width, height);
  }
  if (!fields.NextNumber(width) || !fields.NextNumber(height)) return std::nullopt;
  return Sized(kind == 'F' || kind == 'f' ? "PFM" : "PNM", width, height);
}

std::optional<ImageHeader> Tiff(const Bytes& bytes) {
  const bool little = bytes.At(0) == 'I';
  uint64_t version = 0;
  bytes.Read(2, 2, little, version);
  const bool big_tiff = version == 43;
  const size_t offset_size = big_tiff ? 8 : 4;
  const size_t count_size = big_tiff ? 8 : 2;
  const size_t entry_size = big_tiff ? 20 : 12;
  uint64_t directory = 0;
  if (!bytes.Read(big_tiff ? 8 : 4, offset_size, little, directory)) return std::nullopt;
  uint64_t entries = 0;
  if (!bytes.Read(directory, count_size, little, entries)) return std::nullopt;
  uint64_t width = 0;
  uint64_t height = 0;
  for (uint64_t i = 0; i < entries; ++i) {
    const uint64_t entry = directory + count_size + i * entry_size;
    uint64_t tag = 0;
    uint64_t type = 0;
    if (!bytes.Read(entry, 2, little, tag) || !bytes.Read(entry + 2, 2, little, type)) {
      return std::nullopt;
    }
    if (tag != 256 && tag != 257) continue;  // ImageWidth, ImageLength
    // SHORT, LONG or (BigTIFF) LONG8, held in the entry's value field.
    const size_t value_size = type == 3 ? 2 : type == 4 ? 4 : type == 16 && big_tiff ? 8 : 0;
    uint64_t value = 0;
    if (value_size == 0 ||
        !bytes.Read(entry + 4 + offset_size, value_size, little, value)) {
      return std::nullopt;
    }
    (tag == 256 ? width : height) = value;
  }
  return Sized("TIFF", width, height);
}

std::optional<ImageHeader> WebP(const Bytes& bytes) {
  uint64_t width = 0;
  uint64_t height = 0;
  if (bytes.Matches(12, "VP8 ")) {
    // Lossy: a 3-byte frame tag, the start code 9d 01 2a, 14-bit sides.
    if (!bytes.Has(23, 3) || bytes.At(23) != 0x9d || bytes.At(24) != 0x01 ||
        bytes.At(25) != 0x2a || !bytes.Read(26, 2, true, width) ||
        !bytes.Read(28, 2, true, height)) {
      return std::nullopt;
    }
    return Sized("WebP", width & 0x3fff, height & 0x3fff);
  }
  if (bytes.Matches(12, "VP8L")) {
    // Lossless: signature 0x2f, then 14 bits of width - 1, 14 of height - 1.
    uint64_t packed = 0;
    if (!bytes.Has(20, 1) || bytes.At(20) != 0x2f || !bytes.Read(21, 4, true, packed)) {
      return std::nullopt;
    }
    return Sized("WebP", (packed & 0x3fff) + 1, ((packed >> 14) & 0x3fff) + 1);
  }
  if (bytes.Matches(12, "VP8X")) {
    // Extended: the canvas, 24 bits each of width - 1 and height - 1.
    if (!bytes.Read(24, 3, true, width) || !bytes.Read(27, 3, true, height)) return std::nullopt;
    return Sized("WebP", width + 1, height + 1);
  }
  return std::nullopt;
}

}  // namespace

std::optional<ImageHeader> ReadImageHeader(const void* data, size_t size) {
  const Bytes bytes(data, size);
  if (bytes.Matches(0, "\x89PNG\r\n\x1a\n")) return Png(bytes);
  if (bytes.Has(0, 3) && bytes.At(0) == 0xFF && bytes.At(1) == 0xD8 && bytes.At(2) == 0xFF) {
    return Jpeg(bytes);
  }
  if (bytes.Matches(0, "BM")) return Bmp(bytes);
  if (bytes.Has(0, 2) && bytes.At(0) == 'P' &&
      std::strchr("1234567Ff", static_cast<char>(bytes.At(1))) != nullptr &&
      bytes.At(1) != 0) {
    return Pnm(bytes);
  }
  if (bytes.Matches(0, "II*") || bytes.Matches(0, "MM") || bytes.Matches(0, "II+")) {
    uint64_t version = 0;
    if (bytes.Read(2, 2, bytes.At(0) == 'I', version) && (version == 42 || version == 43)) {
      return Tiff(bytes);
    }
    return std::nullopt;
  }
  if (bytes.Matches(0, "RIFF") && bytes.Matches(8, "WEBP")) return WebP(bytes);
  return std::nullopt;
}

}  // namespace tl::engine
