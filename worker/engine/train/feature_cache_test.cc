// The feature cache of FEATURE_EXTRACTION jobs: its key, the features it
// holds, its reuse by a later job, and what it saves (printed, not asserted).
#include "train/feature_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "base/errors.h"
#include "common/testing/temp_dir.h"
#include "job/image_job.h"
#include "testing/class_images.h"
#include "testing/tiny_backbone.h"
#include "testing/tiny_model.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;
using ::tl::testing::TempDir;
using ::tl::testing::WriteFile;

const std::vector<std::string> kClasses = {"apple", "banana", "cherry"};

std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> files;
  if (!fs::exists(dir)) return files;
  for (const auto& entry : fs::directory_iterator(dir)) files.push_back(entry.path().string());
  return files;
}

TEST(FeatureCacheTest, AppliesOnlyToAFrozenBackboneWithoutRandomInput) {
  EXPECT_TRUE(FeatureCacheApplies(Strategy::kFeatureExtraction, false, false));
  EXPECT_FALSE(FeatureCacheApplies(Strategy::kFeatureExtraction, true, false));
  EXPECT_FALSE(FeatureCacheApplies(Strategy::kFeatureExtraction, false, true));
  EXPECT_FALSE(FeatureCacheApplies(Strategy::kFineTune, false, false));
  EXPECT_FALSE(FeatureCacheApplies(Strategy::kFull, false, false));
}

TEST(FeatureCacheTest, KeyFollowsEveryInputItDependsOn) {
  TempDir temp;
  WriteFile(temp.Sub("a.png"), "one");
  WriteFile(temp.Sub("b.png"), "two");
  EXPECT_EQ(FileDigest(temp.Sub("a.png")), FileDigest(temp.Sub("a.png")));
  EXPECT_NE(FileDigest(temp.Sub("a.png")), FileDigest(temp.Sub("b.png")));
  EXPECT_THROW(FileDigest(temp.Sub("missing.png")), EngineError);

  Preprocessing preprocessing{/*resize_size=*/9, /*crop_size=*/8, {0.5f, 0.5f, 0.5f},
                              {0.25f, 0.25f, 0.25f}};
  const std::vector<ImageSample> samples = {{temp.Sub("a.png"), 0}, {temp.Sub("b.png"), 1}};
  const std::string key = FeatureCacheKey("backbone1", preprocessing, samples);
  EXPECT_EQ(key, FeatureCacheKey("backbone1", preprocessing, samples));
  EXPECT_NE(key, FeatureCacheKey("backbone2", preprocessing, samples));
  Preprocessing larger = preprocessing;
  larger.crop_size = 9;
  EXPECT_NE(key, FeatureCacheKey("backbone1", larger, samples));
  std::vector<ImageSample> relabelled = samples;
  relabelled[1].label = 0;
  EXPECT_NE(key, FeatureCacheKey("backbone1", preprocessing, relabelled));
  // A lower pixel bound may refuse images the table holds rows for.
  ImageReadRules stricter;
  stricter.max_pixels = 64;
  EXPECT_NE(key, FeatureCacheKey("backbone1", preprocessing, samples, stricter));
  // Same path, new bytes: a new key.
  WriteFile(temp.Sub("b.png"), "changed");
  EXPECT_NE(key, FeatureCacheKey("backbone1", preprocessing, samples));
}

class FeatureCacheJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = testing::TinyJobConfig(temp_.path());
    testing::WriteClassFolder(temp_.Sub("train"), kClasses, 10);
    testing::WriteClassFolder(temp_.Sub("val"), kClasses, 3);
    config_.horizontal_flip = false;
    config_.batch_size = 5;
    config_.train.strategy = Strategy::kFeatureExtraction;
    config_.train.epochs = 3;
    config_.train.learning_rate = 0.05;
    config_.feature_cache_dir = temp_.Sub("feature_cache");
  }

  ImageJobResult Run(const std::string& name) {
    config_.output_dir = temp_.Sub(name);
    ImageJobObserver observer;
    return RunImageJob(config_, observer);
  }

  TempDir temp_;
  ImageJobConfig config_;
};

TEST_F(FeatureCacheJobTest, ALaterJobReusesTheFeaturesAndTrainsAlike) {
  const ImageJobResult first = Run("first");
  EXPECT_TRUE(first.features_cached);
  EXPECT_FALSE(first.features_from_disk);
  const std::vector<std::string> files = FilesIn(config_.feature_cache_dir);
  ASSERT_EQ(files.size(), 1u) << "one file for the training and validation images together";

  const ImageJobResult second = Run("second");
  EXPECT_TRUE(second.features_cached);
  EXPECT_TRUE(second.features_from_disk);
  EXPECT_EQ(FilesIn(config_.feature_cache_dir).size(), 1u);
  ASSERT_EQ(first.epochs.size(), second.epochs.size());
  for (size_t i = 0; i < first.epochs.size(); ++i) {
    EXPECT_EQ(first.epochs[i].train_loss, second.epochs[i].train_loss) << "epoch " << i + 1;
    EXPECT_EQ(first.epochs[i].val_accuracy, second.epochs[i].val_accuracy) << "epoch " << i + 1;
  }
  // The exported model classifies images, not features: the job checked it
  // against the trained one, and its final report ran on images.
  ASSERT_FALSE(second.reports.empty());
  EXPECT_DOUBLE_EQ(second.reports[0].accuracy, second.epochs.back().val_accuracy);
}

TEST_F(FeatureCacheJobTest, CachedFeaturesAreTheBackbonesFeaturesOfTheImages) {
  Run("job");
  // One file: features and labels of the 39 images (30 training, 9
  // validation), and each image's row, the images in path order.
  const std::vector<std::string> files = FilesIn(config_.feature_cache_dir);
  ASSERT_EQ(files.size(), 1u);
  std::vector<torch::Tensor> saved;
  torch::load(saved, files[0]);
  ASSERT_EQ(saved.size(), 3u);
  ASSERT_EQ(saved[0].size(0), 39);
  ASSERT_EQ(saved[0].size(1), testing::kTinyFeatureDim);
  ASSERT_EQ(saved[2].size(0), 39);
  std::vector<ImageSample> images = ScanImageFolder(config_.train_dir).samples;
  for (const ImageSample& sample : ScanImageFolder(config_.val_dir).samples) {
    images.push_back(sample);
  }
  std::sort(images.begin(), images.end(),
            [](const ImageSample& a, const ImageSample& b) { return a.path < b.path; });
  const Preprocessing preprocessing{DefaultResizeSize(testing::kTinyInputSize),
                                    testing::kTinyInputSize, testing::TinyManifest().mean,
                                    testing::TinyManifest().std};
  torch::jit::Module backbone = torch::jit::load(config_.backbone_path);
  backbone.eval();
  for (size_t i : {size_t{0}, size_t{17}, size_t{29}, size_t{38}}) {
    const int64_t row = saved[2][static_cast<int64_t>(i)].item<int64_t>();
    ASSERT_GE(row, 0) << images[i].path;
    torch::Tensor image = torch::empty({1, 3, testing::kTinyInputSize, testing::kTinyInputSize});
    ASSERT_TRUE(LoadImage(images[i].path, preprocessing, false, image.data_ptr<float>()));
    const torch::Tensor expected = backbone.forward({image}).toTensor().flatten(1)[0];
    EXPECT_TRUE(torch::allclose(saved[0][row], expected, 1e-5, 1e-6)) << images[i].path;
    EXPECT_EQ(saved[1][row].item<int64_t>(), images[i].label) << images[i].path;
  }
}

// A job that slices its validation images from the same folder with another
// seed, or another fraction (a sweep's trials), finds the features computed
// by the first: the table covers the folder, whatever the split.
TEST_F(FeatureCacheJobTest, AnotherSplitOfTheSameImagesFindsTheSameFeatures) {
  config_.val_dir.clear();
  config_.val_fraction = 0.2;
  config_.seed = 1;
  const ImageJobResult first = Run("seed-1");
  ASSERT_TRUE(first.features_cached);
  EXPECT_FALSE(first.features_from_disk);
  config_.seed = 2;
  config_.val_fraction = 0.3;
  const ImageJobResult second = Run("seed-2");
  EXPECT_TRUE(second.features_from_disk);
  EXPECT_EQ(FilesIn(config_.feature_cache_dir).size(), 1u);
  EXPECT_NE(first.dataset.val_images, second.dataset.val_images);
}

// An image that cannot be decoded has no row; the rest keep theirs, and a
// subset takes only its readable images, in its own order.
TEST(FeatureTableTest, SubsetsTakeTheirRowsAndLeaveUnreadableImagesOut) {
  TempDir temp;
  testing::WriteClassFolder(temp.Sub("images"), kClasses, 2);
  std::vector<ImageSample> samples = ScanImageFolder(temp.Sub("images")).samples;
  ASSERT_EQ(samples.size(), 6u);
  WriteFile(samples[3].path, "not an image");
  const std::string backbone = testing::WriteTinyBackbone(temp.path());
  TransferModel model(backbone, testing::TinyManifest(), 3, 1);
  FeatureTable::Options options;
  options.backbone_path = backbone;
  options.preprocessing = Preprocessing{DefaultResizeSize(testing::kTinyInputSize),
                                        testing::kTinyInputSize, testing::TinyManifest().mean,
                                        testing::TinyManifest().std};
  // Given twice and out of order: each image is computed once.
  std::vector<ImageSample> given = {samples[5], samples[0], samples[3], samples[1],
                                    samples[2], samples[4], samples[0]};
  const FeatureTable table(model, given, options);
  const FeatureTable::Rows all = table.RowsOf(samples);
  EXPECT_EQ(all.features.size(0), 5);
  const FeatureTable::Rows pair = table.RowsOf({samples[4], samples[3], samples[1]});
  ASSERT_EQ(pair.features.size(0), 2);
  EXPECT_TRUE(torch::equal(pair.features[0], all.features[3]));  // samples[4]: 4th readable
  EXPECT_TRUE(torch::equal(pair.features[1], all.features[1]));
  EXPECT_EQ(pair.labels[0].item<int64_t>(), samples[4].label);
  EXPECT_THROW(table.RowsOf({ImageSample{temp.Sub("elsewhere.png"), 0}}), EngineError);
}

// A stop request ends the computation between batches, and leaves no file
// that a later job would take for the whole table.
TEST(FeatureTableTest, AStopRequestEndsTheComputationAndSavesNothing) {
  TempDir temp;
  testing::WriteClassFolder(temp.Sub("images"), kClasses, 4);
  const std::vector<ImageSample> samples = ScanImageFolder(temp.Sub("images")).samples;
  const std::string backbone = testing::WriteTinyBackbone(temp.path());
  TransferModel model(backbone, testing::TinyManifest(), 3, 1);
  FeatureTable::Options options;
  options.cache_dir = temp.Sub("cache");
  options.backbone_path = backbone;
  options.preprocessing = Preprocessing{DefaultResizeSize(testing::kTinyInputSize),
                                        testing::kTinyInputSize, testing::TinyManifest().mean,
                                        testing::TinyManifest().std};
  options.decode.batch_size = 2;
  int polls = 0;
  options.stop_requested = [&polls] { return ++polls > 2; };  // after two batches
  const FeatureTable stopped(model, samples, options);
  EXPECT_TRUE(stopped.stopped());
  EXPECT_FALSE(std::filesystem::exists(options.cache_dir) &&
               !std::filesystem::is_empty(options.cache_dir));
  options.stop_requested = [] { return false; };
  const FeatureTable whole(model, samples, options);
  EXPECT_FALSE(whole.stopped());
  EXPECT_EQ(whole.RowsOf(samples).features.size(0), static_cast<int64_t>(samples.size()));
  EXPECT_FALSE(std::filesystem::is_empty(options.cache_dir));
}

// A bounded folder gives up its least recently used tables first, never the
// one just written, and leaves other files alone.
TEST(FeatureCachePruneTest, TheLeastRecentlyUsedTablesGoFirst) {
  TempDir temp;
  const std::string dir = temp.Sub("cache");
  const auto now = std::filesystem::file_time_type::clock::now();
  const std::vector<std::string> names = {"old.pt", "used.pt", "middle.pt", "new.pt"};
  const std::vector<int> minutes_ago = {40, 1, 20, 0};
  for (size_t i = 0; i < names.size(); ++i) {
    WriteFile(dir + "/" + names[i], std::string(100, 'x'));
    std::filesystem::last_write_time(dir + "/" + names[i],
                                     now - std::chrono::minutes(minutes_ago[i]));
  }
  WriteFile(dir + "/notes.txt", std::string(1000, 'x'));
  // Half-written tables: one a killed worker left two hours ago, one being written now.
  WriteFile(dir + "/gone.pt.tmp-1-0", std::string(100, 'x'));
  std::filesystem::last_write_time(dir + "/gone.pt.tmp-1-0", now - std::chrono::hours(2));
  WriteFile(dir + "/writing.pt.tmp-2-0", std::string(100, 'x'));
  const auto names_in = [&dir] {
    std::vector<std::string> found;
    for (const auto& entry : fs::directory_iterator(dir)) {
      found.push_back(entry.path().filename().string());
    }
    std::sort(found.begin(), found.end());
    return found;
  };
  EXPECT_EQ(PruneFeatureCache(dir, 500, "new.pt"), 0);  // within the bound
  // The abandoned one goes first, then the least recently used table.
  EXPECT_EQ(PruneFeatureCache(dir, 350, "new.pt"), 2);
  EXPECT_EQ(names_in(), (std::vector<std::string>{"middle.pt", "new.pt", "notes.txt", "used.pt",
                                                  "writing.pt.tmp-2-0"}));
  EXPECT_EQ(PruneFeatureCache(dir, 1, "new.pt"), 2);  // never the one just written
  EXPECT_EQ(names_in(),
            (std::vector<std::string>{"new.pt", "notes.txt", "writing.pt.tmp-2-0"}));
}

TEST_F(FeatureCacheJobTest, RandomFlipsOrATrainableBackboneTrainOnImages) {
  config_.horizontal_flip = true;
  EXPECT_FALSE(Run("flipped").features_cached);
  config_.horizontal_flip = false;
  config_.train.strategy = Strategy::kFineTune;
  EXPECT_FALSE(Run("fine_tuned").features_cached);
  EXPECT_TRUE(FilesIn(config_.feature_cache_dir).empty());
}

// Figures for people (no timing asserts: the machine is shared). The same
// frozen-backbone job at a size where the backbone costs something, with
// flips (images every epoch) and without (features once).
TEST_F(FeatureCacheJobTest, EpochTimesWithAndWithoutTheCache) {
  config_.image_size = 64;
  config_.train.epochs = 4;
  config_.horizontal_flip = true;
  const ImageJobResult images = Run("images");
  config_.horizontal_flip = false;
  const ImageJobResult computed = Run("computed");
  const ImageJobResult loaded = Run("loaded");
  ASSERT_TRUE(computed.features_cached && !computed.features_from_disk);
  ASSERT_TRUE(loaded.features_from_disk);
  const auto later_epochs = [](const ImageJobResult& result) {
    double seconds = 0;
    for (size_t i = 1; i < result.epochs.size(); ++i) seconds += result.epochs[i].seconds;
    return seconds / static_cast<double>(result.epochs.size() - 1);
  };
  std::cout << "feature cache, 30 training + 9 validation images at 64 px, tiny backbone:\n"
            << "  images every epoch:   mean epoch " << later_epochs(images) << " s, job "
            << images.seconds << " s\n"
            << "  features computed:    mean epoch " << later_epochs(computed) << " s, job "
            << computed.seconds << " s\n"
            << "  features from disk:   mean epoch " << later_epochs(loaded) << " s, job "
            << loaded.seconds << " s\n";
}

}  // namespace
}  // namespace tl::engine
