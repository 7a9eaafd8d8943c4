// The AUTO strategy: the rule on given probe figures, the decision's file,
// and whole AUTO jobs on the tiny backbone (recorded, repeatable for a
// seed, reused when the job resumes).
#include "job/auto_strategy.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/errors.h"
#include "common/testing/temp_dir.h"
#include "job/image_job.h"
#include "testing/class_images.h"
#include "testing/tiny_model.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;
using ::tl::testing::TempDir;

AutoProbeFigures Figures(double frozen, double fine_tune, double images_per_class) {
  AutoProbeFigures figures;
  figures.feature_extraction_accuracy = frozen;
  figures.fine_tune_accuracy = fine_tune;
  figures.images_per_class = images_per_class;
  return figures;
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

TEST(AutoRuleTest, FrozenFeaturesThatFitKeepTheBackboneFrozen) {
  EXPECT_EQ(DecideStrategy(Figures(0.90, 0.92, 50)).strategy, Strategy::kFeatureExtraction);
  // Fine-tuning doing worse (overfitting a small slice) is no reason to fine-tune.
  EXPECT_EQ(DecideStrategy(Figures(0.90, 0.70, 5000)).strategy, Strategy::kFeatureExtraction);
  EXPECT_NE(DecideStrategy(Figures(0.90, 0.92, 50)).reason.find("2.0 points"), std::string::npos);
}

TEST(AutoRuleTest, AFineTuneThatGainsMoreThanTheMarginIsChosen) {
  const AutoDecision decision = DecideStrategy(Figures(0.60, 0.70, 50));
  EXPECT_EQ(decision.strategy, Strategy::kFineTune);
  EXPECT_NE(decision.reason.find("10.0 points"), std::string::npos) << decision.reason;
  // A big gap with little data is still FINE_TUNE, not FULL.
  EXPECT_EQ(DecideStrategy(Figures(0.40, 0.80, 999)).strategy, Strategy::kFineTune);
  // Much data but a modest gap: FINE_TUNE.
  EXPECT_EQ(DecideStrategy(Figures(0.80, 0.85, 5000)).strategy, Strategy::kFineTune);
}

TEST(AutoRuleTest, ABigGapWithPlentyOfDataTrainsEverything) {
  EXPECT_EQ(DecideStrategy(Figures(0.40, 0.80, 1000)).strategy, Strategy::kFull);
  AutoRule strict;
  strict.full_images_per_class = 2000;
  EXPECT_EQ(DecideStrategy(Figures(0.40, 0.80, 1000), strict).strategy, Strategy::kFineTune);
}

TEST(AutoRuleTest, TheChosenStrategysDefaultsApply) {
  AutoStrategyOptions options;
  TrainOptions train;
  AutoDecision decision;
  decision.strategy = Strategy::kFull;
  ApplyAutoDecision(decision, options, train);
  EXPECT_EQ(train.strategy, Strategy::kFull);
  EXPECT_EQ(train.backbone_lr_scale, 1.0);
  decision.strategy = Strategy::kFineTune;
  ApplyAutoDecision(decision, options, train);
  EXPECT_EQ(train.backbone_lr_scale, 0.1);
  options.backbone_lr_scale = 0.5;
  ApplyAutoDecision(decision, options, train);
  EXPECT_EQ(train.backbone_lr_scale, 0.5);
}

TEST(AutoRuleTest, DecisionsSurviveTheirJson) {
  AutoDecision decision = DecideStrategy(Figures(0.5, 0.75, 12.5));
  decision.figures.probe_train_images = 40;
  decision.figures.probe_holdout_images = 10;
  decision.seconds = 1.5;
  const AutoDecision back = AutoDecisionFromJson(AutoDecisionToJson(decision), "auto.json");
  EXPECT_EQ(back.strategy, decision.strategy);
  EXPECT_EQ(back.reason, decision.reason);
  EXPECT_EQ(back.figures.fine_tune_accuracy, 0.75);
  EXPECT_EQ(back.figures.probe_holdout_images, 10);
  EXPECT_EQ(back.seconds, 1.5);
  try {
    AutoDecisionFromJson(R"({"strategy": "SIDEWAYS"})", "job/auto.json");
    FAIL() << "a bad decision file was accepted";
  } catch (const EngineError& error) {
    EXPECT_NE(std::string(error.what()).find("job/auto.json"), std::string::npos) << error.what();
  }
}

class AutoJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::WriteClassFolder(temp_.Sub("train"), testing::TinyModelClasses(), 10);
    testing::WriteClassFolder(temp_.Sub("val"), testing::TinyModelClasses(), 2);
  }

  ImageJobConfig Config(const std::string& output) {
    ImageJobConfig config = testing::TinyJobConfig(temp_.path());
    config.train.epochs = 2;
    config.auto_strategy.enabled = true;
    config.auto_strategy.head_epochs = 3;
    config.output_dir = temp_.Sub(output);
    return config;
  }

  TempDir temp_;
};

class RecordingObserver : public ImageJobObserver {
 public:
  void OnAutoStrategy(const AutoDecision& decision) override { decisions.push_back(decision); }
  std::vector<AutoDecision> decisions;
};

TEST_F(AutoJobTest, TheDecisionIsRecordedAndRepeatsForASeed) {
  RecordingObserver first_observer;
  const ImageJobResult first = RunImageJob(Config("first"), first_observer);
  ASSERT_TRUE(first.auto_decision.has_value());
  const AutoDecision& decision = *first.auto_decision;
  EXPECT_TRUE(decision.probed);
  EXPECT_FALSE(decision.reused);
  // 30 training images: 6 held out (2 per class), 24 probed on.
  EXPECT_EQ(decision.figures.probe_holdout_images, 6);
  EXPECT_EQ(decision.figures.probe_train_images, 24);
  EXPECT_DOUBLE_EQ(decision.figures.images_per_class, 10);
  EXPECT_EQ(decision.strategy, DecideStrategy(decision.figures).strategy);
  ASSERT_EQ(first_observer.decisions.size(), 1u);
  EXPECT_EQ(first.epochs.size(), 2u);
  EXPECT_TRUE(fs::exists(first.model_path));

  const nlohmann::json metrics = ReadJson(first.metrics_path);
  ASSERT_TRUE(metrics.contains("auto_strategy")) << metrics.dump();
  EXPECT_EQ(metrics["auto_strategy"]["strategy"], StrategyName(decision.strategy));
  EXPECT_EQ(metrics["auto_strategy"]["fine_tune_accuracy"], decision.figures.fine_tune_accuracy);
  EXPECT_EQ(ReadJson(first.model_info_path)["strategy"], StrategyName(decision.strategy));
  EXPECT_TRUE(fs::exists(temp_.Sub("first/auto.json")));
  std::cout << DescribeAutoDecision(decision) << "\n";

  ImageJobObserver observer;
  const ImageJobResult second = RunImageJob(Config("second"), observer);
  ASSERT_TRUE(second.auto_decision.has_value());
  EXPECT_EQ(second.auto_decision->strategy, decision.strategy);
  EXPECT_EQ(second.auto_decision->figures.feature_extraction_accuracy,
            decision.figures.feature_extraction_accuracy);
  EXPECT_EQ(second.auto_decision->figures.fine_tune_accuracy, decision.figures.fine_tune_accuracy);
}

TEST_F(AutoJobTest, AResumedJobKeepsItsDecision) {
  // An earlier attempt chose FULL on figures this probe would not give.
  AutoDecision earlier = DecideStrategy(Figures(0.1, 0.9, 5000));
  ASSERT_EQ(earlier.strategy, Strategy::kFull);
  fs::create_directories(temp_.Sub("resumed"));
  std::ofstream(temp_.Sub("resumed/auto.json")) << AutoDecisionToJson(earlier);

  RecordingObserver observer;
  const ImageJobResult result = RunImageJob(Config("resumed"), observer);
  ASSERT_TRUE(result.auto_decision.has_value());
  EXPECT_TRUE(result.auto_decision->reused);
  EXPECT_EQ(result.auto_decision->strategy, Strategy::kFull);
  EXPECT_EQ(result.auto_decision->figures.fine_tune_accuracy, 0.9);
  EXPECT_EQ(ReadJson(result.model_info_path)["strategy"], "FULL");
  ASSERT_EQ(observer.decisions.size(), 1u);
  EXPECT_NE(DescribeAutoDecision(observer.decisions[0]).find("earlier attempt"),
            std::string::npos);
}

TEST_F(AutoJobTest, AStopRequestEndsTheProbe) {
  class Stopping : public ImageJobObserver {
    bool StopRequested() override { return true; }
  } observer;
  const ImageJobResult result = RunImageJob(Config("stopped"), observer);
  EXPECT_EQ(result.outcome.kind, RunOutcome::Kind::kCancelled) << result.outcome.reason;
  EXPECT_TRUE(result.model_path.empty());
  EXPECT_FALSE(fs::exists(temp_.Sub("stopped/auto.json")));
}

}  // namespace
}  // namespace tl::engine
