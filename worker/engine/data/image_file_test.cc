// Reading images under the worker's rules: confined to the data root where
// each file is opened (symbolic links to files or folders outside it are
// refused, also when swapped in after the scan), and no image decoded above
// the pixel limit. Real files and real links in a temporary folder.
#include "data/image_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "base/errors.h"
#include "common/testing/temp_dir.h"
#include "data/csv_dataset.h"
#include "data/image_folder.h"
#include "job/image_job.h"
#include "model/predictor.h"
#include "testing/class_images.h"
#include "testing/tiny_backbone.h"
#include "testing/tiny_model.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;
using ::tl::testing::TempDir;

void WritePng(const fs::path& path, int rows, int cols, int value = 120) {
  fs::create_directories(path.parent_path());
  ASSERT_TRUE(cv::imwrite(path.string(), cv::Mat(rows, cols, CV_8UC3, cv::Scalar::all(value))));
}

// A PNG whose header declares side x side pixels: a real 1 x 1 image with
// its IHDR changed, a few dozen bytes on disk.
void WriteDeclaredPng(const fs::path& path, uint32_t side) {
  std::vector<uchar> png;
  ASSERT_TRUE(cv::imencode(".png", cv::Mat(1, 1, CV_8UC3), png));
  for (int offset : {16, 20}) {
    for (int i = 0; i < 4; ++i) png[offset + i] = static_cast<uchar>(side >> (24 - 8 * i));
  }
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(png.data()),
                                              static_cast<std::streamsize>(png.size()));
}

Preprocessing Plain(int side) {
  Preprocessing preprocessing;
  preprocessing.resize_size = side;
  preprocessing.crop_size = side;
  preprocessing.mean = {0, 0, 0};
  preprocessing.std = {1, 1, 1};
  return preprocessing;
}

// A data root with a class folder of real images, and beside the root (not
// in it) a folder of images that must never be read through it.
class ConfinedImagesTest : public ::testing::Test {
 protected:
  ConfinedImagesTest() : root_(temp_.Sub("data")), outside_(temp_.Sub("outside")) {
    for (int i = 0; i < 3; ++i) WritePng(root_ / "images/ant" / ("a" + std::to_string(i) + ".png"), 8, 8);
    for (int i = 0; i < 2; ++i) WritePng(root_ / "images/bee" / ("b" + std::to_string(i) + ".png"), 8, 8);
    for (int i = 0; i < 4; ++i) WritePng(outside_ / "secret" / ("s" + std::to_string(i) + ".png"), 8, 8);
    rules_.root = root_.string();
  }

  ImageFolderSourceOptions Options() const {
    ImageFolderSourceOptions options;
    options.batch_size = 4;
    options.threads = 2;
    options.read_rules = rules_;
    return options;
  }

  TempDir temp_;
  fs::path root_;
  fs::path outside_;
  ImageReadRules rules_;
};

TEST_F(ConfinedImagesTest, FilesInsideTheRootAndLinksWithinItAreRead) {
  fs::create_symlink(root_ / "images/ant/a0.png", root_ / "images/bee/linked.png");
  EXPECT_EQ(ReadImageFile((root_ / "images/ant/a0.png").string(), rules_).skip, ImageSkip::kNone);
  const ImageReadResult linked = ReadImageFile((root_ / "images/bee/linked.png").string(), rules_);
  EXPECT_EQ(linked.skip, ImageSkip::kNone);
  EXPECT_EQ(linked.bgr.rows, 8);
}

TEST_F(ConfinedImagesTest, LinksToFilesAndFoldersOutsideTheRootAreRefused) {
  fs::create_symlink(outside_ / "secret/s0.png", root_ / "images/bee/escape.png");
  fs::create_symlink(outside_ / "secret", root_ / "images/wasp");
  for (const fs::path& path : {root_ / "images/bee/escape.png", root_ / "images/wasp/s1.png"}) {
    const ImageReadResult read = ReadImageFile(path.string(), rules_);
    EXPECT_EQ(read.skip, ImageSkip::kOutsideRoot) << path;
    EXPECT_TRUE(read.bgr.empty()) << path;
    EXPECT_EQ(DescribeSkip("x.png", read.skip, read.reason), "x.png (outside the data root)");
  }
  // Without a root (the engine run alone) nothing is confined.
  EXPECT_EQ(ReadImageFile((root_ / "images/bee/escape.png").string(), {}).skip, ImageSkip::kNone);
}

// The folder path of issue 12: image files that are links to files outside
// the root, and a class folder that is a link to an outside folder, are
// skipped, counted and named, not trained on.
TEST_F(ConfinedImagesTest, SourceSkipsCountsAndNamesImagesOutsideTheRoot) {
  fs::create_symlink(outside_ / "secret/s0.png", root_ / "images/bee/escape.png");
  fs::create_symlink(outside_ / "secret", root_ / "images/wasp");
  const ImageFolderIndex index = ScanImageFolder((root_ / "images").string());
  ASSERT_EQ(index.samples.size(), 3u + 3u + 4u);
  ImageFolderSource source(index.samples, Plain(8), Options());
  ASSERT_TRUE(source.Preload(2));
  EXPECT_EQ(source.skipped(), 5);
  EXPECT_EQ(source.skipped(ImageSkip::kOutsideRoot), 5);
  EXPECT_EQ(source.skipped(ImageSkip::kUnreadable), 0);
  const std::vector<ImageFolderSource::SkippedImage> skipped = source.SkippedImages(10);
  ASSERT_EQ(skipped.size(), 5u);
  EXPECT_EQ(skipped[0].path, (root_ / "images/bee/escape.png").string());
  EXPECT_EQ(skipped[0].skip, ImageSkip::kOutsideRoot);
  EXPECT_EQ(skipped[1].path, (root_ / "images/wasp/s0.png").string());
  source.StartEpoch(1);
  int64_t delivered = 0;
  while (std::optional<Batch> batch = source.Next()) {
    delivered += batch->images.size(0);
    EXPECT_LT(batch->labels.max().item<int64_t>(), 2) << "an image of the linked class was read";
  }
  EXPECT_EQ(delivered, 5);
}

// Confinement is checked when the file is read, not when the folder was
// scanned: a class folder swapped for a link to an outside folder after the
// scan (while the job waited in the queue) is refused.
TEST_F(ConfinedImagesTest, AFolderSwappedForALinkAfterTheScanIsRefused) {
  // The outside folder holds files of the scanned names, so that they open.
  for (int i = 0; i < 2; ++i) WritePng(outside_ / "swap" / ("b" + std::to_string(i) + ".png"), 8, 8);
  const ImageFolderIndex index = ScanImageFolder((root_ / "images").string());
  fs::rename(root_ / "images/bee", temp_.Sub("bee.moved"));
  fs::create_symlink(outside_ / "swap", root_ / "images/bee");
  ImageFolderSource source(index.samples, Plain(8), Options());
  ASSERT_TRUE(source.Preload(1));
  EXPECT_EQ(source.skipped(ImageSkip::kOutsideRoot), 2);
  EXPECT_EQ(source.SkippedPaths(10),
            (std::vector<std::string>{(root_ / "images/bee/b0.png").string(),
                                      (root_ / "images/bee/b1.png").string()}));
}

// CSV datasets check their entries when read; a listed file swapped for a
// link afterwards is refused where it is opened, as a folder's is.
TEST_F(ConfinedImagesTest, ACsvEntrySwappedForALinkAfterTheScanIsRefused) {
  const fs::path csv = root_ / "list.csv";
  std::ofstream(csv) << "path,label\nimages/ant/a0.png,ant\nimages/bee/b0.png,bee\n";
  const ImageFolderIndex index = ReadCsvDataset(csv.string(), root_.string(), "dataset.train_csv");
  fs::remove(root_ / "images/bee/b0.png");
  fs::create_symlink(outside_ / "secret/s0.png", root_ / "images/bee/b0.png");
  ImageFolderSource source(index.samples, Plain(8), Options());
  ASSERT_TRUE(source.Preload(1));
  EXPECT_EQ(source.skipped(ImageSkip::kOutsideRoot), 1);
  EXPECT_EQ(source.SkippedPaths(10), std::vector<std::string>{(root_ / "images/bee/b0.png").string()});
}

TEST_F(ConfinedImagesTest, ACsvListThatLeadsOutsideTheRootIsAnError) {
  std::ofstream(outside_ / "list.csv") << "path,label\nimages/ant/a0.png,ant\n";
  fs::create_symlink(outside_ / "list.csv", root_ / "list.csv");
  try {
    ReadCsvDataset((root_ / "list.csv").string(), root_.string(), "dataset.train_csv");
    FAIL() << "an outside CSV list was read";
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("dataset.train_csv"), std::string::npos);
    EXPECT_NE(std::string(error.what()).find("outside"), std::string::npos) << error.what();
  }
}

// Backbones are confined when the job opens them: data_root for a backbone
// named by path, artifact_root for one from an earlier job's artifacts.
TEST_F(ConfinedImagesTest, ABackboneLinkedOutsideItsRootFailsTheJobNamingIt) {
  testing::WriteClassFolder((root_ / "train").string(), {"dark", "light"}, 3);
  const std::string outside_backbone = testing::WriteTinyBackbone(outside_.string());
  fs::create_directories(root_ / "backbones");
  fs::copy_file(ManifestPathFor(outside_backbone), root_ / "backbones/tiny.json");
  fs::create_symlink(outside_backbone, root_ / "backbones/tiny.pt");
  ImageJobConfig config;
  config.backbone_path = (root_ / "backbones/tiny.pt").string();
  config.train_dir = (root_ / "train").string();
  config.data_root = root_.string();
  config.artifact_root = temp_.Sub("artifacts");
  config.output_dir = temp_.Sub("artifacts/job");
  config.threads = 1;
  config.train.epochs = 1;
  config.train.learning_rate = 0.01;
  for (bool from_artifacts : {false, true}) {
    SCOPED_TRACE(from_artifacts);
    config.backbone_from_artifacts = from_artifacts;
    const std::string root = fs::canonical(from_artifacts ? temp_.Sub("artifacts") : root_.string());
    fs::create_directories(config.artifact_root);
    if (from_artifacts) {
      fs::create_directories(temp_.Sub("artifacts/earlier"));
      fs::copy_file(root_ / "backbones/tiny.json", temp_.Sub("artifacts/earlier/tiny.json"));
      fs::create_symlink(outside_backbone, temp_.Sub("artifacts/earlier/tiny.pt"));
      config.backbone_path = temp_.Sub("artifacts/earlier/tiny.pt");
    }
    ImageJobObserver observer;
    try {
      RunImageJob(config, observer);
      FAIL() << "a backbone outside its root was loaded";
    } catch (const EngineError& error) {
      EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
      EXPECT_EQ(std::string(error.what()),
                "backbone " + config.backbone_path + " leads outside the root " + root);
    }
  }
}

TEST_F(ConfinedImagesTest, ABackboneManifestLinkedOutsideTheRootFailsTheJob) {
  testing::WriteClassFolder((root_ / "train").string(), {"dark", "light"}, 3);
  fs::create_directories(root_ / "backbones");
  const std::string backbone = testing::WriteTinyBackbone((root_ / "backbones").string());
  fs::rename(ManifestPathFor(backbone), outside_ / "tiny.json");
  fs::create_symlink(outside_ / "tiny.json", ManifestPathFor(backbone));
  ImageJobConfig config;
  config.backbone_path = backbone;
  config.train_dir = (root_ / "train").string();
  config.data_root = root_.string();
  config.output_dir = temp_.Sub("out");
  config.train.epochs = 1;
  config.train.learning_rate = 0.01;
  ImageJobObserver observer;
  try {
    RunImageJob(config, observer);
    FAIL() << "a manifest outside the root was read";
  } catch (const EngineError& error) {
    EXPECT_NE(std::string(error.what()).find("backbone manifest"), std::string::npos);
    EXPECT_NE(std::string(error.what()).find("leads outside the root"), std::string::npos)
        << error.what();
  }
}

// Evaluation jobs load an exported model from the artifact root; a model
// or its model.json linked out of it is refused when opened.
TEST_F(ConfinedImagesTest, AnEvaluatedModelLinkedOutsideTheArtifactRootIsRefused) {
  const ImageJobResult trained = testing::TrainTinyModel(outside_.string());
  const fs::path artifacts = temp_.Sub("artifacts");
  fs::create_directories(artifacts / "job");
  fs::create_symlink(trained.model_path, artifacts / "job/model.pt");
  fs::copy_file(trained.model_info_path, artifacts / "job/model.json");
  const std::string root = fs::canonical(artifacts).string();
  try {
    Predictor predictor((artifacts / "job/model.pt").string(), "cpu", root);
    FAIL() << "a model outside the artifact root was loaded";
  } catch (const EngineError& error) {
    EXPECT_EQ(std::string(error.what()),
              "model " + (artifacts / "job/model.pt").string() + " leads outside the root " + root);
  }
  // Without a root (tlpredict on a user's own files) it loads.
  EXPECT_EQ(Predictor((artifacts / "job/model.pt").string()).info().class_names,
            testing::TinyModelClasses());
}

TEST(ImagePixelLimitTest, ImagesAboveTheLimitAreRefusedNamingTheirSize) {
  TempDir temp;
  const fs::path path = temp.Sub("wide.png");
  WritePng(path, 48, 64);
  ImageReadRules rules;
  rules.max_pixels = 64 * 48;  // the limit itself is allowed
  EXPECT_EQ(ReadImageFile(path.string(), rules).skip, ImageSkip::kNone);
  rules.max_pixels = 64 * 48 - 1;
  const ImageReadResult read = ReadImageFile(path.string(), rules);
  EXPECT_EQ(read.skip, ImageSkip::kTooLarge);
  EXPECT_TRUE(read.bgr.empty());
  EXPECT_EQ(read.reason, "PNG of 64 x 48 pixels, above the limit of 3071 pixels");
  std::string why_not;
  std::vector<float> chw(3 * 8 * 8);
  EXPECT_FALSE(LoadImage(path.string(), Plain(8), false, chw.data(), rules, &why_not));
  EXPECT_EQ(why_not, read.reason);
}

// A tiny file declaring 30,000 x 30,000 pixels is refused from its header
// under the default limit: nothing of its 2.7 GB is ever allocated.
TEST(ImagePixelLimitTest, TheDefaultLimitRefusesAHugeDeclaredImageUndecoded) {
  TempDir temp;
  const fs::path path = temp.Sub("bomb.png");
  WriteDeclaredPng(path, 30000);
  ASSERT_LT(fs::file_size(path), 200u);
  const ImageReadResult read = ReadImageFile(path.string(), ImageReadRules{});
  EXPECT_EQ(read.skip, ImageSkip::kTooLarge);
  EXPECT_NE(read.reason.find("30000 x 30000 pixels"), std::string::npos) << read.reason;
  EXPECT_NE(read.reason.find(std::to_string(kDefaultMaxImagePixels)), std::string::npos);
}

TEST(ImagePixelLimitTest, SourcesCountOversizedImagesAsSkipped) {
  TempDir temp;
  for (int i = 0; i < 3; ++i) WritePng(temp.Sub("data/a/" + std::to_string(i) + ".png"), 8, 8);
  WriteDeclaredPng(temp.Sub("data/a/bomb.png"), 30000);
  ImageFolderSourceOptions options;
  options.batch_size = 8;
  ImageFolderSource source(ScanImageFolder(temp.Sub("data")).samples, Plain(8), options);
  ASSERT_TRUE(source.Preload(1));
  EXPECT_EQ(source.skipped(), 1);
  EXPECT_EQ(source.skipped(ImageSkip::kTooLarge), 1);
  const auto skipped = source.SkippedImages(10);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(DescribeSkip("a/bomb.png", skipped[0].skip, skipped[0].reason)
                .find("a/bomb.png (PNG of 30000 x 30000 pixels, above the limit of"),
            std::string::npos);
}

TEST(ImagePixelLimitTest, FilesLargerThanAnImageOfTheLimitCanBeAreNotRead) {
  EXPECT_EQ(MaxImageFileBytes(1000), 8000 + (int64_t{16} << 20));
  EXPECT_EQ(MaxImageFileBytes(int64_t{1} << 40), INT32_MAX);  // one decode buffer at most
  EXPECT_THROW(CheckImageReadRules(ImageReadRules{"", 0}), EngineError);
}

}  // namespace
}  // namespace tl::engine
