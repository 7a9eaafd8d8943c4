// Minimal line logging to stderr: "2026-11-27T22:13:13.123Z I tlserver] text",
// control characters in the text escaped so that every event is one line.
// Debian's abseil (20220623) predates absl/log; this is all the processes
// need: one line per event, written whole even from several threads.
#pragma once

#include <string>

#include "absl/strings/str_cat.h"

namespace tl {

enum class LogLevel { kInfo, kWarning, kError };

// The program name shown on every line; set once from main().
void SetLogProgramName(const std::string& name);
void LogLine(LogLevel level, const std::string& text);

template <typename... Parts>
void LogInfo(const Parts&... parts) {
  LogLine(LogLevel::kInfo, absl::StrCat(parts...));
}
template <typename... Parts>
void LogWarning(const Parts&... parts) {
  LogLine(LogLevel::kWarning, absl::StrCat(parts...));
}
template <typename... Parts>
void LogError(const Parts&... parts) {
  LogLine(LogLevel::kError, absl::StrCat(parts...));
}

}  // namespace tl
