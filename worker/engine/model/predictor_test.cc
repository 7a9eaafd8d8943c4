// Prediction with an exported model: the classes it learned, and bad input
// named in errors.
#include "model/predictor.h"

#include <gtest/gtest.h>

#include <fstream>
#include <opencv2/imgproc.hpp>

#include "base/errors.h"
#include "common/testing/temp_dir.h"
#include "testing/tiny_model.h"

namespace tl::engine {
namespace {

using ::tl::testing::TempDir;
using ::tl::testing::WriteFile;

// What `call` throws; fails the test when it throws nothing.
std::string ErrorOf(const std::function<void()>& call) {
  try {
    call();
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
    return error.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

class PredictorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    temp_ = new TempDir();
    model_path_ = testing::TrainTinyModel(temp_->path()).model_path;
  }
  static void TearDownTestSuite() { delete temp_; }

  static TempDir* temp_;
  static std::string model_path_;
};
TempDir* PredictorTest::temp_ = nullptr;
std::string PredictorTest::model_path_;

TEST_F(PredictorTest, ReadsClassesAndPreprocessingFromModelJson) {
  Predictor predictor(model_path_);
  EXPECT_EQ(predictor.info().class_names, testing::TinyModelClasses());
  EXPECT_EQ(predictor.info().preprocessing.crop_size, testing::kTinyInputSize);
  EXPECT_EQ(predictor.info().preprocessing.resize_size, DefaultResizeSize(testing::kTinyInputSize));
  EXPECT_EQ(predictor.info().preprocessing.mean, testing::TinyManifest().mean);
}

TEST_F(PredictorTest, SolidColourImagesGetTheClassTheyWereTrainedAs) {
  Predictor predictor(model_path_);
  for (int label = 0; label < 3; ++label) {
    // A brightness between the training images', in a larger image than
    // training used: the resize and crop must match training's.
    const std::string path = temp_->Sub("probe" + std::to_string(label) + ".png");
    cv::Mat image;
    cv::resize(testing::ClassImage(label, 4), image, {40, 30});
    ASSERT_TRUE(cv::imwrite(path, image));
    const std::vector<Prediction> top = predictor.Classify(path, 5);
    ASSERT_EQ(top.size(), 3u) << "k is capped at the class count";
    EXPECT_EQ(top[0].label, label) << path;
    EXPECT_EQ(top[0].class_name, testing::TinyModelClasses()[label]);
    EXPECT_GT(top[0].probability, 0.5);
    double sum = 0;
    for (const Prediction& p : top) sum += p.probability;
    EXPECT_NEAR(sum, 1.0, 1e-5);
    EXPECT_GE(top[0].probability, top[1].probability);
    EXPECT_GE(top[1].probability, top[2].probability);
  }
}

TEST_F(PredictorTest, UnreadableImageIsNamed) {
  Predictor predictor(model_path_);
  const std::string missing = temp_->Sub("no/such.png");
  EXPECT_NE(ErrorOf([&] { predictor.Classify(missing, 1); }).find(missing), std::string::npos);
  const std::string corrupt = temp_->Sub("corrupt.png");
  WriteFile(corrupt, "not an image at all");
  EXPECT_NE(ErrorOf([&] { predictor.Classify(corrupt, 1); }).find(corrupt), std::string::npos);
}

TEST_F(PredictorTest, MissingModelOrInfoIsNamed) {
  const std::string missing = temp_->Sub("nothing/model.pt");
  EXPECT_NE(ErrorOf([&] { Predictor{missing}; }).find(missing + " does not exist"),
            std::string::npos);
  // A model whose model.json is gone.
  const std::string lonely = temp_->Sub("lonely/model.pt");
  std::filesystem::create_directories(temp_->Sub("lonely"));
  std::filesystem::copy_file(model_path_, lonely);
  EXPECT_NE(ErrorOf([&] { Predictor{lonely}; }).find(temp_->Sub("lonely/model.json")),
            std::string::npos);
  // A model.json without class names names the field.
  WriteFile(temp_->Sub("lonely/model.json"),
            R"({"format": "tl.model.v1", "input_size": 8, "resize_size": 9})");
  EXPECT_NE(ErrorOf([&] { Predictor{lonely}; }).find("class_names"), std::string::npos);
}

}  // namespace
}  // namespace tl::engine
