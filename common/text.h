// Text that callers write (job names, owners, reasons, worker ids) and that
// ends up in log lines, terminals and replies: counted in characters, checked
// for control characters, escaped for display, clipped to a size.
#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace tl {

// Unicode code points in UTF-8 `text` (a byte that starts no sequence
// counts as one).
size_t CountCodePoints(absl::string_view text);

// Whether `text` holds a C0 control (U+0000 to U+001F, newline and tab
// included), DEL, a C1 control (U+0080 to U+009F), an invisible character
// that reorders or splits what is shown (zero-width characters U+200B to
// U+200F and U+2060 to U+2064, bidirectional controls U+202A to U+202E and
// U+2066 to U+2069, the separators U+2028 and U+2029, U+FEFF), or a byte that
// is not well-formed UTF-8: what breaks a log line in two, drives a
// terminal, or makes a line read other than it is.
bool HasControlCharacters(absl::string_view text);

// `text` with each such character written as "\uNNNN", and each C0 control,
// DEL and malformed byte as "\xNN", so that whatever a caller or a file name
// holds shows as one line of plain characters: it cannot start a forged log
// line or send a terminal an escape sequence.
std::string EscapeControlCharacters(absl::string_view text);

// `text` with each byte that is not part of well-formed UTF-8 written as
// "\xNN" and everything else kept: what proto3 string fields must hold (a
// message with malformed UTF-8 in a string fails to parse at the other end).
std::string EscapeMalformedUtf8(absl::string_view text);

// The longest prefix of `text` of at most `max_bytes` bytes that ends at a
// code point boundary (for fixed-width columns).
std::string PrefixUtf8(absl::string_view text, size_t max_bytes);

// `text` cut to at most `max_bytes` bytes at a code point boundary, ending
// in "..." when cut.
std::string ClipUtf8(absl::string_view text, size_t max_bytes);

}  // namespace tl
