// Files written whole or not at all, also on a full disk
// (testing/file_size_limit.h).
#include "base/atomic_file.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/errors.h"
#include "base/fnv1a.h"
#include "common/testing/temp_dir.h"
#include "testing/file_size_limit.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;
using ::tl::engine::testing::FileSizeLimit;
using ::tl::testing::TempDir;

std::string Read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

std::vector<std::string> Names(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(AtomicFileTest, WritesTheWholeFileAndReportsSizeAndHash) {
  TempDir dir;
  const std::string path = dir.Sub("report.json");
  const WrittenFile written = WriteFileAtomically(path, "{\"a\": 1}\n");
  EXPECT_EQ(Read(path), "{\"a\": 1}\n");
  EXPECT_EQ(written.size, 9u);
  EXPECT_EQ(written.fnv1a, Fnv1a("{\"a\": 1}\n"));
  EXPECT_EQ(Fnv1a(""), 0xcbf29ce484222325u);  // FNV-1a's offset basis
  WriteFileAtomically(path, "replaced");
  EXPECT_EQ(Read(path), "replaced");
  EXPECT_EQ(Names(dir.path()), std::vector<std::string>{"report.json"});  // no temporary left
}

TEST(AtomicFileTest, AFullDiskLeavesThePreviousFileWholeAndSaysWhy) {
  TempDir dir;
  const std::string path = dir.Sub("checkpoint.bin");
  const std::string previous(3000, 'p');
  WriteFileAtomically(path, previous);
  std::string message;
  {
    FileSizeLimit limit(4096);
    try {
      WriteFileAtomically(path, std::string(200000, 'n'));
    } catch (const EngineError& error) {
      EXPECT_EQ(error.kind(), ErrorKind::kInternal);
      message = error.what();
    }
  }
  EXPECT_NE(message.find("cannot write " + path), std::string::npos) << message;
  EXPECT_NE(message.find("File too large"), std::string::npos) << message;
  EXPECT_EQ(Read(path), previous);
  EXPECT_EQ(Names(dir.path()), std::vector<std::string>{"checkpoint.bin"});
}

// Libraries write through the stream and throw in their own words; the
// system's reason is what the error says, and the old file stays.
TEST(AtomicFileTest, AWriterThatThrowsOnAFullDiskLeavesThePreviousFile) {
  TempDir dir;
  const std::string path = dir.Sub("model.pt");
  WriteFileAtomically(path, "old model");
  std::string message;
  {
    FileSizeLimit limit(1024);
    try {
      WriteFileAtomically(path, [](std::ostream& out) {
        out << std::string(100000, 'm');
        if (!out) throw std::runtime_error("PytorchStreamWriter failed writing file\nbacktrace");
      });
    } catch (const EngineError& error) {
      message = error.what();
    }
  }
  EXPECT_EQ(message, "cannot write " + path + ": File too large");
  EXPECT_EQ(Read(path), "old model");
  EXPECT_EQ(Names(dir.path()), std::vector<std::string>{"model.pt"});
}

TEST(AtomicFileTest, AWriterThatFailsForItsOwnReasonLeavesThePreviousFile) {
  TempDir dir;
  const std::string path = dir.Sub("metrics.json");
  WriteFileAtomically(path, "old");
  try {
    WriteFileAtomically(path, [](std::ostream& out) {
      out << "half";
      throw std::runtime_error("serializer gave up\nmore lines");
    });
    FAIL() << "no error";
  } catch (const EngineError& error) {
    EXPECT_EQ(std::string(error.what()), "cannot write " + path + ": serializer gave up");
  }
  EXPECT_EQ(Read(path), "old");
  EXPECT_EQ(Names(dir.path()), std::vector<std::string>{"metrics.json"});
}

TEST(AtomicFileTest, AMissingFolderIsAnErrorNamingThePath) {
  TempDir dir;
  EXPECT_THROW(WriteFileAtomically(dir.Sub("no/such/folder/file"), "x"), EngineError);
}

}  // namespace
}  // namespace tl::engine
