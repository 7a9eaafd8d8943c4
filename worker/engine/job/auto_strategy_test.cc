// The AUTO strategy: the rule on given probe figures, the decision's file,
// and whole AUTO jobs on the tiny backbone (recorded, repeatable for a
// seed, reused when the job resumes).
#include "job/auto_strategy.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
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

AutoCandidate Candidate(Strategy strategy, double accuracy) {
  AutoCandidate candidate;
  candidate.strategy = strategy;
  candidate.unfreeze_groups = strategy == Strategy::kFineTune ? 2 : 0;
  candidate.accuracy = accuracy;
  candidate.fold_accuracies = {accuracy};
  return candidate;
}

// Candidates scored frozen / fine-tune / full, as a probe tries them.
std::vector<AutoCandidate> Scored(double frozen, double fine_tune, double full) {
  return {Candidate(Strategy::kFeatureExtraction, frozen), Candidate(Strategy::kFineTune, fine_tune),
          Candidate(Strategy::kFull, full)};
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

TEST(AutoRuleTest, TheMostAccurateCandidateIsChosen) {
  const AutoDecision frozen = DecideStrategy(Scored(0.90, 0.85, 0.80), {});
  EXPECT_EQ(frozen.strategy, Strategy::kFeatureExtraction);
  EXPECT_NE(frozen.reason.find("5.0 points"), std::string::npos) << frozen.reason;
  EXPECT_EQ(DecideStrategy(Scored(0.60, 0.70, 0.90), {}).strategy, Strategy::kFull);
  EXPECT_EQ(DecideStrategy(Scored(0.60, 0.90, 0.70), {}).strategy, Strategy::kFineTune);
}

TEST(AutoRuleTest, FineTuningStaysWithinTheMarginOfTheBest) {
  const AutoDecision close = DecideStrategy(Scored(0.50, 0.855, 0.86), {});
  EXPECT_EQ(close.strategy, Strategy::kFineTune);
  EXPECT_NE(close.reason.find("default strategy stays"), std::string::npos) << close.reason;
  AutoRule eager;
  eager.keep_default_margin = 0;
  EXPECT_EQ(DecideStrategy(Scored(0.50, 0.855, 0.86), {}, eager).strategy, Strategy::kFull);
  // Without a fine-tune candidate (the backbone has no more groups) the best wins.
  EXPECT_EQ(DecideStrategy({Candidate(Strategy::kFeatureExtraction, 0.855),
                            Candidate(Strategy::kFull, 0.86)},
                           {})
                .strategy,
            Strategy::kFull);
  EXPECT_EQ(DecideStrategy({}, {}).strategy, Strategy::kFineTune);
}

TEST(AutoRuleTest, FineTuningStaysWithinTheNoiseOfTheHeldOutImages) {
  // Three folds of 50 images: each image held out once.
  AutoProbeFigures folds;
  folds.folds = 3;
  folds.probe_train_images = 33;
  folds.probe_holdout_images = 17;
  EXPECT_EQ(HeldOutImages(folds), 50);
  // 2.8 points on 50 images lies well inside one standard error (7.9 points).
  const AutoDecision noisy = DecideStrategy(Scored(0.72, 0.794, 0.822), folds);
  EXPECT_EQ(noisy.strategy, Strategy::kFineTune);
  EXPECT_NE(noisy.reason.find("50 held-out images"), std::string::npos) << noisy.reason;
  // The same gap on one slice of 2,000 held-out images is evidence (1.2 points).
  AutoProbeFigures slice;
  slice.folds = 1;
  slice.probe_train_images = 8000;
  slice.probe_holdout_images = 2000;
  EXPECT_EQ(HeldOutImages(slice), 2000);
  EXPECT_EQ(DecideStrategy(Scored(0.72, 0.794, 0.822), slice).strategy, Strategy::kFull);
  // A clear gap wins on few images too: 5.9 points on 100 (3.4 points of noise).
  folds.probe_train_images = 67;
  folds.probe_holdout_images = 33;
  EXPECT_EQ(DecideStrategy(Scored(0.77, 0.908, 0.967), folds).strategy, Strategy::kFull);
  EXPECT_NEAR(HeldOutDifferenceError(0.9, 0.9, 100), std::sqrt(2 * 0.9 * 0.1 / 100), 1e-12);
  EXPECT_EQ(HeldOutDifferenceError(0.9, 0.8, 0), 0);
  EXPECT_EQ(HeldOutImages(AutoProbeFigures{}), 0);
}

// Per-image results of `images` held-out images: the first `right` right.
std::vector<uint8_t> RightOnFirst(int images, int right) {
  std::vector<uint8_t> correct(images, 0);
  std::fill(correct.begin(), correct.begin() + right, 1);
  return correct;
}

TEST(AutoRuleTest, CandidatesScoredOnTheSameImagesAreComparedImageByImage) {
  AutoProbeFigures folds;
  folds.folds = 3;
  folds.probe_train_images = 33;
  folds.probe_holdout_images = 17;
  // FULL gets right every image the fine-tune gets right, and 3 more of 50:
  // 6 points, beyond one paired error (3.4 points) though inside the
  // unpaired one (7.5 points).
  std::vector<AutoCandidate> agreeing = Scored(0.70, 0.80, 0.86);
  EXPECT_EQ(DecideStrategy(agreeing, folds).strategy, Strategy::kFineTune);
  agreeing[1].held_out_correct = RightOnFirst(50, 40);
  agreeing[2].held_out_correct = RightOnFirst(50, 43);
  EXPECT_NEAR(PairedDifferenceError(agreeing[2].held_out_correct, agreeing[1].held_out_correct),
              std::sqrt((3 - 9.0 / 50) / 49 / 50), 1e-12);
  EXPECT_EQ(DecideStrategy(agreeing, folds).strategy, Strategy::kFull);
  // 4 points where the two disagree on 18 images (FULL wrong on 8 the
  // fine-tune got, right on its 10 misses) are noise: one paired error is
  // 8.6 points.
  std::vector<AutoCandidate> noisy = Scored(0.70, 0.80, 0.84);
  noisy[1].held_out_correct = RightOnFirst(50, 40);
  noisy[2].held_out_correct.assign(50, 1);
  std::fill(noisy[2].held_out_correct.begin(), noisy[2].held_out_correct.begin() + 8, 0);
  const AutoDecision kept = DecideStrategy(noisy, folds);
  EXPECT_EQ(kept.strategy, Strategy::kFineTune);
  EXPECT_NE(kept.reason.find("paired difference on 50 held-out images, 18 of them called "
                             "differently"),
            std::string::npos)
      << kept.reason;
  // Results that do not cover the same images fall back to the unpaired error.
  EXPECT_EQ(PairedDifferenceError(RightOnFirst(50, 40), RightOnFirst(49, 40)), -1);
  EXPECT_EQ(PairedDifferenceError({}, {}), -1);
  EXPECT_EQ(PairedDifferenceError(RightOnFirst(10, 5), RightOnFirst(10, 5)), 0);
  agreeing[2].held_out_correct.pop_back();
  EXPECT_EQ(DecideStrategy(agreeing, folds).strategy, Strategy::kFineTune);
}

TEST(AutoRuleTest, ARateTriedOnTheFirstFoldChoosesTheRateNotTheStrategy) {
  // The fine-tune won at 0.003; 0.01, tried on the first fold alone, scored
  // higher there, so it trains at 0.01.
  std::vector<AutoCandidate> candidates = Scored(0.5, 0.80, 0.78);
  candidates[1].learning_rate = 0.003;
  candidates[2].learning_rate = 0.001;
  AutoCandidate check = Candidate(Strategy::kFineTune, 0.95);
  check.learning_rate = 0.01;
  check.first_fold_only = true;
  candidates.push_back(check);
  AutoProbeFigures folds;
  folds.folds = 3;
  const AutoDecision faster = DecideStrategy(candidates, folds);
  EXPECT_EQ(faster.strategy, Strategy::kFineTune);
  EXPECT_EQ(faster.learning_rate, 0.01);
  EXPECT_NE(faster.reason.find("0.01 scored 0.95 on the first fold against 0.8 at 0.003: "
                               "trained at 0.01"),
            std::string::npos)
      << faster.reason;
  // Its one fold does not compete for the strategy: FULL must beat the
  // fine-tune's own folds, and then trains at its own rate.
  candidates[2].accuracy = 0.90;
  const AutoDecision full = DecideStrategy(candidates, folds);
  EXPECT_EQ(full.strategy, Strategy::kFull);
  EXPECT_EQ(full.learning_rate, 0.001);
  EXPECT_EQ(full.reason.find("first fold"), std::string::npos) << full.reason;
  // A rate that scores no higher on the first fold leaves the first.
  candidates[2].accuracy = 0.78;
  candidates[3].fold_accuracies = {0.80};
  const AutoDecision kept = DecideStrategy(candidates, folds);
  EXPECT_EQ(kept.strategy, Strategy::kFineTune);
  EXPECT_EQ(kept.learning_rate, 0.003);
  EXPECT_NE(kept.reason.find("0.01 scored 0.8 on the first fold against 0.8 at 0.003: trained at "
                             "0.003"),
            std::string::npos)
      << kept.reason;
  // On one held-out slice the check ran on that slice.
  AutoProbeFigures slice;
  slice.folds = 1;
  EXPECT_NE(DecideStrategy(candidates, slice).reason.find("on the held-out slice"),
            std::string::npos);

  TrainOptions train;
  ApplyAutoDecision(faster, AutoStrategyOptions{}, train);
  EXPECT_EQ(train.learning_rate, 0.01);
  AutoStrategyOptions spec_rate;
  spec_rate.learning_rate = 0.02;
  ApplyAutoDecision(faster, spec_rate, train);
  EXPECT_EQ(train.learning_rate, 0.02);
}

TEST(AutoRuleTest, TheFineTuneProbesASecondRateWithAdamOnly) {
  for (OptimizerKind optimizer : {OptimizerKind::kAdam, OptimizerKind::kAdamW}) {
    EXPECT_EQ(ProbeLearningRates(Strategy::kFineTune, optimizer),
              (std::vector<double>{DefaultLearningRate(Strategy::kFineTune, optimizer), 0.01}));
    EXPECT_EQ(ProbeLearningRates(Strategy::kFull, optimizer),
              (std::vector<double>{DefaultLearningRate(Strategy::kFull, optimizer)}));
  }
  EXPECT_EQ(ProbeLearningRates(Strategy::kFineTune, OptimizerKind::kSgd).size(), 1u);
}

TEST(AutoRuleTest, AProbeRunSharesTheBudgetAndNeverOutrunsTheFinalEpochs) {
  // 100 images, 100 epochs of 25: 400 final steps; 1.5 times that over six
  // runs (two candidates, three folds) is 100 steps, 34 epochs of a fold's
  // 67 images (3 steps each).
  EXPECT_EQ(ProbeRunEpochs(100, 100, 25, 67, 6, 1.5), 34);
  // 2,500 images, 10 epochs of 32: 790 final steps; two runs on a slice of
  // 800 would get 592 steps, 24 epochs, more than the final run's 10.
  EXPECT_EQ(ProbeRunEpochs(2500, 10, 32, 800, 2, 1.5), 10);
  EXPECT_EQ(ProbeRunEpochs(2500, 10, 32, 800, 2, 0.5), 8);
  // At least one epoch, however small the budget.
  EXPECT_EQ(ProbeRunEpochs(100, 1, 25, 67, 6, 0.01), 1);
}

TEST(AutoRuleTest, TheChosenStrategysDefaultsApply) {
  AutoStrategyOptions options;
  TrainOptions train;
  AutoDecision decision;
  decision.strategy = Strategy::kFull;
  ApplyAutoDecision(decision, options, train);
  EXPECT_EQ(train.strategy, Strategy::kFull);
  EXPECT_EQ(train.backbone_lr_scale, 1.0);
  EXPECT_EQ(train.learning_rate, DefaultLearningRate(Strategy::kFull, train.optimizer));
  decision.strategy = Strategy::kFineTune;
  ApplyAutoDecision(decision, options, train);
  EXPECT_EQ(train.backbone_lr_scale, 0.1);
  EXPECT_EQ(train.learning_rate, DefaultLearningRate(Strategy::kFineTune, train.optimizer));
  options.backbone_lr_scale = 0.5;
  options.learning_rate = 0.02;
  ApplyAutoDecision(decision, options, train);
  EXPECT_EQ(train.backbone_lr_scale, 0.5);
  EXPECT_EQ(train.learning_rate, 0.02);
  // A head alone takes larger steps than a whole pretrained network.
  EXPECT_GT(DefaultLearningRate(Strategy::kFeatureExtraction, OptimizerKind::kAdam),
            DefaultLearningRate(Strategy::kFineTune, OptimizerKind::kAdam));
  EXPECT_GT(DefaultLearningRate(Strategy::kFineTune, OptimizerKind::kAdam),
            DefaultLearningRate(Strategy::kFull, OptimizerKind::kAdam));
}

TEST(AutoRuleTest, DecisionsSurviveTheirJson) {
  AutoProbeFigures figures;
  figures.fine_tune_accuracy = 0.75;
  figures.folds = 3;
  figures.probe_train_images = 40;
  figures.probe_holdout_images = 10;
  AutoDecision decision = DecideStrategy(Scored(0.5, 0.75, 0.7), figures);
  decision.candidates[2].fold_accuracies = {0.6, 0.7, 0.8};
  decision.candidates[0].first_fold_only = true;
  decision.learning_rate = 0.01;
  decision.seconds = 1.5;
  const AutoDecision back = AutoDecisionFromJson(AutoDecisionToJson(decision), "auto.json");
  EXPECT_EQ(back.strategy, decision.strategy);
  EXPECT_EQ(back.reason, decision.reason);
  EXPECT_EQ(back.figures.fine_tune_accuracy, 0.75);
  EXPECT_EQ(back.figures.probe_holdout_images, 10);
  EXPECT_EQ(back.figures.folds, 3);
  EXPECT_EQ(back.seconds, 1.5);
  ASSERT_EQ(back.candidates.size(), 3u);
  EXPECT_EQ(back.candidates[1].strategy, Strategy::kFineTune);
  EXPECT_EQ(back.candidates[1].unfreeze_groups, 2);
  EXPECT_EQ(back.candidates[2].fold_accuracies, (std::vector<double>{0.6, 0.7, 0.8}));
  EXPECT_TRUE(back.candidates[0].first_fold_only);
  EXPECT_FALSE(back.candidates[1].first_fold_only);
  EXPECT_EQ(back.learning_rate, 0.01);
  // A decision an earlier version wrote (two figures, no candidates) reads back.
  const AutoDecision older = AutoDecisionFromJson(
      R"({"strategy": "FINE_TUNE", "reason": "r", "probed": true,
          "feature_extraction_accuracy": 0.4, "fine_tune_accuracy": 0.6,
          "images_per_class": 10, "probe_train_images": 8, "probe_holdout_images": 2,
          "probe_seconds": 1})",
      "auto.json");
  EXPECT_EQ(older.strategy, Strategy::kFineTune);
  EXPECT_EQ(older.figures.folds, 1);
  EXPECT_EQ(older.learning_rate, 0);  // the strategy's default applies
  EXPECT_TRUE(older.candidates.empty());
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
  // 10 training images per class: three folds, each image held out once.
  EXPECT_EQ(decision.figures.folds, 3);
  EXPECT_EQ(decision.figures.probe_holdout_images + decision.figures.probe_train_images, 30);
  EXPECT_EQ(decision.figures.probe_holdout_images, 12);  // 4 of each class's 10
  EXPECT_DOUBLE_EQ(decision.figures.images_per_class, 10);
  // FE, FT and FULL on every fold; a fourth, the fine-tune's second rate,
  // only where the fine-tune is chosen (WithoutARateTheChosenStrategysIsUsed).
  ASSERT_EQ(decision.candidates.size(), decision.strategy == Strategy::kFineTune ? 4u : 3u);
  EXPECT_EQ(decision.candidates[0].strategy, Strategy::kFeatureExtraction);
  EXPECT_EQ(decision.candidates[1].strategy, Strategy::kFineTune);
  EXPECT_EQ(decision.candidates[2].strategy, Strategy::kFull);
  for (size_t i = 0; i < 3; ++i) {
    const AutoCandidate& candidate = decision.candidates[i];
    EXPECT_FALSE(candidate.first_fold_only);
    EXPECT_GE(candidate.epochs, 1);
    EXPECT_EQ(candidate.fold_accuracies.size(), 3u) << StrategyName(candidate.strategy);
    // Every image held out once, each image's result kept for the rule.
    EXPECT_EQ(candidate.held_out_correct.size(), 30u) << StrategyName(candidate.strategy);
  }
  EXPECT_GT(decision.learning_rate, 0);
  EXPECT_EQ(decision.strategy, DecideStrategy(decision.candidates, decision.figures).strategy);
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

// The worker leaves the rate unset when the spec does: each candidate, and
// then the training, takes its strategy's.
TEST_F(AutoJobTest, WithoutARateTheChosenStrategysIsUsed) {
  ImageJobConfig config = Config("no-rate");
  config.train.learning_rate = 0;
  // A fine-tune that always stays: its second rate is tried.
  config.auto_strategy.rule.keep_default_margin = 1;
  ImageJobObserver observer;
  const ImageJobResult result = RunImageJob(config, observer);
  ASSERT_TRUE(result.auto_decision.has_value());
  const AutoDecision& decision = *result.auto_decision;
  EXPECT_EQ(decision.strategy, Strategy::kFineTune);
  ASSERT_EQ(decision.candidates.size(), 4u);
  for (size_t i = 0; i < 3; ++i) {
    const AutoCandidate& candidate = decision.candidates[i];
    EXPECT_EQ(candidate.learning_rate,
              DefaultLearningRate(candidate.strategy, config.train.optimizer));
  }
  const AutoCandidate& check = decision.candidates[3];
  EXPECT_TRUE(check.first_fold_only);
  // Trained and scored on the first fold alone: its 12 held-out images, as
  // long as the first rate's run there.
  EXPECT_EQ(check.fold_accuracies.size(), 1u);
  EXPECT_EQ(check.held_out_correct.size(), 12u);
  EXPECT_EQ(check.epochs, decision.candidates[1].epochs);
  EXPECT_EQ(check.learning_rate,
            ProbeLearningRates(Strategy::kFineTune, config.train.optimizer).back());
  const double first_rate_first_fold = decision.candidates[1].fold_accuracies.front();
  EXPECT_EQ(decision.learning_rate, check.fold_accuracies.front() > first_rate_first_fold
                                        ? check.learning_rate
                                        : decision.candidates[1].learning_rate);
  // The training takes the rate the probe chose.
  ASSERT_FALSE(result.epochs.empty());
  EXPECT_EQ(result.epochs.front().learning_rate, decision.learning_rate);
}

TEST_F(AutoJobTest, AResumedJobKeepsItsDecision) {
  // An earlier attempt chose FULL on figures this probe would not give.
  AutoDecision earlier = DecideStrategy(Scored(0.1, 0.5, 0.9), {});
  ASSERT_EQ(earlier.strategy, Strategy::kFull);
  fs::create_directories(temp_.Sub("resumed"));
  std::ofstream(temp_.Sub("resumed/auto.json")) << AutoDecisionToJson(earlier);

  RecordingObserver observer;
  const ImageJobResult result = RunImageJob(Config("resumed"), observer);
  ASSERT_TRUE(result.auto_decision.has_value());
  EXPECT_TRUE(result.auto_decision->reused);
  EXPECT_EQ(result.auto_decision->strategy, Strategy::kFull);
  ASSERT_EQ(result.auto_decision->candidates.size(), 3u);
  EXPECT_EQ(result.auto_decision->candidates.back().accuracy, 0.9);
  EXPECT_EQ(ReadJson(result.model_info_path)["strategy"], "FULL");
  ASSERT_EQ(observer.decisions.size(), 1u);
  EXPECT_NE(DescribeAutoDecision(observer.decisions[0]).find("earlier attempt"),
            std::string::npos);
}

// The frozen head's candidate computes the pool's features once for all its
// folds (one table of the 30 training images in the worker's cache), and a
// later probe of the same images reads them back instead of writing again.
TEST_F(AutoJobTest, TheFrozenHeadsFoldsShareOneFeatureTable) {
  const auto pool_tables = [this] {
    std::vector<fs::path> found;
    if (!fs::exists(temp_.Sub("feature_cache"))) return found;
    for (const auto& entry : fs::directory_iterator(temp_.Sub("feature_cache"))) {
      std::vector<torch::Tensor> saved;
      torch::load(saved, entry.path().string());
      if (saved.size() == 3 && saved[2].size(0) == 30) found.push_back(entry.path());
    }
    return found;
  };
  ImageJobConfig config = Config("cached");
  config.feature_cache_dir = temp_.Sub("feature_cache");
  ImageJobObserver observer;
  const ImageJobResult first = RunImageJob(config, observer);
  ASSERT_TRUE(first.auto_decision.has_value());
  ASSERT_EQ(first.auto_decision->figures.folds, 3);
  const std::vector<fs::path> tables = pool_tables();
  ASSERT_EQ(tables.size(), 1u);
  // A table written again is a new file (written beside and renamed); a
  // table read is only marked used (its modification time).
  const auto inode = [](const fs::path& path) {
    struct stat info {};
    return ::stat(path.c_str(), &info) == 0 ? info.st_ino : 0;
  };
  const auto written = inode(tables[0]);

  config.output_dir = temp_.Sub("cached-again");
  const ImageJobResult second = RunImageJob(config, observer);
  ASSERT_TRUE(second.auto_decision.has_value());
  EXPECT_EQ(pool_tables(), tables);
  EXPECT_EQ(inode(tables[0]), written);
  EXPECT_EQ(second.auto_decision->candidates.front().fold_accuracies,
            first.auto_decision->candidates.front().fold_accuracies);
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
