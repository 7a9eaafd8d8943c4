// Bounds on the free text a caller may set (job names, owners, reasons,
// names it shares a job with) and on the text workers report, in one place:
// what is stored stays small enough for every reply that lists jobs, and
// nothing a caller writes can break a log line or drive a terminal.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tl::server {

// Limits in characters (Unicode code points), so that 200 "é" fit as well as 200 "e".
inline constexpr size_t kMaxJobNameCharacters = 200;
inline constexpr size_t kMaxOwnerCharacters = 128;
inline constexpr size_t kMaxReasonCharacters = 1000;
// A SubmitJobRequest.request_id: room for a UUID or a hash, not for data.
inline constexpr size_t kMaxRequestIdBytes = 128;
// Text a worker reports (a failure's message, a log line) is clipped, not refused: the report
// carries an outcome that must not be lost.
inline constexpr size_t kMaxWorkerErrorBytes = 4096;
inline constexpr size_t kMaxLogLineBytes = 4096;

// INVALID_ARGUMENT naming `field` when `text` holds control characters or more than
// `max_characters` characters.
absl::Status CheckCallerText(absl::string_view field, absl::string_view text,
                             size_t max_characters);

}  // namespace tl::server
