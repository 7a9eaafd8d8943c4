// Bounds on what callers and workers hand the scheduler, in one place: the
// free text a caller may set (job names, owners, reasons, names it shares a
// job with), the size of a spec, and the text and results workers report.
// What is stored stays small enough for every reply that carries jobs, and
// nothing a caller writes can break a log line or drive a terminal.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "tl/v1/service.pb.h"

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
// Other text in a worker's reports (class names, example file names, host names).
inline constexpr size_t kMaxReportedTextBytes = 1024;
// Example file names a dataset summary carries (the dataset check names the first ten).
inline constexpr int kMaxReportedExamples = 10;
// Devices one worker announces (more GPUs than any machine holds).
inline constexpr int kMaxReportedDevices = 64;
// A JobSpec as stored (a spec holds names and paths, not data). Together with the result bound
// every job stays far below a ListJobs page (2 MiB) and the 4 MiB message limit.
inline constexpr size_t kMaxSpecBytes = 256 << 10;
inline constexpr size_t kMaxResultBytes = 1 << 20;

// INVALID_ARGUMENT naming `field` when `text` holds control characters or more than
// `max_characters` characters.
absl::Status CheckCallerText(absl::string_view field, absl::string_view text,
                             size_t max_characters);

// Clips what a worker reports to the bounds above: texts are cut, example lists shortened,
// and a result still larger than kMaxResultBytes loses its evaluation reports (report.json
// keeps them). Returns a note for the log when the result lost anything, else "".
std::string BoundWorkerReport(tl::v1::WorkerMessage& message);

}  // namespace tl::server
