// `tlctl report`'s text: figures, the per-class table and the matrix.
#include "client/report_view.h"

#include "client/job_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

namespace tl::client {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The line that starts (after spaces) with `start`; empty when none does.
std::string LineStartingWith(const std::string& text, const std::string& start) {
  for (const std::string& line : Lines(text)) {
    const size_t first = line.find_first_not_of(' ');
    if (first != std::string::npos && line.compare(first, start.size(), start) == 0) return line;
  }
  return "";
}

// Two classes: apple 3 right and 1 taken for banana; banana 2 right.
tl::v1::EvaluationReport TwoClassReport() {
  tl::v1::EvaluationReport report;
  report.set_images(6);
  report.set_accuracy(5.0 / 6.0);
  report.set_top_k(2);
  report.set_top_k_accuracy(1.0);
  report.set_loss(0.25);
  report.set_macro_f1(0.8286);
  report.set_weighted_f1(0.8381);
  tl::v1::ClassEvaluation& apple = *report.add_classes();
  apple.set_class_name("apple");
  apple.set_precision(1.0);
  apple.set_recall(0.75);
  apple.set_f1(6.0 / 7.0);
  apple.set_support(4);
  tl::v1::ClassEvaluation& banana = *report.add_classes();
  banana.set_class_name("banana");
  banana.set_precision(2.0 / 3.0);
  banana.set_recall(1.0);
  banana.set_f1(0.8);
  banana.set_support(2);
  for (int64_t count : {3, 1, 0, 2}) report.add_confusion(count);
  return report;
}

TEST(EvaluationReportTextTest, ShowsOverallFiguresClassRowsAndMatrix) {
  const std::string text = EvaluationReportText("test", TwoClassReport());
  EXPECT_THAT(text, HasSubstr("test: 6 images"));
  EXPECT_THAT(text, HasSubstr("accuracy 0.8333"));
  EXPECT_THAT(text, HasSubstr("top-2 accuracy 1.0000"));
  EXPECT_THAT(LineStartingWith(text, "macro"), HasSubstr("0.8286"));
  EXPECT_THAT(LineStartingWith(text, "weighted"), HasSubstr("0.8381"));
  // Per-class rows: number, name, precision, recall, f1, support.
  EXPECT_THAT(LineStartingWith(text, "0  apple "), HasSubstr("1.0000     0.7500     0.8571"));
  EXPECT_THAT(LineStartingWith(text, "1  banana "), HasSubstr("0.6667     1.0000     0.8000"));
  // Matrix rows come after the table: the last two lines.
  const std::vector<std::string> lines = Lines(text);
  ASSERT_GE(lines.size(), 2u);
  EXPECT_THAT(lines[lines.size() - 2], HasSubstr("apple   3 1"));
  EXPECT_THAT(lines[lines.size() - 1], HasSubstr("banana  0 2"));
}

TEST(EvaluationReportTextTest, MatrixLeftOutIsSaid) {
  tl::v1::EvaluationReport report = TwoClassReport();
  report.clear_confusion();
  const std::string text = EvaluationReportText("validation", report);
  EXPECT_THAT(text, HasSubstr("too large to carry"));
  EXPECT_THAT(text, Not(HasSubstr("rows: true class")));
}

TEST(JobReportTextTest, BothReportsInOrderAndTheFiles) {
  tl::v1::Job job;
  EXPECT_THAT(JobReportText(job), IsEmpty());
  *job.mutable_result()->mutable_val_report() = TwoClassReport();
  *job.mutable_result()->mutable_test_report() = TwoClassReport();
  job.mutable_result()->set_report_path("j1/report.json");
  job.mutable_result()->set_confusion_matrix_path("j1/confusion_matrix.png");
  const std::string text = JobReportText(job);
  const size_t validation = text.find("validation: 6 images");
  const size_t test = text.find("test: 6 images");
  ASSERT_NE(validation, std::string::npos);
  ASSERT_NE(test, std::string::npos);
  EXPECT_LT(validation, test);
  EXPECT_THAT(text, HasSubstr("j1/report.json, j1/confusion_matrix.png"));
}

TEST(JobReportTextTest, AnAutoJobShowsEveryCandidateOfItsProbe) {
  tl::v1::Job job;
  *job.mutable_result()->mutable_test_report() = TwoClassReport();
  tl::v1::AutoStrategyDecision& decision = *job.mutable_result()->mutable_auto_strategy();
  decision.set_chosen(tl::v1::TrainingSpec::FULL);
  decision.set_reason("FULL scored 0.9100, 2.0 points above FINE_TUNE");
  decision.set_folds(3);
  decision.set_probe_train_images(20);
  decision.set_probe_holdout_images(10);
  const auto add = [&](tl::v1::TrainingSpec::Strategy strategy, int groups, double rate,
                       std::vector<double> folds) {
    tl::v1::AutoCandidate& candidate = *decision.add_candidates();
    candidate.set_strategy(strategy);
    candidate.set_unfreeze_groups(groups);
    candidate.set_learning_rate(rate);
    candidate.set_epochs(7);
    double sum = 0;
    for (double f : folds) {
      candidate.add_fold_accuracies(f);
      sum += f;
    }
    candidate.set_accuracy(sum / static_cast<double>(folds.size()));
  };
  add(tl::v1::TrainingSpec::FEATURE_EXTRACTION, 0, 0.01, {0.5, 0.6, 0.7});
  add(tl::v1::TrainingSpec::FINE_TUNE, 2, 0.003, {0.9, 0.85, 0.92});
  add(tl::v1::TrainingSpec::FULL, 0, 0.001, {0.95, 0.88, 0.9});
  const std::string text = JobReportText(job);
  EXPECT_LT(text.find("test: 6 images"), text.find("AUTO chose FULL"));
  EXPECT_THAT(text, HasSubstr("FULL scored 0.9100"));
  EXPECT_THAT(text, HasSubstr("probe: 3 folds, 20 training and 10 held-out images"));
  EXPECT_THAT(text, HasSubstr("FINE_TUNE (2 groups)"));
  EXPECT_THAT(text, HasSubstr("0.9000 0.8500 0.9200"));
  EXPECT_THAT(text, ::testing::ContainsRegex(
                        "FULL +0.001 +7 +0.9500 0.8800 0.9000 +0.9100 +0.0  <- chosen\n"));
  EXPECT_THAT(text, ::testing::ContainsRegex("FEATURE_EXTRACTION +0.01 +7 [0-9. ]+\n"));

  // A fine-tune chosen, then trained at the second rate its first fold preferred.
  decision.set_chosen(tl::v1::TrainingSpec::FINE_TUNE);
  decision.set_chosen_learning_rate(0.01);
  add(tl::v1::TrainingSpec::FINE_TUNE, 2, 0.01, {0.95});
  decision.mutable_candidates(3)->set_first_fold_only(true);
  const std::string faster = JobReportText(job);
  EXPECT_THAT(faster, HasSubstr("AUTO chose FINE_TUNE at 0.01\n"));
  EXPECT_THAT(faster, ::testing::ContainsRegex(
                          "FINE_TUNE \\(2 groups\\) +0.01 +7 +0.9500 +0.9500 +0.0  first fold "
                          "only  <- chosen\n"));
  EXPECT_THAT(faster, ::testing::ContainsRegex("FINE_TUNE \\(2 groups\\) +0.003 +7 [0-9. ]+\n"));
  EXPECT_THAT(faster, ::testing::ContainsRegex("FULL +0.001 +7 [0-9. ]+\n"));
}

TEST(JobDetailsTest, NamesTheTestFiguresAndTheReportFile) {
  tl::v1::Job job;
  EXPECT_THAT(JobDetails(job), Not(HasSubstr("report ")));
  *job.mutable_result()->mutable_test_report() = TwoClassReport();
  job.mutable_result()->set_report_path("j1/report.json");
  const std::string text = JobDetails(job);
  EXPECT_THAT(text, HasSubstr("test       accuracy 0.8333, macro F1 0.8286 on 6 images"));
  EXPECT_THAT(text, HasSubstr("report     j1/report.json\n"));
}

TEST(JobDetailsTest, ATrialNamesItsSweepAndIndex) {
  tl::v1::Job job;
  EXPECT_THAT(JobDetails(job), Not(HasSubstr("sweep ")));
  job.set_sweep_id("s-7");
  job.set_sweep_trial(3);
  EXPECT_THAT(JobDetails(job), HasSubstr("sweep      s-7 (this job is its trial 3)\n"));
}

TEST(JobDetailsTest, AnEvaluationJobNamesItsModelInsteadOfAStrategy) {
  tl::v1::Job job;
  job.mutable_spec()->mutable_evaluate()->set_model_path("j1/model.pt");
  const std::string text = JobDetails(job);
  EXPECT_THAT(text, HasSubstr("evaluates  j1/model.pt\n"));
  EXPECT_THAT(text, Not(HasSubstr("strategy")));
}

}  // namespace
}  // namespace tl::client
