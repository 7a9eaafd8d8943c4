#include "data/dataset_check.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/testing/temp_dir.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;

TEST(ImagesPerClassTest, CountsByLabel) {
  const std::vector<ImageSample> samples = {{"a", 0}, {"b", 2}, {"c", 2}, {"d", 0}, {"e", 2}};
  EXPECT_EQ(ImagesPerClass(samples, 3), (std::vector<int64_t>{2, 0, 3}));
}

TEST(ImbalanceRatioTest, LargestOverSmallestIgnoringEmptyClasses) {
  EXPECT_DOUBLE_EQ(ImbalanceRatio({2, 0, 3}), 1.5);
  EXPECT_DOUBLE_EQ(ImbalanceRatio({10, 2, 5}), 5.0);
  EXPECT_DOUBLE_EQ(ImbalanceRatio({4, 4}), 1.0);
  EXPECT_DOUBLE_EQ(ImbalanceRatio({0, 0}), 0.0);
}

class FindDuplicatesTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& bytes) {
    const fs::path path = fs::path(temp_dir_.path()) / name;
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
    return path.string();
  }
  static std::string Name(const std::string& path) { return fs::path(path).filename().string(); }

  tl::testing::TempDir temp_dir_;
};

TEST_F(FindDuplicatesTest, CountsValidationFilesEqualToATrainingFile) {
  const std::vector<ImageSample> train = {{Write("t/a.png", "alpha"), 0},
                                          {Write("t/b.png", "bravo"), 1},
                                          {Write("t/b2.png", "bravo"), 1}};
  // Same size as "alpha" but other bytes; a copy of b under another name and
  // class; a file that is gone.
  const std::vector<ImageSample> val = {{Write("v/x.png", "alphA"), 0},
                                        {Write("v/y.png", "bravo"), 0},
                                        {Write("v/z.png", "charlie"), 1},
                                        {(fs::path(temp_dir_.path()) / "v/gone.png").string(), 1}};
  for (int threads : {1, 3}) {
    DatasetCheck check;
    ASSERT_TRUE(FindDuplicates(train, val, threads, nullptr, Name, check));
    EXPECT_EQ(check.duplicate_images, 1) << threads;
    EXPECT_EQ(check.duplicate_examples, (std::vector<std::string>{"y.png = b.png"})) << threads;
  }
}

TEST_F(FindDuplicatesTest, KeepsAFewExamplesAndCountsAll) {
  std::vector<ImageSample> train = {{Write("t/same.png", "same"), 0}};
  std::vector<ImageSample> val;
  for (int i = 0; i < 15; ++i) val.push_back({Write("v/" + std::to_string(i) + ".png", "same"), 0});
  DatasetCheck check;
  ASSERT_TRUE(FindDuplicates(train, val, 2, nullptr, Name, check));
  EXPECT_EQ(check.duplicate_images, 15);
  EXPECT_EQ(check.duplicate_examples.size(), kDatasetCheckExamples);
}

TEST_F(FindDuplicatesTest, StopsWhenAsked) {
  const std::vector<ImageSample> train = {{Write("t/a.png", "a"), 0}};
  const std::vector<ImageSample> val = {{Write("v/a.png", "a"), 0}};
  DatasetCheck check;
  EXPECT_FALSE(FindDuplicates(train, val, 1, [] { return true; }, Name, check));
  EXPECT_EQ(check.duplicate_images, 0);
}

TEST(DatasetCheckToJsonTest, NamesClassesAndCarriesEveryFinding) {
  DatasetCheck check;
  check.train_per_class = {6, 3};
  check.val_per_class = {2, 1};
  check.imbalance_ratio = 2;
  check.unreadable_examples = {"cats/broken.png"};
  check.duplicate_images = 1;
  check.duplicate_examples = {"val/a.png = train/a.png"};
  const nlohmann::json json = nlohmann::json::parse(DatasetCheckToJson({"cat", "dog"}, 1, check));
  EXPECT_EQ(json["classes"][1]["name"], "dog");
  EXPECT_EQ(json["classes"][1]["train_images"], 3);
  EXPECT_EQ(json["classes"][0]["val_images"], 2);
  EXPECT_EQ(json["imbalance_ratio"], 2.0);
  EXPECT_EQ(json["unreadable_images"], 1);
  EXPECT_EQ(json["unreadable_examples"][0], "cats/broken.png");
  EXPECT_EQ(json["duplicate_images"], 1);
  EXPECT_EQ(json["duplicate_examples"][0], "val/a.png = train/a.png");
}

}  // namespace
}  // namespace tl::engine
