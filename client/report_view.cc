#include "client/report_view.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/text.h"

namespace tl::client {

std::string EvaluationReportText(const std::string& title, const tl::v1::EvaluationReport& report) {
  std::string text = absl::StrFormat("%s: %d images\n", title, report.images());
  absl::StrAppendFormat(&text, "  accuracy %.4f   top-%d accuracy %.4f   loss %.4f\n",
                        report.accuracy(), report.top_k(), report.top_k_accuracy(),
                        report.loss());
  absl::StrAppendFormat(&text, "  %-9s  %9s  %9s  %9s\n", "", "precision", "recall", "f1");
  absl::StrAppendFormat(&text, "  %-9s  %9.4f  %9.4f  %9.4f\n", "macro", report.macro_precision(),
                        report.macro_recall(), report.macro_f1());
  absl::StrAppendFormat(&text, "  %-9s  %9.4f  %9.4f  %9.4f\n", "weighted",
                        report.weighted_precision(), report.weighted_recall(),
                        report.weighted_f1());

  // Class names are folder names from the dataset: shown with control characters escaped.
  std::vector<std::string> names;
  size_t name_width = 5;
  for (const tl::v1::ClassEvaluation& row : report.classes()) {
    names.push_back(EscapeControlCharacters(row.class_name()));
    name_width = std::max(name_width, names.back().size());
  }
  const int name_w = static_cast<int>(name_width);
  absl::StrAppendFormat(&text, "\n  %4s  %-*s  %9s  %9s  %9s  %7s\n", "#", name_w, "class",
                        "precision", "recall", "f1", "support");
  for (int c = 0; c < report.classes_size(); ++c) {
    const tl::v1::ClassEvaluation& row = report.classes(c);
    absl::StrAppendFormat(&text, "  %4d  %-*s  %9.4f  %9.4f  %9.4f  %7d\n", c, name_w,
                          names[c], row.precision(), row.recall(), row.f1(),
                          row.support());
  }

  const int n = report.classes_size();
  if (n == 0 || report.confusion_size() != n * n) {
    if (n > 0) absl::StrAppend(&text, "\n  (confusion matrix too large to carry; see report.json)\n");
    return text;
  }
  int64_t largest = 0;
  for (int64_t count : report.confusion()) largest = std::max(largest, count);
  const int cell = std::max<int>(static_cast<int>(std::to_string(largest).size()),
                                 static_cast<int>(std::to_string(n - 1).size()));
  absl::StrAppend(&text, "\n  confusion matrix (rows: true class, columns: predicted class #)\n");
  absl::StrAppendFormat(&text, "  %4s  %-*s ", "", name_w, "");
  for (int p = 0; p < n; ++p) absl::StrAppendFormat(&text, " %*d", cell, p);
  absl::StrAppend(&text, "\n");
  for (int t = 0; t < n; ++t) {
    absl::StrAppendFormat(&text, "  %4d  %-*s ", t, name_w, names[t]);
    for (int p = 0; p < n; ++p) {
      absl::StrAppendFormat(&text, " %*d", cell, report.confusion(t * n + p));
    }
    absl::StrAppend(&text, "\n");
  }
  return text;
}

std::string AutoProbeText(const tl::v1::AutoStrategyDecision& decision) {
  std::string text = absl::StrFormat(
      "AUTO chose %s%s\n  %s\n", tl::v1::TrainingSpec::Strategy_Name(decision.chosen()),
      decision.chosen_learning_rate() > 0
          ? absl::StrFormat(" at %.3g", decision.chosen_learning_rate())
          : "",
      EscapeControlCharacters(decision.reason()));
  if (decision.candidates_size() == 0) return text;
  absl::StrAppendFormat(&text, "  probe: %d %s, %d training and %d held-out images%s\n",
                        decision.folds(), decision.folds() == 1 ? "held-out slice" : "folds",
                        decision.probe_train_images(), decision.probe_holdout_images(),
                        decision.folds() > 1 ? " in the first" : "");
  absl::StrAppendFormat(&text, "\n  %-24s  %9s  %6s  %-23s  %8s  %7s\n", "candidate",
                        "rate", "epochs", "held-out accuracy", "mean", "seconds");
  for (const tl::v1::AutoCandidate& candidate : decision.candidates()) {
    std::string name = tl::v1::TrainingSpec::Strategy_Name(candidate.strategy());
    if (candidate.strategy() == tl::v1::TrainingSpec::FINE_TUNE) {
      absl::StrAppend(&name, " (", candidate.unfreeze_groups(), " groups)");
    }
    std::vector<std::string> folds;
    for (double accuracy : candidate.fold_accuracies()) {
      folds.push_back(absl::StrFormat("%.4f", accuracy));
    }
    // Probes that chose no rate (earlier versions) tried one per strategy.
    const bool chosen = candidate.strategy() == decision.chosen() &&
                        (decision.chosen_learning_rate() <= 0 ||
                         candidate.learning_rate() == decision.chosen_learning_rate());
    const std::string mark =
        absl::StrCat(candidate.first_fold_only() && decision.folds() > 1 ? "  first fold only" : "",
                     chosen ? "  <- chosen" : "");
    absl::StrAppendFormat(&text, "  %-24s  %9.3g  %6d  %-23s  %8.4f  %7.1f%s\n", name,
                          candidate.learning_rate(), candidate.epochs(),
                          absl::StrJoin(folds, " "), candidate.accuracy(), candidate.seconds(),
                          mark);
  }
  return text;
}

std::string JobReportText(const tl::v1::Job& job) {
  const tl::v1::JobResult& result = job.result();
  std::string text;
  if (result.has_val_report()) text += EvaluationReportText("validation", result.val_report());
  if (result.has_test_report()) {
    if (!text.empty()) text += "\n";
    text += EvaluationReportText("test", result.test_report());
  }
  if (!text.empty() && !result.report_path().empty()) {
    absl::StrAppend(&text, "\nfiles: ", EscapeControlCharacters(result.report_path()), ", ",
                    EscapeControlCharacters(result.confusion_matrix_path()), "\n");
  }
  if (!text.empty() && result.has_auto_strategy()) {
    absl::StrAppend(&text, "\n", AutoProbeText(result.auto_strategy()));
  }
  return text;
}

}  // namespace tl::client
