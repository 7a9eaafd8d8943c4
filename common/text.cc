#include "common/text.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace tl {
namespace {

constexpr char32_t kInvalid = 0xFFFFFFFF;

// The code point at `text[i]` and its length in bytes: a well-formed, shortest-form UTF-8
// sequence, or kInvalid with length 1 for a byte that starts none (a stray continuation byte,
// an overlong form, a surrogate, a cut sequence, anything above U+10FFFF).
std::pair<char32_t, size_t> DecodeAt(absl::string_view text, size_t i) {
  const auto lead = static_cast<unsigned char>(text[i]);
  if (lead < 0x80) return {lead, 1};
  size_t length = 0;
  char32_t code = 0;
  char32_t smallest = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2, code = lead & 0x1F, smallest = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3, code = lead & 0x0F, smallest = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4, code = lead & 0x07, smallest = 0x10000;
  } else {
    return {kInvalid, 1};
  }
  if (i + length > text.size()) return {kInvalid, 1};
  for (size_t k = 1; k < length; ++k) {
    const auto byte = static_cast<unsigned char>(text[i + k]);
    if ((byte & 0xC0) != 0x80) return {kInvalid, 1};
    code = (code << 6) | (byte & 0x3F);
  }
  if (code < smallest || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
    return {kInvalid, 1};
  }
  return {code, length};
}

// Characters that must not pass through as they are: C0 controls and DEL, C1 controls, and
// the invisible ones that reorder or split what a terminal or log viewer shows (zero-width
// characters, bidirectional controls, the line and paragraph separators, the byte-order mark).
bool IsUnsafe(char32_t code) {
  return code < 0x20 || code == 0x7F || (code >= 0x80 && code <= 0x9F) ||
         (code >= 0x200B && code <= 0x200F) || (code >= 0x2028 && code <= 0x202E) ||
         (code >= 0x2060 && code <= 0x2064) || (code >= 0x2066 && code <= 0x2069) ||
         code == 0xFEFF;
}

}  // namespace

size_t CountCodePoints(absl::string_view text) {
  size_t count = 0;
  for (size_t i = 0; i < text.size(); i += DecodeAt(text, i).second) ++count;
  return count;
}

bool HasControlCharacters(absl::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const auto [code, length] = DecodeAt(text, i);
    if (code == kInvalid || IsUnsafe(code)) return true;
    i += length;
  }
  return false;
}

std::string EscapeControlCharacters(absl::string_view text) {
  std::string escaped;
  escaped.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto [code, length] = DecodeAt(text, i);
    if (code == kInvalid || code < 0x20 || code == 0x7F) {
      absl::StrAppendFormat(&escaped, "\\x%02x", static_cast<unsigned char>(text[i]));
    } else if (IsUnsafe(code)) {
      absl::StrAppendFormat(&escaped, "\\u%04x", static_cast<unsigned>(code));
    } else {
      escaped.append(text.data() + i, length);
    }
    i += length;
  }
  return escaped;
}

std::string EscapeMalformedUtf8(absl::string_view text) {
  std::string escaped;
  escaped.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto [code, length] = DecodeAt(text, i);
    if (code == kInvalid) {
      absl::StrAppendFormat(&escaped, "\\x%02x", static_cast<unsigned char>(text[i]));
    } else {
      escaped.append(text.data() + i, length);
    }
    i += length;
  }
  return escaped;
}

std::string PrefixUtf8(absl::string_view text, size_t max_bytes) {
  size_t end = 0;
  while (end < text.size()) {
    const size_t length = DecodeAt(text, end).second;
    if (end + length > max_bytes) break;
    end += length;
  }
  return std::string(text.substr(0, end));
}

std::string ClipUtf8(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  constexpr absl::string_view kEllipsis = "...";
  std::string clipped =
      PrefixUtf8(text, max_bytes > kEllipsis.size() ? max_bytes - kEllipsis.size() : 0);
  clipped.append(kEllipsis.data(), std::min(kEllipsis.size(), max_bytes - clipped.size()));
  return clipped;
}

}  // namespace tl
