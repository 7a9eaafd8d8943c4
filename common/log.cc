#include "common/log.h"

#include <unistd.h>

#include <mutex>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/text.h"

namespace tl {
namespace {

std::mutex& ProgramNameMutex() {
  static std::mutex mutex;
  return mutex;
}

std::string& ProgramName() {
  static std::string name = "tl";
  return name;
}

char LevelLetter(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo:
      return 'I';
    case LogLevel::kWarning:
      return 'W';
    case LogLevel::kError:
      return 'E';
  }
  return '?';
}

}  // namespace

void SetLogProgramName(const std::string& name) {
  std::lock_guard<std::mutex> lock(ProgramNameMutex());
  ProgramName() = name;
}

void LogLine(LogLevel level, const std::string& text) {
  std::string program;
  {
    std::lock_guard<std::mutex> lock(ProgramNameMutex());
    program = ProgramName();
  }
  // Text often carries what callers wrote (job names, reasons, worker ids): escaped, it stays
  // one line and cannot forge another or drive a terminal that shows the log.
  const std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
                   " ", std::string(1, LevelLetter(level)), " ", program, "] ",
                   EscapeControlCharacters(text), "\n");
  // One write() per line keeps lines whole when threads log at once.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace tl
