#include "common/text.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace tl {
namespace {

// The length of the UTF-8 sequence that `lead` starts; 1 for a byte that starts none.
size_t SequenceLength(unsigned char lead) {
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  if (lead >= 0xE0) return lead <= 0xEF ? 3 : 1;
  if (lead >= 0xC2) return 2;
  return 1;
}

bool IsContinuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

// The sequence at `text[i]`'s length, checked against the bytes that follow.
size_t SequenceAt(absl::string_view text, size_t i) {
  const size_t length = SequenceLength(static_cast<unsigned char>(text[i]));
  if (i + length > text.size()) return 1;
  for (size_t k = 1; k < length; ++k) {
    if (!IsContinuation(static_cast<unsigned char>(text[i + k]))) return 1;
  }
  return length;
}

bool IsC0OrDelete(unsigned char byte) { return byte < 0x20 || byte == 0x7F; }

// U+0080 to U+009F, encoded as 0xC2 0x80 to 0xC2 0x9F.
bool IsC1(absl::string_view text, size_t i, size_t length) {
  return length == 2 && static_cast<unsigned char>(text[i]) == 0xC2 &&
         static_cast<unsigned char>(text[i + 1]) <= 0x9F;
}

}  // namespace

size_t CountCodePoints(absl::string_view text) {
  size_t count = 0;
  for (size_t i = 0; i < text.size(); i += SequenceAt(text, i)) ++count;
  return count;
}

bool HasControlCharacters(absl::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t length = SequenceAt(text, i);
    if (IsC0OrDelete(static_cast<unsigned char>(text[i])) || IsC1(text, i, length)) return true;
    i += length;
  }
  return false;
}

std::string EscapeControlCharacters(absl::string_view text) {
  std::string escaped;
  escaped.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t length = SequenceAt(text, i);
    const auto lead = static_cast<unsigned char>(text[i]);
    if (IsC0OrDelete(lead)) {
      absl::StrAppendFormat(&escaped, "\\x%02x", lead);
    } else if (IsC1(text, i, length)) {
      absl::StrAppendFormat(&escaped, "\\u%04x", static_cast<unsigned char>(text[i + 1]));
    } else {
      escaped.append(text.data() + i, length);
    }
    i += length;
  }
  return escaped;
}

std::string ClipUtf8(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  constexpr absl::string_view kEllipsis = "...";
  const size_t budget = max_bytes > kEllipsis.size() ? max_bytes - kEllipsis.size() : 0;
  size_t end = 0;
  while (end < text.size()) {
    const size_t length = SequenceAt(text, end);
    if (end + length > budget) break;
    end += length;
  }
  std::string clipped(text.substr(0, end));
  clipped.append(kEllipsis.data(), std::min(kEllipsis.size(), max_bytes - end));
  return clipped;
}

}  // namespace tl
