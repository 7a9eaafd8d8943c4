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
// included), DEL or a C1 control (U+0080 to U+009F): the characters that
// break a log line in two or drive a terminal.
bool HasControlCharacters(absl::string_view text);

// `text` with every control character (as above) written as "\xNN" (C1:
// "\u00NN"), so that whatever a caller wrote shows as one line of plain
// characters: it cannot start a forged log line or send a terminal an
// escape sequence.
std::string EscapeControlCharacters(absl::string_view text);

// `text` cut to at most `max_bytes` bytes at a code point boundary, ending
// in "..." when cut.
std::string ClipUtf8(absl::string_view text, size_t max_bytes);

}  // namespace tl
