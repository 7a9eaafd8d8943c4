#include "data/image_folder.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/errors.h"
#include "common/testing/temp_dir.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;

// Fixture images are 20 rows by 30 columns: the left 20 columns carry a color
// that encodes (class, index), the right 10 are white, so that a horizontal
// flip shows. A 20 px crop of the 20 px tall image keeps columns 5..24.
constexpr int kRows = 20;
constexpr int kCols = 30;
constexpr int kSide = 20;
constexpr int kBlue = 200;
constexpr int kImagesPerClass[] = {4, 5, 3};
constexpr int kReadableImages = 12;

int RedFor(int label) { return 60 + 60 * label; }
int GreenFor(int index) { return 20 + 30 * index; }

struct ImageId {
  int64_t label;
  int index;
  bool operator<(const ImageId& other) const {
    return std::make_pair(label, index) < std::make_pair(other.label, other.index);
  }
  bool operator==(const ImageId& other) const {
    return label == other.label && index == other.index;
  }
};

// Identity preprocessing: no resize for the 20 px tall fixtures, values v/255.
Preprocessing PlainPreprocessing(int resize = kSide, int crop = kSide) {
  Preprocessing preprocessing;
  preprocessing.resize_size = resize;
  preprocessing.crop_size = crop;
  preprocessing.mean = {0.0f, 0.0f, 0.0f};
  preprocessing.std = {1.0f, 1.0f, 1.0f};
  return preprocessing;
}

Preprocessing ImageNetPreprocessing(int resize, int crop) {
  Preprocessing preprocessing;
  preprocessing.resize_size = resize;
  preprocessing.crop_size = crop;
  preprocessing.mean = {0.485f, 0.456f, 0.406f};
  preprocessing.std = {0.229f, 0.224f, 0.225f};
  return preprocessing;
}

float Normalized(int value, const Preprocessing& preprocessing, int channel) {
  return (static_cast<float>(value) / 255.0f - preprocessing.mean[channel]) /
         preprocessing.std[channel];
}

void WriteImage(const fs::path& path, const cv::Mat& image) {
  ASSERT_TRUE(cv::imwrite(path.string(), image)) << path;
}

void WriteBytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

std::string RandomBytes(size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string bytes(count, '\0');
  for (char& byte : bytes) byte = static_cast<char>(rng() & 0xff);
  return bytes;
}

cv::Mat FixtureImage(int label, int index) {
  cv::Mat bgr(kRows, kCols, CV_8UC3, cv::Scalar(255, 255, 255));
  bgr(cv::Rect(0, 0, 20, kRows)).setTo(cv::Scalar(kBlue, GreenFor(index), RedFor(label)));
  return bgr;
}

// The CHW float image (normalized as PlainPreprocessing) at `at` of a batch.
struct View {
  const torch::Tensor& images;
  int64_t at;
  int Value(int channel, int y, int x) const {
    return static_cast<int>(std::lround(images[at][channel][y][x].item<float>() * 255.0f));
  }
  int Brightness(int y, int x) const { return Value(0, y, x) + Value(1, y, x) + Value(2, y, x); }
  bool Flipped() const { return Brightness(10, 0) > Brightness(10, kSide - 1); }
  // JPEG fixtures are off by a few levels; colors are 30 levels apart.
  ImageId Id() const {
    EXPECT_NEAR(Value(2, 10, 10), kBlue, 4);
    return {std::lround((Value(0, 10, 10) - 60) / 60.0),
            static_cast<int>(std::lround((Value(1, 10, 10) - 20) / 30.0))};
  }
};

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override { root_ = temp_dir_.path(); }

  tl::testing::TempDir temp_dir_;
  fs::path root_;
};

// root/data holds classes "Bird", "ant", "cat" (byte order puts capitals
// first), PNG and JPEG images, a corrupt .png, and entries the scan ignores.
class ImageFolderTest : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    data_ = root_ / "data";
    const char* const class_names[] = {"Bird", "ant", "cat"};
    for (int label = 0; label < 3; ++label) {
      const fs::path class_dir = data_ / class_names[label];
      fs::create_directories(class_dir);
      for (int index = 0; index < kImagesPerClass[label]; ++index) {
        // Index 2 is a JPEG and index 3 has an upper-case extension.
        const char* extension = index == 2 ? ".jpg" : index == 3 ? ".PNG" : ".png";
        WriteImage(class_dir / ("img" + std::to_string(index) + extension),
                   FixtureImage(label, index));
      }
    }
    WriteBytes(data_ / "ant" / "zz_corrupt.png", RandomBytes(600, 7));
    WriteBytes(data_ / "Bird" / "notes.txt", "not an image");
    WriteImage(data_ / "Bird" / ".hidden.png", FixtureImage(0, 9));
    fs::create_directories(data_ / "Bird" / "nested");
    WriteImage(data_ / "Bird" / "nested" / "deep.png", FixtureImage(0, 9));
    fs::create_directories(data_ / ".thumbnails");
    WriteImage(data_ / ".thumbnails" / "t.png", FixtureImage(0, 9));
    WriteBytes(data_ / "README.txt", "top-level files are not classes");
  }

  std::vector<ImageSample> ReadableSamples() const {
    std::vector<ImageSample> samples = ScanImageFolder(data_.string()).samples;
    samples.erase(std::remove_if(samples.begin(), samples.end(),
                                 [](const ImageSample& sample) {
                                   return sample.path.find("corrupt") != std::string::npos;
                                 }),
                  samples.end());
    return samples;
  }

  fs::path data_;
};

ImageFolderSourceOptions Options(int batch_size, int threads) {
  ImageFolderSourceOptions options;
  options.batch_size = batch_size;
  options.threads = threads;
  return options;
}

ImageFolderSourceOptions DroppingOptions(int batch_size) {
  ImageFolderSourceOptions options = Options(batch_size, 2);
  options.drop_singleton_batch = true;
  return options;
}

std::vector<Batch> Drain(BatchSource& source) {
  std::vector<Batch> batches;
  while (std::optional<Batch> batch = source.Next()) batches.push_back(std::move(*batch));
  return batches;
}

// The images of one epoch in delivery order, checking each label on the way.
std::vector<ImageId> EpochIds(BatchSource& source, int epoch) {
  source.StartEpoch(epoch);
  std::vector<ImageId> ids;
  for (const Batch& batch : Drain(source)) {
    for (int64_t i = 0; i < batch.images.size(0); ++i) {
      const ImageId id = View{batch.images, i}.Id();
      EXPECT_EQ(batch.labels[i].item<int64_t>(), id.label);
      ids.push_back(id);
    }
  }
  return ids;
}

std::vector<ImageId> Sorted(std::vector<ImageId> ids) {
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<ImageId> AllReadableIds() {
  std::vector<ImageId> ids;
  for (int label = 0; label < 3; ++label) {
    for (int index = 0; index < kImagesPerClass[label]; ++index) ids.push_back({label, index});
  }
  return ids;
}

// Runs `function` on a thread of its own and ends the whole test program if
// it has not returned within a minute: a hung source cannot be joined, and a
// test that fails beats one that waits forever. A test that passes never waits.
template <typename Function>
void ExpectFinishes(Function function) {
  std::promise<void> finished;
  std::future<void> done = finished.get_future();
  std::thread runner([&] {
    try {
      function();
      finished.set_value();
    } catch (...) {
      finished.set_exception(std::current_exception());
    }
  });
  if (done.wait_for(std::chrono::minutes(1)) != std::future_status::ready) {
    std::fprintf(stderr, "FAILED: %s did not finish (hung source)\n",
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::_Exit(1);
  }
  runner.join();
  done.get();  // rethrows what `function` threw
}

template <typename Function>
void ExpectInvalidArgumentNaming(Function function, const std::string& name) {
  try {
    function();
    ADD_FAILURE() << "no error";
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find(name), std::string::npos) << error.what();
  }
}

TEST_F(ImageFolderTest, ScanListsClassesInByteOrderAndImagesByName) {
  const ImageFolderIndex index = ScanImageFolder(data_.string());
  EXPECT_EQ(index.class_names, (std::vector<std::string>{"Bird", "ant", "cat"}));
  std::vector<std::pair<std::string, int64_t>> listed;
  for (const ImageSample& sample : index.samples) {
    listed.emplace_back(fs::path(sample.path).lexically_relative(data_).string(), sample.label);
  }
  const std::vector<std::pair<std::string, int64_t>> expected = {
      {"Bird/img0.png", 0}, {"Bird/img1.png", 0},      {"Bird/img2.jpg", 0}, {"Bird/img3.PNG", 0},
      {"ant/img0.png", 1},  {"ant/img1.png", 1},       {"ant/img2.jpg", 1},  {"ant/img3.PNG", 1},
      {"ant/img4.png", 1},  {"ant/zz_corrupt.png", 1}, {"cat/img0.png", 2},  {"cat/img1.png", 2},
      {"cat/img2.jpg", 2}};
  EXPECT_EQ(listed, expected);
}

TEST_F(TempDirTest, ScanOfMissingFolderNamesIt) {
  const std::string missing = (root_ / "no_such_folder").string();
  ExpectInvalidArgumentNaming([&] { ScanImageFolder(missing); }, missing);
}

TEST_F(TempDirTest, ScanOfFolderWithoutClassFoldersNamesIt) {
  const fs::path flat = root_ / "flat";
  fs::create_directories(flat / ".hidden_class");
  WriteImage(flat / "loose.png", FixtureImage(0, 0));
  ExpectInvalidArgumentNaming([&] { ScanImageFolder(flat.string()); }, flat.string());
}

TEST_F(TempDirTest, ScanOfFileNamesIt) {
  const fs::path file = root_ / "file.png";
  WriteImage(file, FixtureImage(0, 0));
  ExpectInvalidArgumentNaming([&] { ScanImageFolder(file.string()); }, file.string());
}

std::vector<ImageSample> SyntheticSamples(const std::vector<int>& per_class) {
  std::vector<ImageSample> samples;
  for (size_t label = 0; label < per_class.size(); ++label) {
    for (int i = 0; i < per_class[label]; ++i) {
      // Zero-padded so that the paths sort in input order.
      char path[32];
      std::snprintf(path, sizeof(path), "c%03zu/%05d", label, i);
      samples.push_back({path, static_cast<int64_t>(label)});
    }
  }
  return samples;
}

std::vector<int> CountPerClass(const std::vector<ImageSample>& samples, int classes) {
  std::vector<int> counts(classes, 0);
  for (const ImageSample& sample : samples) ++counts[sample.label];
  return counts;
}

std::vector<std::string> Paths(const std::vector<ImageSample>& samples) {
  std::vector<std::string> paths;
  for (const ImageSample& sample : samples) paths.push_back(sample.path);
  return paths;
}

TEST(StratifiedSplitTest, HoldsOutRoundedShareOfEachClass) {
  // 10 * 0.2 = 2; 20 * 0.2 = 4; 2 * 0.2 rounds to 0 but a class of two gets
  // one; a class of one keeps its only image for training; 7 * 0.2 = 1.4 -> 1.
  const auto [train, val] = StratifiedSplit(SyntheticSamples({10, 20, 2, 1, 7}), 0.2, 5);
  EXPECT_EQ(CountPerClass(val, 5), (std::vector<int>{2, 4, 1, 0, 1}));
  EXPECT_EQ(CountPerClass(train, 5), (std::vector<int>{8, 16, 1, 1, 6}));
}

TEST(StratifiedSplitTest, SameSeedSameSplitOtherSeedOther) {
  const std::vector<ImageSample> samples = SyntheticSamples({30, 30});
  const auto first = StratifiedSplit(samples, 0.3, 11);
  const auto again = StratifiedSplit(samples, 0.3, 11);
  const auto other = StratifiedSplit(samples, 0.3, 12);
  EXPECT_EQ(Paths(first.second), Paths(again.second));
  EXPECT_EQ(Paths(first.first), Paths(again.first));
  EXPECT_NE(Paths(first.second), Paths(other.second));
}

TEST(StratifiedSplitTest, PartsAreDisjointCoverAllAndKeepInputOrder) {
  const std::vector<ImageSample> samples = SyntheticSamples({13, 9, 4});
  const auto [train, val] = StratifiedSplit(samples, 0.25, 3);
  std::vector<std::string> train_paths = Paths(train);
  std::vector<std::string> val_paths = Paths(val);
  EXPECT_TRUE(std::is_sorted(train_paths.begin(), train_paths.end()));
  EXPECT_TRUE(std::is_sorted(val_paths.begin(), val_paths.end()));
  std::vector<std::string> both;
  std::set_intersection(train_paths.begin(), train_paths.end(), val_paths.begin(), val_paths.end(),
                        std::back_inserter(both));
  EXPECT_TRUE(both.empty());
  std::vector<std::string> all;
  std::merge(train_paths.begin(), train_paths.end(), val_paths.begin(), val_paths.end(),
             std::back_inserter(all));
  EXPECT_EQ(all, Paths(samples));
  for (const ImageSample& sample : val) {
    const auto original = std::find_if(samples.begin(), samples.end(),
                                       [&](const auto& s) { return s.path == sample.path; });
    EXPECT_EQ(original->label, sample.label);
  }
}

TEST(StratifiedSplitTest, ZeroFractionHoldsOutNothing) {
  const std::vector<ImageSample> samples = SyntheticSamples({5, 2});
  const auto [train, val] = StratifiedSplit(samples, 0.0, 1);
  EXPECT_TRUE(val.empty());
  EXPECT_EQ(Paths(train), Paths(samples));
}

TEST(StratifiedSplitTest, RejectsFractionOutsideUnitInterval) {
  const std::vector<ImageSample> samples = SyntheticSamples({5});
  EXPECT_THROW(StratifiedSplit(samples, -0.1, 1), EngineError);
  EXPECT_THROW(StratifiedSplit(samples, 1.5, 1), EngineError);
  EXPECT_THROW(StratifiedSplit(samples, std::nan(""), 1), EngineError);
}

// Runs LoadImage into a fresh buffer; values are [channel][y][x].
std::vector<float> Load(const fs::path& path, const Preprocessing& preprocessing, bool flip,
                        bool expect_ok = true) {
  std::vector<float> chw(3 * preprocessing.crop_size * preprocessing.crop_size, -99.0f);
  EXPECT_EQ(LoadImage(path.string(), preprocessing, flip, chw.data()), expect_ok) << path;
  return chw;
}

float At(const std::vector<float>& chw, int side, int channel, int y, int x) {
  return chw[(channel * side + y) * side + x];
}

TEST_F(TempDirTest, LoadImageNormalizesSolidColorExactly) {
  const fs::path path = root_ / "solid.png";
  WriteImage(path, cv::Mat(kRows, kCols, CV_8UC3, cv::Scalar(50, 100, 200)));  // BGR
  const Preprocessing preprocessing = ImageNetPreprocessing(16, 12);
  const std::vector<float> chw = Load(path, preprocessing, false);
  const int rgb[] = {200, 100, 50};
  for (int channel = 0; channel < 3; ++channel) {
    for (int y = 0; y < 12; ++y) {
      for (int x = 0; x < 12; ++x) {
        ASSERT_FLOAT_EQ(At(chw, 12, channel, y, x),
                        Normalized(rgb[channel], preprocessing, channel))
            << channel << " " << y << " " << x;
      }
    }
  }
}

TEST_F(TempDirTest, LoadImagePutsRedInChannelZero) {
  const fs::path path = root_ / "red.png";
  WriteImage(path, cv::Mat(8, 8, CV_8UC3, cv::Scalar(0, 0, 255)));
  const Preprocessing preprocessing = ImageNetPreprocessing(8, 8);
  const std::vector<float> chw = Load(path, preprocessing, false);
  EXPECT_FLOAT_EQ(At(chw, 8, 0, 3, 3), Normalized(255, preprocessing, 0));
  EXPECT_FLOAT_EQ(At(chw, 8, 1, 3, 3), Normalized(0, preprocessing, 1));
  EXPECT_FLOAT_EQ(At(chw, 8, 2, 3, 3), Normalized(0, preprocessing, 2));
}

// Three equal stripes across the longer side; after resizing the shorter
// side to 10 and cropping 10, only the middle stripe (green) remains.
cv::Mat ThreeStripes(bool wide) {
  const cv::Scalar colors[] = {{0, 0, 255}, {0, 255, 0}, {255, 0, 0}};
  cv::Mat bgr(wide ? 20 : 60, wide ? 60 : 20, CV_8UC3);
  for (int stripe = 0; stripe < 3; ++stripe) {
    const cv::Rect area =
        wide ? cv::Rect(20 * stripe, 0, 20, 20) : cv::Rect(0, 20 * stripe, 20, 20);
    bgr(area).setTo(colors[stripe]);
  }
  return bgr;
}

void ExpectAllGreen(const std::vector<float>& chw, int side) {
  ASSERT_EQ(chw.size(), static_cast<size_t>(3 * side * side));
  for (int y = 0; y < side; ++y) {
    for (int x = 0; x < side; ++x) {
      ASSERT_FLOAT_EQ(At(chw, side, 0, y, x), 0.0f) << y << " " << x;
      ASSERT_FLOAT_EQ(At(chw, side, 1, y, x), 1.0f) << y << " " << x;
      ASSERT_FLOAT_EQ(At(chw, side, 2, y, x), 0.0f) << y << " " << x;
    }
  }
}

TEST_F(TempDirTest, LoadImageCropsTheCenterOfWideAndTallImages) {
  WriteImage(root_ / "wide.png", ThreeStripes(true));
  WriteImage(root_ / "tall.png", ThreeStripes(false));
  ExpectAllGreen(Load(root_ / "wide.png", PlainPreprocessing(10, 10), false), 10);
  ExpectAllGreen(Load(root_ / "tall.png", PlainPreprocessing(10, 10), false), 10);
}

TEST_F(TempDirTest, LoadImageGrowsSmallImages) {
  const fs::path path = root_ / "small.png";
  WriteImage(path, cv::Mat(kRows, kCols, CV_8UC3, cv::Scalar(0, 255, 0)));
  ExpectAllGreen(Load(path, PlainPreprocessing(48, 40), false), 40);
}

TEST_F(TempDirTest, LoadImageFlipMirrorsLeftAndRight) {
  const fs::path path = root_ / "halves.png";
  cv::Mat bgr(kSide, kSide, CV_8UC3, cv::Scalar(255, 0, 0));   // blue
  bgr(cv::Rect(0, 0, 7, kSide)).setTo(cv::Scalar(0, 0, 255));  // red left part
  WriteImage(path, bgr);
  const std::vector<float> plain = Load(path, PlainPreprocessing(), false);
  const std::vector<float> flipped = Load(path, PlainPreprocessing(), true);
  EXPECT_FLOAT_EQ(At(plain, kSide, 0, 5, 0), 1.0f);
  EXPECT_FLOAT_EQ(At(plain, kSide, 2, 5, kSide - 1), 1.0f);
  EXPECT_FLOAT_EQ(At(flipped, kSide, 0, 5, kSide - 1), 1.0f);
  EXPECT_FLOAT_EQ(At(flipped, kSide, 2, 5, 0), 1.0f);
  for (int channel = 0; channel < 3; ++channel) {
    for (int y = 0; y < kSide; ++y) {
      for (int x = 0; x < kSide; ++x) {
        ASSERT_EQ(At(flipped, kSide, channel, y, x), At(plain, kSide, channel, y, kSide - 1 - x));
      }
    }
  }
}

TEST_F(TempDirTest, LoadImageTurnsGrayAndAlphaIntoRgb) {
  WriteImage(root_ / "gray.png", cv::Mat(10, 10, CV_8UC1, cv::Scalar(51)));
  WriteImage(root_ / "alpha.png", cv::Mat(10, 10, CV_8UC4, cv::Scalar(0, 0, 255, 128)));
  const std::vector<float> gray = Load(root_ / "gray.png", PlainPreprocessing(10, 10), false);
  for (int channel = 0; channel < 3; ++channel) {
    EXPECT_FLOAT_EQ(At(gray, 10, channel, 4, 4), 51.0f / 255.0f);
  }
  const std::vector<float> alpha = Load(root_ / "alpha.png", PlainPreprocessing(10, 10), false);
  EXPECT_FLOAT_EQ(At(alpha, 10, 0, 4, 4), 1.0f);
  EXPECT_FLOAT_EQ(At(alpha, 10, 2, 4, 4), 0.0f);
}

TEST_F(TempDirTest, LoadImageReturnsFalseOnUnreadableFiles) {
  WriteBytes(root_ / "random.png", RandomBytes(500, 3));
  WriteBytes(root_ / "random.jpg", RandomBytes(500, 4));
  WriteBytes(root_ / "empty.png", "");
  WriteBytes(root_ / "text.txt", "hello");
  std::vector<uchar> png;
  ASSERT_TRUE(cv::imencode(".png", FixtureImage(0, 0), png));
  WriteBytes(root_ / "truncated.png", std::string(png.begin(), png.begin() + png.size() / 2));
  for (const char* name :
       {"random.png", "random.jpg", "empty.png", "text.txt", "truncated.png", "missing.png"}) {
    Load(root_ / name, PlainPreprocessing(), false, /*expect_ok=*/false);
  }
}

TEST(LoadImageArgumentsTest, RejectsCropLargerThanResize) {
  std::vector<float> chw(3 * 16 * 16);
  EXPECT_THROW(LoadImage("x.png", PlainPreprocessing(8, 16), false, chw.data()), EngineError);
}

TEST_F(ImageFolderTest, SourceDeliversEveryImageOncePerEpochWithItsLabel) {
  ImageFolderSourceOptions options = Options(4, 3);
  options.shuffle = true;
  options.random_hflip = true;
  ImageFolderSource source(ScanImageFolder(data_.string()).samples, PlainPreprocessing(), options);
  EXPECT_EQ(source.size(), kReadableImages + 1);
  for (int epoch = 0; epoch < 3; ++epoch) {
    EXPECT_EQ(Sorted(EpochIds(source, epoch)), AllReadableIds()) << "epoch " << epoch;
  }
}

TEST_F(ImageFolderTest, SourceBatchShapesAndCount) {
  ImageFolderSource source(ReadableSamples(), PlainPreprocessing(), Options(5, 2));
  EXPECT_EQ(source.batches(), 3);
  source.StartEpoch(0);
  std::vector<int64_t> sizes;
  for (const Batch& batch : Drain(source)) {
    sizes.push_back(batch.images.size(0));
    EXPECT_EQ(batch.images.sizes(), (std::vector<int64_t>{batch.images.size(0), 3, 20, 20}));
    EXPECT_EQ(batch.images.dtype(), torch::kFloat32);
    EXPECT_TRUE(batch.images.is_contiguous());
    EXPECT_EQ(batch.labels.dtype(), torch::kInt64);
    EXPECT_EQ(batch.labels.size(0), batch.images.size(0));
  }
  // 12 images in batches of at most 5: three of 4, not 5, 5 and 2.
  EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 4}));
  EXPECT_FALSE(source.Next().has_value());  // the end repeats
}

TEST_F(ImageFolderTest, SourceWithoutShuffleKeepsScanOrder) {
  ImageFolderSource source(ReadableSamples(), PlainPreprocessing(), Options(5, 2));
  EXPECT_EQ(EpochIds(source, 0), AllReadableIds());
  EXPECT_EQ(EpochIds(source, 1), AllReadableIds());
}

TEST_F(ImageFolderTest, SourceShuffleDiffersPerEpochAndRepeatsPerSeed) {
  ImageFolderSourceOptions options = Options(3, 2);
  options.shuffle = true;
  options.seed = 42;
  ImageFolderSource first(ReadableSamples(), PlainPreprocessing(), options);
  ImageFolderSource again(ReadableSamples(), PlainPreprocessing(), options);
  options.seed = 43;
  ImageFolderSource other_seed(ReadableSamples(), PlainPreprocessing(), options);

  const std::vector<ImageId> epoch0 = EpochIds(first, 0);
  const std::vector<ImageId> epoch1 = EpochIds(first, 1);
  EXPECT_NE(epoch0, AllReadableIds());
  EXPECT_NE(epoch0, epoch1);
  EXPECT_EQ(EpochIds(again, 1), epoch1);  // epochs need not run in sequence
  EXPECT_EQ(EpochIds(again, 0), epoch0);
  EXPECT_EQ(EpochIds(first, 0), epoch0);
  EXPECT_NE(EpochIds(other_seed, 0), epoch0);
}

TEST_F(ImageFolderTest, SourceOutputDoesNotDependOnThreadCount) {
  ImageFolderSourceOptions options = Options(2, 1);
  options.shuffle = true;
  options.random_hflip = true;
  ImageFolderSource one_thread(ReadableSamples(), PlainPreprocessing(), options);
  options.threads = 4;
  ImageFolderSource four_threads(ReadableSamples(), PlainPreprocessing(), options);
  for (int epoch = 0; epoch < 2; ++epoch) {
    one_thread.StartEpoch(epoch);
    four_threads.StartEpoch(epoch);
    const std::vector<Batch> expected = Drain(one_thread);
    const std::vector<Batch> actual = Drain(four_threads);
    ASSERT_EQ(actual.size(), expected.size());
    for (size_t i = 0; i < actual.size(); ++i) {
      EXPECT_TRUE(torch::equal(actual[i].images, expected[i].images)) << "batch " << i;
      EXPECT_TRUE(torch::equal(actual[i].labels, expected[i].labels)) << "batch " << i;
    }
  }
}

// Which images came flipped in one epoch, by image.
std::map<ImageId, bool> Flips(BatchSource& source, int epoch) {
  source.StartEpoch(epoch);
  std::map<ImageId, bool> flips;
  for (const Batch& batch : Drain(source)) {
    for (int64_t i = 0; i < batch.images.size(0); ++i) {
      const View view{batch.images, i};
      flips[view.Id()] = view.Flipped();
    }
  }
  return flips;
}

int CountFlipped(const std::map<ImageId, bool>& flips) {
  return static_cast<int>(
      std::count_if(flips.begin(), flips.end(), [](const auto& entry) { return entry.second; }));
}

TEST_F(ImageFolderTest, SourceRandomFlipMirrorsSomeImagesDeterministically) {
  ImageFolderSourceOptions options = Options(4, 2);
  options.random_hflip = true;
  ImageFolderSource source(ReadableSamples(), PlainPreprocessing(), options);
  const std::map<ImageId, bool> epoch0 = Flips(source, 0);
  const std::map<ImageId, bool> epoch1 = Flips(source, 1);
  EXPECT_GT(CountFlipped(epoch0), 0);
  EXPECT_LT(CountFlipped(epoch0), kReadableImages);
  EXPECT_NE(epoch0, epoch1);
  EXPECT_EQ(Flips(source, 0), epoch0);

  options.random_hflip = false;
  ImageFolderSource unflipped(ReadableSamples(), PlainPreprocessing(), options);
  EXPECT_EQ(CountFlipped(Flips(unflipped, 0)), 0);
}

TEST_F(ImageFolderTest, SourceSkipsCorruptFileAndCountsItOnce) {
  ImageFolderSourceOptions options = Options(13, 2);
  options.shuffle = true;
  ImageFolderSource source(ScanImageFolder(data_.string()).samples, PlainPreprocessing(), options);
  EXPECT_EQ(source.skipped(), 0);
  for (int epoch = 0; epoch < 2; ++epoch) {
    source.StartEpoch(epoch);
    const std::vector<Batch> batches = Drain(source);
    ASSERT_EQ(batches.size(), 1u);
    EXPECT_EQ(batches[0].images.size(0), kReadableImages);  // one short of 13
    EXPECT_EQ(source.skipped(), 1) << "epoch " << epoch;
  }
}

TEST_F(ImageFolderTest, SkippedPathsNameTheUnreadableFiles) {
  ImageFolderSource source(ScanImageFolder(data_.string()).samples, PlainPreprocessing(),
                           Options(4, 2));
  EXPECT_TRUE(source.SkippedPaths(10).empty());
  ASSERT_TRUE(source.Preload(2));
  EXPECT_EQ(source.SkippedPaths(10),
            (std::vector<std::string>{(data_ / "ant" / "zz_corrupt.png").string()}));
  EXPECT_TRUE(source.SkippedPaths(0).empty());
}

TEST_F(ImageFolderTest, SourceRemembersFailuresAndCachedImages) {
  ImageFolderSource source(ScanImageFolder(data_.string()).samples, PlainPreprocessing(),
                           Options(4, 2));
  EXPECT_EQ(Sorted(EpochIds(source, 0)), AllReadableIds());
  // Repairing the corrupt file and repainting an image change nothing: the
  // failure and the decoded image were both remembered.
  WriteImage(data_ / "ant" / "zz_corrupt.png", FixtureImage(1, 3));
  WriteImage(data_ / "cat" / "img0.png", FixtureImage(2, 3));
  EXPECT_EQ(Sorted(EpochIds(source, 1)), AllReadableIds());
  EXPECT_EQ(source.skipped(), 1);
}

TEST_F(ImageFolderTest, PreloadDecodesEverythingBeforeTheFirstEpoch) {
  ImageFolderSource source(ScanImageFolder(data_.string()).samples, PlainPreprocessing(),
                           Options(4, 2));
  ASSERT_TRUE(source.Preload(2));
  // Unreadable files are known before any epoch runs...
  EXPECT_EQ(source.skipped(), 1);
  // ...and the epochs come from the cache: repainting a file changes nothing.
  WriteImage(data_ / "cat" / "img0.png", FixtureImage(2, 3));
  EXPECT_EQ(Sorted(EpochIds(source, 0)), AllReadableIds());
}

TEST_F(ImageFolderTest, PreloadStopsWhenAskedAndTheSourceStillWorks) {
  ImageFolderSource source(ReadableSamples(), PlainPreprocessing(), Options(4, 2));
  int polls = 0;
  EXPECT_FALSE(source.Preload(1, [&] { return ++polls > 3; }));
  EXPECT_EQ(polls, 4);  // three images decoded, then the stop was seen
  EXPECT_EQ(Sorted(EpochIds(source, 0)), AllReadableIds());
}

TEST_F(ImageFolderTest, PreloadDeclinesWhatDoesNotFitTheCache) {
  ImageFolderSourceOptions options = Options(4, 2);
  options.cache_bytes = 1;
  ImageFolderSource source(ReadableSamples(), PlainPreprocessing(), options);
  EXPECT_FALSE(source.Preload(2));
  EXPECT_EQ(Sorted(EpochIds(source, 0)), AllReadableIds());
}

TEST_F(ImageFolderTest, SourceWithoutCacheDecodesAgain) {
  ImageFolderSourceOptions options = Options(4, 2);
  options.cache_bytes = 0;
  ImageFolderSource source(ReadableSamples(), PlainPreprocessing(), options);
  EXPECT_EQ(Sorted(EpochIds(source, 0)), AllReadableIds());
  WriteImage(data_ / "cat" / "img0.png", FixtureImage(2, 3));
  std::vector<ImageId> expected = AllReadableIds();
  std::replace(expected.begin(), expected.end(), ImageId{2, 0}, ImageId{2, 3});
  EXPECT_EQ(Sorted(EpochIds(source, 1)), Sorted(expected));
}

TEST_F(ImageFolderTest, SourceCacheBudgetCapsCachedImages) {
  ImageFolderSourceOptions options = Options(12, 1);
  options.cache_bytes = 11 * kSide * kSide * 3;  // all but the last image of the scan
  ImageFolderSource source(ReadableSamples(), PlainPreprocessing(), options);
  EXPECT_EQ(EpochIds(source, 0), AllReadableIds());
  WriteImage(data_ / "Bird" / "img0.png", FixtureImage(0, 3));
  WriteImage(data_ / "cat" / "img2.jpg", FixtureImage(2, 3));
  std::vector<ImageId> expected = AllReadableIds();
  expected.back() = {2, 3};  // only the uncached image shows its new content
  EXPECT_EQ(EpochIds(source, 1), expected);
}

TEST_F(ImageFolderTest, SourceDropsSingletonFinalBatch) {
  // 12 images in batches of 11 are dealt as two of 6: nothing is alone.
  ImageFolderSource even(ReadableSamples(), PlainPreprocessing(), DroppingOptions(11));
  EXPECT_EQ(even.batches(), 2);
  EXPECT_EQ(EpochIds(even, 0).size(), 12u);

  // 11 images in batches of two leave one alone; it is dropped.
  std::vector<ImageSample> eleven = ReadableSamples();
  eleven.pop_back();
  ImageFolderSource dropping(eleven, PlainPreprocessing(), DroppingOptions(2));
  EXPECT_EQ(dropping.batches(), 5);
  EXPECT_EQ(EpochIds(dropping, 0).size(), 10u);

  ImageFolderSource keeping(eleven, PlainPreprocessing(), Options(2, 2));
  EXPECT_EQ(keeping.batches(), 6);
  EXPECT_EQ(EpochIds(keeping, 0).size(), 11u);

  // Batch size 1 drops nothing.
  ImageFolderSource singles(ReadableSamples(), PlainPreprocessing(), DroppingOptions(1));
  EXPECT_EQ(singles.batches(), 12);
  EXPECT_EQ(EpochIds(singles, 0).size(), 12u);
}

TEST_F(ImageFolderTest, SourceDropsBatchThatSkippingLeftWithOneImage) {
  // With batches of two in scan order, the corrupt file (10th of 13) pairs with
  // the ninth image; the 13th image is a lone final batch.
  ImageFolderSource source(ScanImageFolder(data_.string()).samples, PlainPreprocessing(),
                           DroppingOptions(2));
  EXPECT_EQ(source.batches(), 6);
  const std::vector<ImageId> ids = EpochIds(source, 0);
  EXPECT_EQ(ids.size(), 10u);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), ImageId{1, 4}), 0);
}

TEST_F(ImageFolderTest, SourceAbandonsUnfinishedEpoch) {
  // Batches of one keep the loaders waiting for room when an epoch is dropped.
  ImageFolderSourceOptions options = Options(1, 2);
  options.shuffle = true;
  std::vector<ImageId> ids;
  ExpectFinishes([&] {
    ImageFolderSource source(ReadableSamples(), PlainPreprocessing(), options);
    source.StartEpoch(0);
    ASSERT_TRUE(source.Next().has_value());
    source.StartEpoch(1);  // mid-epoch
    source.StartEpoch(2);  // before any batch was taken
    ids = EpochIds(source, 3);
  });
  EXPECT_EQ(Sorted(ids), AllReadableIds());

  ImageFolderSource reference(ReadableSamples(), PlainPreprocessing(), options);
  EXPECT_EQ(EpochIds(reference, 3), ids);
}

TEST_F(ImageFolderTest, SourceDestroyedMidEpochReturns) {
  ExpectFinishes([&] {
    for (int threads : {1, 2, 4}) {
      ImageFolderSource taken_one(ReadableSamples(), PlainPreprocessing(), Options(1, threads));
      taken_one.StartEpoch(0);
      ASSERT_TRUE(taken_one.Next().has_value());
    }
    ImageFolderSource untouched(ReadableSamples(), PlainPreprocessing(), Options(1, 2));
    untouched.StartEpoch(0);
    ImageFolderSource never_started(ReadableSamples(), PlainPreprocessing(), Options(1, 2));
  });
}

TEST_F(ImageFolderTest, SourceNextBeforeStartEpochThrows) {
  ImageFolderSource source(ReadableSamples(), PlainPreprocessing(), Options(4, 2));
  EXPECT_THROW(source.Next(), EngineError);
}

TEST(ImageFolderSourceTest, EmptySourceHasNoBatches) {
  ImageFolderSource source({}, PlainPreprocessing(), Options(4, 2));
  EXPECT_EQ(source.size(), 0);
  EXPECT_EQ(source.batches(), 0);
  source.StartEpoch(0);
  EXPECT_FALSE(source.Next().has_value());
}

ImageFolderSourceOptions AugmentingOptions() {
  ImageFolderSourceOptions options = Options(4, 2);
  options.augmentation.random_resized_crop = true;
  options.augmentation.min_scale = 0.3;
  options.augmentation.rotation_degrees = 15;
  options.augmentation.brightness = 0.3;
  options.augmentation.contrast = 0.3;
  options.augmentation.saturation = 0.3;
  return options;
}

// Every batch of one epoch, images and labels, in delivery order.
std::vector<Batch> EpochBatches(BatchSource& source, int epoch) {
  source.StartEpoch(epoch);
  return Drain(source);
}

bool SameBatches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!torch::equal(a[i].images, b[i].images) || !torch::equal(a[i].labels, b[i].labels)) {
      return false;
    }
  }
  return true;
}

TEST_F(ImageFolderTest, AugmentationRepeatsPerSeedAndEpochAndDiffersBetweenEpochs) {
  ImageFolderSourceOptions options = AugmentingOptions();
  ImageFolderSource first(ReadableSamples(), PlainPreprocessing(kSide, 12), options);
  ImageFolderSource again(ReadableSamples(), PlainPreprocessing(kSide, 12), options);
  options.seed = 2;
  ImageFolderSource other_seed(ReadableSamples(), PlainPreprocessing(kSide, 12), options);
  const std::vector<Batch> epoch0 = EpochBatches(first, 0);
  const std::vector<Batch> epoch1 = EpochBatches(first, 1);
  EXPECT_TRUE(SameBatches(EpochBatches(again, 1), epoch1));
  EXPECT_TRUE(SameBatches(EpochBatches(again, 0), epoch0));
  EXPECT_FALSE(SameBatches(epoch0, epoch1));
  EXPECT_FALSE(SameBatches(EpochBatches(other_seed, 0), epoch0));
  // Labels stay with their images: no shuffle, so both epochs keep scan order.
  EXPECT_TRUE(torch::equal(epoch0[0].labels, epoch1[0].labels));
}

TEST_F(ImageFolderTest, AugmentationDoesNotDependOnThreadCount) {
  ImageFolderSourceOptions options = AugmentingOptions();
  options.shuffle = true;
  options.threads = 1;
  ImageFolderSource one_thread(ReadableSamples(), PlainPreprocessing(kSide, 12), options);
  options.threads = 3;
  ImageFolderSource three_threads(ReadableSamples(), PlainPreprocessing(kSide, 12), options);
  EXPECT_TRUE(SameBatches(EpochBatches(one_thread, 3), EpochBatches(three_threads, 3)));
}

TEST_F(ImageFolderTest, RandomResizedCropCachesTheResizedImageAndCropsEachEpoch) {
  ImageFolderSource source(ReadableSamples(), PlainPreprocessing(kSide, 12), AugmentingOptions());
  ASSERT_TRUE(source.Preload(2));
  const std::vector<Batch> epoch0 = EpochBatches(source, 0);
  // Repainting every file changes nothing: the epochs are cut from the cache...
  for (const ImageSample& sample : ReadableSamples()) {
    WriteImage(sample.path, cv::Mat(kRows, kCols, CV_8UC3, cv::Scalar(9, 9, 9)));
  }
  EXPECT_TRUE(SameBatches(EpochBatches(source, 0), epoch0));
  // ...which holds the whole resized image, so another epoch crops elsewhere.
  EXPECT_FALSE(SameBatches(EpochBatches(source, 1), epoch0));
}

TEST_F(ImageFolderTest, RandomResizedCropWithoutCacheMatchesTheCachedOne) {
  ImageFolderSourceOptions options = AugmentingOptions();
  ImageFolderSource cached(ReadableSamples(), PlainPreprocessing(kSide, 12), options);
  options.cache_bytes = 0;
  ImageFolderSource uncached(ReadableSamples(), PlainPreprocessing(kSide, 12), options);
  EXPECT_TRUE(SameBatches(EpochBatches(cached, 2), EpochBatches(uncached, 2)));
}

TEST_F(ImageFolderTest, EvaluationOptionsGiveCenterCropsEveryEpoch) {
  ImageFolderSourceOptions training = AugmentingOptions();
  training.shuffle = true;
  training.random_hflip = true;
  training.drop_singleton_batch = true;
  const ImageFolderSourceOptions evaluation = EvaluationOptions(training);
  EXPECT_FALSE(evaluation.augmentation.any());
  EXPECT_FALSE(evaluation.shuffle);
  EXPECT_FALSE(evaluation.random_hflip);
  EXPECT_FALSE(evaluation.drop_singleton_batch);
  EXPECT_EQ(evaluation.batch_size, training.batch_size);

  const Preprocessing preprocessing = PlainPreprocessing(kSide, 12);
  const std::vector<ImageSample> samples = ReadableSamples();
  ImageFolderSource source(samples, preprocessing, evaluation);
  const std::vector<Batch> epoch0 = EpochBatches(source, 0);
  EXPECT_TRUE(SameBatches(EpochBatches(source, 1), epoch0));
  torch::Tensor expected = torch::empty({3, 12, 12});
  int64_t at = 0;
  for (const Batch& batch : epoch0) {
    for (int64_t i = 0; i < batch.images.size(0); ++i, ++at) {
      ASSERT_TRUE(LoadImage(samples[at].path, preprocessing, false, expected.data_ptr<float>()));
      EXPECT_TRUE(torch::equal(batch.images[i], expected)) << samples[at].path;
    }
  }
  EXPECT_EQ(at, kReadableImages);
}

TEST(ImageFolderSourceTest, RejectsAugmentationOutOfBounds) {
  ImageFolderSourceOptions options = Options(1, 1);
  options.augmentation.rotation_degrees = 200;
  ExpectInvalidArgumentNaming(
      [&] { ImageFolderSource({}, PlainPreprocessing(), options); }, "preprocessing.rotation_degrees");
}

TEST(ImageFolderSourceTest, RejectsBadOptions) {
  EXPECT_THROW(ImageFolderSource({}, PlainPreprocessing(), Options(0, 1)), EngineError);
  EXPECT_THROW(ImageFolderSource({}, PlainPreprocessing(), Options(1, 0)), EngineError);
  EXPECT_THROW(ImageFolderSource({}, PlainPreprocessing(4, 8), Options(1, 1)), EngineError);
}

}  // namespace
}  // namespace tl::engine
