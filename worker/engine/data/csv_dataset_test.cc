#include "data/csv_dataset.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>

#include "base/errors.h"
#include "common/testing/temp_dir.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;

void WriteText(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

void WriteGrey(const fs::path& path, int value) {
  fs::create_directories(path.parent_path());
  ASSERT_TRUE(cv::imwrite(path.string(), cv::Mat(6, 6, CV_8UC1, cv::Scalar(value))));
}

// root/data is the data root; root/outside is not.
class CsvDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = fs::path(temp_dir_.path()) / "data";
    WriteGrey(data_ / "images/a.png", 10);
    WriteGrey(data_ / "images/b.png", 20);
    WriteGrey(data_ / "other/c.png", 30);
    WriteGrey(fs::path(temp_dir_.path()) / "outside/x.png", 40);
  }

  std::string Csv(const std::string& text) {
    const fs::path path = data_ / "lists/train.csv";
    WriteText(path, text);
    return path.string();
  }

  void ExpectRefused(const std::string& text, const std::string& detail) {
    try {
      ReadCsvDataset(Csv(text), data_.string(), "dataset.train_csv");
      ADD_FAILURE() << "accepted " << text;
    } catch (const EngineError& error) {
      EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
      const std::string message = error.what();
      EXPECT_EQ(message.rfind("dataset.train_csv ", 0), 0u) << message;
      EXPECT_NE(message.find(detail), std::string::npos) << message;
    }
  }

  tl::testing::TempDir temp_dir_;
  fs::path data_;
};

TEST_F(CsvDatasetTest, PathsAreRelativeToTheCsvAndClassesInByteOrder) {
  const ImageFolderIndex index = ReadCsvDataset(
      Csv("path,label\n../images/b.png,zebra\n../images/a.png,Ant\n../other/c.png,zebra\n"),
      data_.string(), "dataset.train_csv");
  ASSERT_EQ(index.class_names, (std::vector<std::string>{"Ant", "zebra"}));
  ASSERT_EQ(index.samples.size(), 3u);
  EXPECT_EQ(index.samples[0].path, (data_ / "images/b.png").string());
  EXPECT_EQ(index.samples[0].label, 1);
  EXPECT_EQ(index.samples[1].path, (data_ / "images/a.png").string());
  EXPECT_EQ(index.samples[1].label, 0);
  EXPECT_EQ(index.samples[2].label, 1);
}

TEST_F(CsvDatasetTest, PathsLeavingTheDataRootAreRefusedWithTheirLine) {
  ExpectRefused("../images/a.png,a\n../../outside/x.png,b\n", "line 2: \"../../outside/x.png\"");
  ExpectRefused((fs::path(temp_dir_.path()) / "outside/x.png").string() + ",b\n", "outside the data root");
  fs::create_symlink(fs::path(temp_dir_.path()) / "outside", data_ / "lists/link");
  ExpectRefused("link/x.png,b\n", "line 1");
}

TEST_F(CsvDatasetTest, ParseErrorsAndMissingFilesNameTheFile) {
  ExpectRefused("../images/a.png\n", "line 1: expected 2 fields");
  try {
    ReadCsvDataset((data_ / "missing.csv").string(), data_.string(), "dataset.val_csv");
    ADD_FAILURE() << "no error";
  } catch (const EngineError& error) {
    EXPECT_NE(std::string(error.what()).find("dataset.val_csv " + (data_ / "missing.csv").string()),
              std::string::npos)
        << error.what();
  }
}

TEST_F(CsvDatasetTest, GreyImagesBecomeThreeChannelsAndCorruptOnesAreSkipped) {
  WriteText(data_ / "images/broken.png", "not a png");
  const ImageFolderIndex index = ReadCsvDataset(
      Csv("../images/a.png,a\n../images/broken.png,a\n../other/c.png,b\n"), data_.string(),
      "dataset.train_csv");
  Preprocessing preprocessing;
  preprocessing.resize_size = preprocessing.crop_size = 6;
  preprocessing.mean = {0, 0, 0};
  preprocessing.std = {1, 1, 1};
  ImageFolderSourceOptions options;
  options.batch_size = 3;
  ImageFolderSource source(index.samples, preprocessing, options);
  source.StartEpoch(1);
  const std::optional<Batch> batch = source.Next();
  ASSERT_TRUE(batch.has_value());
  ASSERT_EQ(batch->images.sizes(), (std::vector<int64_t>{2, 3, 6, 6}));
  for (int channel = 0; channel < 3; ++channel) {
    EXPECT_NEAR(batch->images[0][channel][2][2].item<float>(), 10 / 255.0, 1e-6);
    EXPECT_NEAR(batch->images[1][channel][2][2].item<float>(), 30 / 255.0, 1e-6);
  }
  EXPECT_EQ(source.skipped(), 1);
}

}  // namespace
}  // namespace tl::engine
