// The final evaluation of a training job (report.json, confusion_matrix.png)
// and the confusion-matrix picture on its own.
#include "job/evaluation_job.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "base/errors.h"
#include "common/testing/temp_dir.h"
#include "eval/confusion_matrix_image.h"
#include "job/image_job.h"
#include "testing/class_images.h"
#include "train/precision.h"
#include "testing/tiny_backbone.h"
#include "testing/tiny_model.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;
using ::tl::testing::TempDir;

const std::vector<std::string> kClasses = {"apple", "banana", "cherry"};

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// Pixels of exactly this BGR colour.
int CountColour(const cv::Mat& image, const cv::Vec3b& colour) {
  int count = 0;
  for (int y = 0; y < image.rows; ++y) {
    for (int x = 0; x < image.cols; ++x) count += image.at<cv::Vec3b>(y, x) == colour;
  }
  return count;
}

class FinalEvaluationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = testing::TinyJobConfig(temp_.path());
    testing::WriteClassFolder(temp_.Sub("train"), kClasses, 8);
    testing::WriteClassFolder(temp_.Sub("val"), kClasses, 2);
    // The test set holds two of the three classes, in other numbers.
    testing::WriteClassFolder(temp_.Sub("test"), {"apple", "banana"}, 3);
    fs::create_directories(temp_.Sub("test/cherry"));
    for (int i = 0; i < 5; ++i) {
      testing::WriteClassImage(temp_.Sub("test/cherry/c" + std::to_string(i) + ".png"), 2, i);
    }
    config_.test_dir = temp_.Sub("test");
    config_.batch_size = 4;
    config_.train.epochs = 3;
  }

  TempDir temp_;
  ImageJobConfig config_;
  ImageJobObserver observer_;
};

TEST_F(FinalEvaluationTest, WritesValidationAndTestReportsAndThePicture) {
  const ImageJobResult result = RunImageJob(config_, observer_);
  ASSERT_EQ(result.reports.size(), 2u);
  EXPECT_EQ(result.reports[0].split, "validation");
  EXPECT_EQ(result.reports[1].split, "test");
  EXPECT_EQ(result.report_path, config_.output_dir + "/report.json");
  EXPECT_EQ(result.confusion_matrix_path, config_.output_dir + "/confusion_matrix.png");

  const nlohmann::json report = ReadJson(result.report_path);
  EXPECT_EQ(report.at("format"), "tl.report.v1");
  const nlohmann::json& test = report.at("test");
  EXPECT_EQ(test.at("images"), 11);
  EXPECT_EQ(test.at("top_k"), 3);  // min(5, 3 classes)
  // With k equal to the class count every label is among the top k.
  EXPECT_DOUBLE_EQ(test.at("top_k_accuracy").get<double>(), 1.0);
  EXPECT_EQ(test.at("class_names"), nlohmann::json(kClasses));
  const std::vector<int64_t> supports = {3, 3, 5};
  int64_t diagonal = 0;
  int64_t total = 0;
  for (size_t c = 0; c < kClasses.size(); ++c) {
    const nlohmann::json& row = test.at("per_class").at(c);
    EXPECT_EQ(row.at("class_name"), kClasses[c]);
    EXPECT_EQ(row.at("support"), supports[c]);
    const std::vector<int64_t> counts = test.at("confusion_matrix").at(c);
    int64_t row_total = 0;
    for (int64_t count : counts) row_total += count;
    EXPECT_EQ(row_total, supports[c]) << "row " << c << " counts every image of its class";
    diagonal += counts[c];
    total += row_total;
  }
  EXPECT_DOUBLE_EQ(test.at("accuracy").get<double>(),
                   static_cast<double>(diagonal) / static_cast<double>(total));
  // Weighted recall is accuracy; the engine computes both its own way.
  EXPECT_NEAR(test.at("weighted_recall").get<double>(), test.at("accuracy").get<double>(), 1e-12);
  EXPECT_EQ(report.at("validation").at("images"), 6);
  // The final validation report is the last epoch's validation.
  EXPECT_DOUBLE_EQ(report.at("validation").at("accuracy").get<double>(),
                   result.epochs.back().val_accuracy);
  EXPECT_DOUBLE_EQ(result.reports[0].top_k_accuracy, result.epochs.back().val_top_k_accuracy);

  const cv::Mat picture = cv::imread(result.confusion_matrix_path);
  ASSERT_FALSE(picture.empty()) << result.confusion_matrix_path;
  EXPECT_GE(picture.cols, 3 * 40);
  EXPECT_GE(picture.rows, 3 * 40);
}

TEST_F(FinalEvaluationTest, WithoutTestSetOnlyValidationIsReported) {
  config_.test_dir.clear();
  config_.train.epochs = 1;
  const ImageJobResult result = RunImageJob(config_, observer_);
  ASSERT_EQ(result.reports.size(), 1u);
  const nlohmann::json report = ReadJson(result.report_path);
  EXPECT_TRUE(report.contains("validation"));
  EXPECT_FALSE(report.contains("test"));
}

TEST_F(FinalEvaluationTest, TestClassUnknownToTheModelIsNamed) {
  testing::WriteClassFolder(temp_.Sub("test2"), {"apple", "durian"}, 2);
  config_.test_dir = temp_.Sub("test2");
  config_.train.epochs = 1;
  try {
    RunImageJob(config_, observer_);
    FAIL() << "a test class the model does not know was accepted";
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("dataset.test_dir"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("durian"), std::string::npos) << error.what();
  }
}

class EvaluationJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trained_ = testing::TrainTinyModel(temp_.path());
    config_.evaluate_model_path = trained_.model_path;
    config_.test_dir = temp_.Sub("val");
    config_.batch_size = 4;
    config_.threads = 1;
    config_.loader_threads = 1;
    config_.output_dir = temp_.Sub("evaluation");
  }

  TempDir temp_;
  ImageJobResult trained_;
  ImageJobConfig config_;
  ImageJobObserver observer_;
};

TEST_F(EvaluationJobTest, ExportedModelOnTheValidationFolderMatchesTheTrainingJobsReport) {
  const ImageJobResult result = RunImageJob(config_, observer_);
  EXPECT_TRUE(result.epochs.empty());
  EXPECT_TRUE(result.model_path.empty());
  EXPECT_EQ(result.dataset.class_names, testing::TinyModelClasses());
  ASSERT_EQ(result.reports.size(), 1u);
  const EvaluationReport& evaluated = result.reports[0];
  // The same model on the same images through the same preprocessing: the
  // exported file must see what the trainer saw.
  ASSERT_FALSE(trained_.reports.empty());
  const EvaluationReport& trained = trained_.reports[0];
  EXPECT_EQ(evaluated.split, "test");
  EXPECT_EQ(evaluated.images, trained.images);
  EXPECT_EQ(evaluated.confusion, trained.confusion);
  EXPECT_DOUBLE_EQ(evaluated.accuracy, trained.accuracy);
  EXPECT_NEAR(evaluated.loss, trained.loss, 1e-5);
  EXPECT_TRUE(fs::is_regular_file(result.report_path));
  EXPECT_TRUE(fs::is_regular_file(result.confusion_matrix_path));
  EXPECT_TRUE(ReadJson(result.report_path).contains("test"));
}

TEST_F(EvaluationJobTest, ForwardPassesFollowThePrecisionRuleAndBf16AgreesWithFloat32) {
  config_.precision = PrecisionRequest::kBFloat16;
  const ImageJobResult bf16 = RunImageJob(config_, observer_);
  EXPECT_EQ(bf16.precision.precision, Precision::kBFloat16) << bf16.precision.reason;
  ASSERT_EQ(bf16.reports.size(), 1u);
  ASSERT_FALSE(trained_.reports.empty());
  const EvaluationReport& trained = trained_.reports[0];
  // bf16 keeps 8 bits of mantissa: the loss moves a little, and at most one
  // image near a decision boundary may change its class.
  EXPECT_EQ(bf16.reports[0].images, trained.images);
  EXPECT_NEAR(bf16.reports[0].accuracy, trained.accuracy, 1.0 / trained.images + 1e-9);
  EXPECT_NEAR(bf16.reports[0].loss, trained.loss, 0.05);
  EXPECT_NE(bf16.reports[0].loss, trained.loss) << "autocast computed nothing in bf16";

  config_.precision = PrecisionRequest::kAuto;
  const ImageJobResult automatic = RunImageJob(config_, observer_);
  EXPECT_EQ(automatic.precision.precision,
            ChoosePrecision(PrecisionRequest::kAuto, torch::Device(torch::kCPU),
                            DetectBf16Hardware(torch::Device(torch::kCPU)))
                .precision)
      << automatic.precision.reason;
  EXPECT_NE(automatic.precision.reason.find("AUTO"), std::string::npos)
      << automatic.precision.reason;
}

TEST_F(EvaluationJobTest, WithoutTestDirTheTrainingFolderIsEvaluated) {
  config_.test_dir.clear();
  config_.train_dir = temp_.Sub("train");
  const ImageJobResult result = RunImageJob(config_, observer_);
  ASSERT_EQ(result.reports.size(), 1u);
  EXPECT_EQ(result.reports[0].images, 3 * 12);
}

TEST_F(EvaluationJobTest, BadModelOrFolderIsNamed) {
  testing::WriteClassFolder(temp_.Sub("strange"), {"apple", "durian"}, 1);
  config_.test_dir = temp_.Sub("strange");
  try {
    RunImageJob(config_, observer_);
    ADD_FAILURE() << "a class the model does not know was accepted";
  } catch (const EngineError& error) {
    EXPECT_NE(std::string(error.what()).find("dataset.test_dir"), std::string::npos)
        << error.what();
  }
  config_.test_dir = temp_.Sub("val");
  config_.evaluate_model_path = temp_.Sub("gone/model.pt");
  try {
    RunImageJob(config_, observer_);
    ADD_FAILURE() << "a missing model was accepted";
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find(config_.evaluate_model_path), std::string::npos)
        << error.what();
  }
}

EvaluationReport HandMadeReport(int classes, bool diagonal) {
  EvaluationReport report;
  report.split = "test";
  for (int c = 0; c < classes; ++c) {
    report.class_names.push_back("class_with_a_long_name_" + std::to_string(c));
    report.confusion.push_back(std::vector<int64_t>(classes, 0));
    if (diagonal) report.confusion[c][c] = 7;
  }
  return report;
}

TEST(ConfusionMatrixImageTest, FullRowSharesAreDeepBlueAndEmptyRowsAreNot) {
  TempDir temp;
  const cv::Vec3b deep_blue(150, 70, 20);
  for (int classes : {3, 20}) {
    DrawConfusionMatrix(HandMadeReport(classes, /*diagonal=*/true), temp.Sub("diag.png"));
    const cv::Mat diagonal = cv::imread(temp.Sub("diag.png"));
    ASSERT_FALSE(diagonal.empty());
    EXPECT_GT(CountColour(diagonal, deep_blue), 0) << classes << " classes";
    DrawConfusionMatrix(HandMadeReport(classes, /*diagonal=*/false), temp.Sub("empty.png"));
    const cv::Mat empty = cv::imread(temp.Sub("empty.png"));
    ASSERT_FALSE(empty.empty());
    EXPECT_EQ(CountColour(empty, deep_blue), 0) << classes << " classes";
    // Names are cut to kMaxLabelChars, so the picture stays within bounds.
    EXPECT_LT(diagonal.cols, 1200);
  }
}

TEST(ConfusionMatrixImageTest, UnwritablePathIsNamed) {
  TempDir temp;
  const std::string path = temp.Sub("missing/folder/cm.png");
  try {
    DrawConfusionMatrix(HandMadeReport(2, true), path);
    FAIL() << "no error for " << path;
  } catch (const EngineError& error) {
    EXPECT_NE(std::string(error.what()).find(path), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace tl::engine
