// Runs the idx_to_folder binary on tiny IDX files written here, plain and
// gzip-compressed, and checks the folder tree and every pixel it writes.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

// 12 images of 4 rows by 3 columns (not square, so that a rows/columns mix-up
// shows); labels 0, 1, 2 in turn, and 5 for the last two.
constexpr int kRows = 4;
constexpr int kCols = 3;
const std::vector<uint8_t> kLabels = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 5, 5};

uint8_t PixelOf(int index, int row, int col) {
  return static_cast<uint8_t>(index * 17 + row * kCols + col + 1);
}

void AppendBigEndian(std::string& bytes, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>(value >> shift));
}

std::string IdxImages(int count) {
  std::string bytes;
  for (uint32_t field :
       {0x00000803u, static_cast<uint32_t>(count), uint32_t{kRows}, uint32_t{kCols}}) {
    AppendBigEndian(bytes, field);
  }
  for (int index = 0; index < count; ++index) {
    for (int row = 0; row < kRows; ++row) {
      for (int col = 0; col < kCols; ++col)
        bytes.push_back(static_cast<char>(PixelOf(index, row, col)));
    }
  }
  return bytes;
}

std::string IdxLabels(const std::vector<uint8_t>& labels) {
  std::string bytes;
  AppendBigEndian(bytes, 0x00000801);
  AppendBigEndian(bytes, static_cast<uint32_t>(labels.size()));
  bytes.append(labels.begin(), labels.end());
  return bytes;
}

void WritePlain(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

void WriteGzip(const fs::path& path, const std::string& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << path;
  ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(file), Z_OK);
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct RunResult {
  int exit_code;
  std::string stderr_text;
};

// The written tree as "class/file" -> pixels (rows then columns).
std::map<std::string, std::vector<uint8_t>> ReadTree(const fs::path& root) {
  std::map<std::string, std::vector<uint8_t>> tree;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file()) continue;
    const cv::Mat image = cv::imread(entry.path().string(), cv::IMREAD_UNCHANGED);
    EXPECT_EQ(image.type(), CV_8UC1) << entry.path();
    EXPECT_EQ(image.rows, kRows) << entry.path();
    EXPECT_EQ(image.cols, kCols) << entry.path();
    std::vector<uint8_t> pixels;
    if (image.isContinuous()) pixels.assign(image.data, image.data + image.total());
    tree[entry.path().lexically_relative(root).string()] = pixels;
  }
  return tree;
}

std::vector<uint8_t> PixelsOf(int index) {
  std::vector<uint8_t> pixels;
  for (int row = 0; row < kRows; ++row) {
    for (int col = 0; col < kCols; ++col) pixels.push_back(PixelOf(index, row, col));
  }
  return pixels;
}

class IdxToFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "idx_to_folder_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    WritePlain(root_ / "images", IdxImages(12));
    WritePlain(root_ / "labels", IdxLabels(kLabels));
    WriteGzip(root_ / "images.gz", IdxImages(12));
    WriteGzip(root_ / "labels.gz", IdxLabels(kLabels));
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }

  // Runs the converter with the given arguments (already quoted as needed).
  RunResult Run(const std::string& arguments) const {
    const fs::path stderr_path = root_ / "stderr.txt";
    const std::string command = std::string("'") + IDX_TO_FOLDER_BINARY + "' " + arguments +
                                " > /dev/null 2> '" + stderr_path.string() + "'";
    const int status = std::system(command.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ReadText(stderr_path)};
  }

  std::string Files(const std::string& images, const std::string& labels,
                    const std::string& out) const {
    return "--images '" + (root_ / images).string() + "' --labels '" + (root_ / labels).string() +
           "' --out '" + (root_ / out).string() + "'";
  }

  fs::path root_;
};

TEST_F(IdxToFolderTest, WritesEveryImageUnderItsLabel) {
  const RunResult result = Run(Files("images", "labels", "out"));
  ASSERT_EQ(result.exit_code, 0) << result.stderr_text;
  std::map<std::string, std::vector<uint8_t>> expected;
  for (size_t index = 0; index < kLabels.size(); ++index) {
    // Two digits: file names are padded to the widest index, 11.
    char name[32];
    std::snprintf(name, sizeof(name), "%d/%02zu.png", kLabels[index], index);
    expected[name] = PixelsOf(static_cast<int>(index));
  }
  EXPECT_EQ(ReadTree(root_ / "out"), expected);
}

TEST_F(IdxToFolderTest, GzipInputGivesTheSameTree) {
  ASSERT_EQ(Run(Files("images", "labels", "plain")).exit_code, 0);
  const RunResult result = Run(Files("images.gz", "labels.gz", "gz"));
  ASSERT_EQ(result.exit_code, 0) << result.stderr_text;
  EXPECT_EQ(ReadTree(root_ / "gz"), ReadTree(root_ / "plain"));
  EXPECT_EQ(ReadTree(root_ / "gz").size(), kLabels.size());
}

TEST_F(IdxToFolderTest, SelectsClassesAndSlicesPerClass) {
  // Label 0 is at 0, 3, 6, 9; label 1 at 1, 4, 7.
  const RunResult first = Run(Files("images", "labels", "first") + " --classes 0,1 --per-class 2");
  ASSERT_EQ(first.exit_code, 0) << first.stderr_text;
  const RunResult second =
      Run(Files("images", "labels", "second") + " --classes 0,1 --per-class 2 --skip-per-class 2");
  ASSERT_EQ(second.exit_code, 0) << second.stderr_text;

  std::set<std::string> first_names;
  for (const auto& [name, pixels] : ReadTree(root_ / "first")) first_names.insert(name);
  std::set<std::string> second_names;
  for (const auto& [name, pixels] : ReadTree(root_ / "second")) second_names.insert(name);
  EXPECT_EQ(first_names, (std::set<std::string>{"0/00.png", "0/03.png", "1/01.png", "1/04.png"}));
  EXPECT_EQ(second_names, (std::set<std::string>{"0/06.png", "0/09.png", "1/07.png"}));
  EXPECT_FALSE(fs::exists(root_ / "first" / "2"));
  EXPECT_EQ(ReadTree(root_ / "second")["1/07.png"], PixelsOf(7));
}

TEST_F(IdxToFolderTest, NamesClassFolders) {
  const RunResult named = Run(Files("images", "labels", "named") + " --class-names 'a,b,c,d,e,f'");
  ASSERT_EQ(named.exit_code, 0) << named.stderr_text;
  EXPECT_TRUE(fs::exists(root_ / "named" / "a" / "00.png"));
  EXPECT_TRUE(fs::exists(root_ / "named" / "f" / "11.png"));
  EXPECT_FALSE(fs::exists(root_ / "named" / "0"));

  const RunResult fashion = Run(Files("images", "labels", "fashion") + " --fashion-names");
  ASSERT_EQ(fashion.exit_code, 0) << fashion.stderr_text;
  for (const char* name : {"T-shirt", "Trouser", "Pullover", "Sandal"}) {
    EXPECT_TRUE(fs::is_directory(root_ / "fashion" / name)) << name;
  }
}

void ExpectFailureNaming(const RunResult& result, const std::string& text) {
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.stderr_text.find(text), std::string::npos) << result.stderr_text;
}

TEST_F(IdxToFolderTest, RejectsBadFilesNamingThem) {
  // Swapped files: each magic number is the other's.
  ExpectFailureNaming(Run(Files("labels", "images", "out")), (root_ / "labels").string());
  WritePlain(root_ / "short", IdxImages(12).substr(0, 100));
  ExpectFailureNaming(Run(Files("short", "labels", "out")), (root_ / "short").string());
  WritePlain(root_ / "long", IdxImages(12) + "x");
  ExpectFailureNaming(Run(Files("long", "labels", "out")), (root_ / "long").string());
  WriteGzip(root_ / "eleven", IdxLabels({0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 5}));
  ExpectFailureNaming(Run(Files("images", "eleven", "out")), (root_ / "eleven").string());
  ExpectFailureNaming(Run(Files("missing", "labels", "out")), (root_ / "missing").string());
  // A gzip stream cut in half.
  std::ifstream gz(root_ / "images.gz", std::ios::binary);
  const std::string compressed((std::istreambuf_iterator<char>(gz)), {});
  WritePlain(root_ / "cut.gz", compressed.substr(0, compressed.size() / 2));
  ExpectFailureNaming(Run(Files("cut.gz", "labels", "out")), (root_ / "cut.gz").string());
  EXPECT_FALSE(fs::exists(root_ / "out"));
}

TEST_F(IdxToFolderTest, RejectsBadArguments) {
  ExpectFailureNaming(Run(Files("images", "labels", "out") + " --class-names 'a/b,c'"), "a/b");
  ExpectFailureNaming(Run(Files("images", "labels", "out") + " --class-names '.a,b'"), ".a");
  ExpectFailureNaming(Run(Files("images", "labels", "out") + " --class-names 'a,b'"), "label 2");
  ExpectFailureNaming(Run(Files("images", "labels", "out") + " --per-class -3"), "--per-class");
  ExpectFailureNaming(Run(Files("images", "labels", "out") + " --colour"), "--colour");
  ExpectFailureNaming(Run("--images x"), "required");
  ExpectFailureNaming(Run(Files("images", "labels", "out") + " --skip-per-class 2x"),
                      "--skip-per-class");
  ExpectFailureNaming(Run(Files("images", "labels", "out") + " --classes ''"), "--classes");
  ExpectFailureNaming(Run(Files("images", "labels", "out") + " --classes 1,1"), "twice");
  ExpectFailureNaming(Run(Files("images", "labels", "out") + " --fashion-names --class-names a"),
                      "--fashion-names");
  EXPECT_FALSE(fs::exists(root_ / "out"));
}

TEST_F(IdxToFolderTest, HelpNamesEveryFlagAndSucceeds) {
  const fs::path help_path = root_ / "help.txt";
  const std::string command = std::string("'") + IDX_TO_FOLDER_BINARY + "' --help > '" +
                              help_path.string() + "'";
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const std::string help = ReadText(help_path);
  for (const char* flag : {"--images", "--labels", "--out", "--classes", "--per-class",
                           "--skip-per-class", "--class-names", "--fashion-names", "--threads"}) {
    EXPECT_NE(help.find(flag), std::string::npos) << flag << " missing from\n" << help;
  }
}

TEST_F(IdxToFolderTest, TakesValuesAfterAnEqualsSign) {
  const RunResult result = Run("--images='" + (root_ / "images").string() + "' --labels='" +
                               (root_ / "labels").string() + "' --out='" +
                               (root_ / "eq").string() + "' --classes=0 --per-class=1");
  ASSERT_EQ(result.exit_code, 0) << result.stderr_text;
  EXPECT_EQ(ReadTree(root_ / "eq").size(), 1u);
}

}  // namespace
