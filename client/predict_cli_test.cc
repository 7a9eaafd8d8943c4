// `tlctl predict` end to end: tlctl runs the tlpredict beside it on a model
// exported by a real tiny job.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "common/testing/temp_dir.h"
#include "testing/tiny_model.h"

namespace {

using ::tl::testing::TempDir;

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer;
  size_t read = 0;
  while ((read = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    result.output.append(buffer.data(), read);
  }
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

class PredictCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    temp_ = new TempDir();
    model_path_ = tl::engine::testing::TrainTinyModel(temp_->path()).model_path;
    for (int label = 0; label < 3; ++label) {
      tl::engine::testing::WriteClassImage(Image(label), label, 3);
    }
  }
  static void TearDownTestSuite() { delete temp_; }
  static std::string Image(int label) { return temp_->Sub("probe" + std::to_string(label) + ".png"); }

  static TempDir* temp_;
  static std::string model_path_;
};
TempDir* PredictCliTest::temp_ = nullptr;
std::string PredictCliTest::model_path_;

TEST_F(PredictCliTest, PrintsTheTrainedClassFirst) {
  const CommandResult result = RunCommand(std::string(TL_TLCTL) + " predict --top 2 " +
                                          model_path_ + " " + Image(0) + " " + Image(2));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  // Per image: its path, then "   1. class  probability" lines.
  const size_t first = result.output.find(Image(0) + "\n   1. apple ");
  const size_t second = result.output.find(Image(2) + "\n   1. cherry ");
  EXPECT_NE(first, std::string::npos) << result.output;
  EXPECT_NE(second, std::string::npos) << result.output;
  EXPECT_EQ(result.output.find("   3. "), std::string::npos) << "--top 2 shows two";
}

TEST_F(PredictCliTest, JsonHasEveryImageAndTheTopK) {
  const CommandResult result = RunCommand(std::string(TL_TLCTL) + " predict --json --top 3 " +
                                          model_path_ + " " + Image(1));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const nlohmann::json parsed = nlohmann::json::parse(result.output);
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed[0]["image"], Image(1));
  ASSERT_EQ(parsed[0]["predictions"].size(), 3u);
  EXPECT_EQ(parsed[0]["predictions"][0]["class_name"], "banana");
  EXPECT_EQ(parsed[0]["predictions"][0]["label"], 1);
}

TEST_F(PredictCliTest, Bf16AndFloat32RankTheClassesAlike) {
  nlohmann::json by_precision[2];
  const char* precisions[2] = {"fp32", "bf16"};
  for (int i = 0; i < 2; ++i) {
    const CommandResult result =
        RunCommand(std::string(TL_TLCTL) + " predict --json --top 3 --precision " +
                   precisions[i] + " " + model_path_ + " " + Image(0) + " " + Image(2));
    ASSERT_EQ(result.exit_code, 0) << result.output;
    by_precision[i] = nlohmann::json::parse(result.output);
    ASSERT_EQ(by_precision[i].size(), 2u) << result.output;
  }
  bool any_differs = false;
  for (int image = 0; image < 2; ++image) {
    const nlohmann::json& fp32 = by_precision[0][image]["predictions"][0];
    const nlohmann::json& bf16 = by_precision[1][image]["predictions"][0];
    EXPECT_EQ(bf16["class_name"], fp32["class_name"]);
    // bf16 logits carry about 3 significant digits.
    EXPECT_NEAR(bf16["probability"].get<double>(), fp32["probability"].get<double>(), 0.05);
    any_differs = any_differs || bf16["probability"] != fp32["probability"];
  }
  EXPECT_TRUE(any_differs) << "bf16 autocast computed nothing in bf16";
  EXPECT_EQ(by_precision[0][0]["precision"], "FP32");
  EXPECT_EQ(by_precision[1][0]["precision"], "BF16");
  for (const std::string& program : {std::string(TL_TLCTL) + " predict", std::string(TL_TLPREDICT)}) {
    const CommandResult bad =
        RunCommand(program + " --precision fp16 " + model_path_ + " " + Image(0));
    EXPECT_NE(bad.exit_code, 0) << program << ": " << bad.output;
    EXPECT_NE(bad.output.find("--precision"), std::string::npos) << program << ": " << bad.output;
  }
}

TEST_F(PredictCliTest, BadInputIsNamedAndFailsWithStatus2) {
  const std::string missing_model = temp_->Sub("gone/model.pt");
  CommandResult result =
      RunCommand(std::string(TL_TLCTL) + " predict " + missing_model + " " + Image(0));
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find(missing_model), std::string::npos) << result.output;

  const std::string missing_image = temp_->Sub("nowhere.png");
  result = RunCommand(std::string(TL_TLCTL) + " predict " + model_path_ + " " + missing_image +
                      " " + Image(0));
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("image " + missing_image + " cannot be read"), std::string::npos)
      << result.output;
  // The readable image is still classified.
  EXPECT_NE(result.output.find("1. apple"), std::string::npos) << result.output;
}

}  // namespace
