#include "common/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "common/testing/temp_dir.h"

namespace tl {
namespace {

// What LogInfo writes to stderr, captured in a file.
std::string Logged(const std::string& text) {
  tl::testing::TempDir dir;
  const std::string path = dir.path() + "/stderr";
  const int file = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  const int saved = ::dup(STDERR_FILENO);
  ::dup2(file, STDERR_FILENO);
  LogInfo("job queued (", text, ")");
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(file);
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

// Whatever a caller wrote stays on its one line: no forged line, no escape sequence.
TEST(LogTest, CallerTextCannotBreakTheLineOrDriveATerminal) {
  const std::string line =
      Logged("x\n2026-12-06T00:00:00.000Z I tlserver] job 0 SUCCEEDED\x1b[2J\r");
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;  // one line, ended once
  EXPECT_EQ(line.find('\x1b'), std::string::npos);
  EXPECT_EQ(line.find('\r'), std::string::npos);
  EXPECT_NE(line.find("x\\x0a2026-12-06T00:00:00.000Z I tlserver] job 0"), std::string::npos)
      << line;
}

}  // namespace
}  // namespace tl
