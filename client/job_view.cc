#include "client/job_view.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/text.h"

namespace tl::client {
namespace {

// Whatever a caller or a worker wrote (names, owners, errors, class names, log lines), made
// safe for a terminal: control characters shown escaped, so none moves the cursor, clears the
// screen or passes for another line.
std::string Shown(const std::string& text) { return EscapeControlCharacters(text); }

double Seconds(const google::protobuf::Timestamp& timestamp) {
  return static_cast<double>(timestamp.seconds()) + timestamp.nanos() * 1e-9;
}

// Classes with their training / validation counts (the first few), the
// imbalance, and what the dataset check found wrong, if anything.
std::string DatasetCheckLines(const tl::v1::DatasetSummary& dataset) {
  constexpr int kClassesShown = 6;
  std::string text;
  if (dataset.train_images_per_class_size() == dataset.class_names_size() &&
      dataset.class_names_size() > 0) {
    std::vector<std::string> classes;
    for (int i = 0; i < std::min(dataset.class_names_size(), kClassesShown); ++i) {
      const int64_t val =
          i < dataset.val_images_per_class_size() ? dataset.val_images_per_class(i) : 0;
      classes.push_back(absl::StrCat(Shown(dataset.class_names(i)), " ",
                                     dataset.train_images_per_class(i), "/", val));
    }
    if (dataset.class_names_size() > kClassesShown) classes.push_back("...");
    absl::StrAppend(&text, "classes    ", absl::StrJoin(classes, ", "),
                    absl::StrFormat(" (train/val); imbalance %.2f", dataset.imbalance_ratio()),
                    "\n");
  }
  std::vector<std::string> findings;
  if (dataset.unreadable_examples_size() > 0) {
    findings.push_back(absl::StrCat("unreadable: ",
                                    Shown(absl::StrJoin(dataset.unreadable_examples(), ", "))));
  }
  if (dataset.duplicate_images() > 0) {
    findings.push_back(absl::StrCat(dataset.duplicate_images(),
                                    " validation images duplicate training images (",
                                    dataset.duplicate_examples_size() > 0
                                        ? Shown(dataset.duplicate_examples(0))
                                        : "",
                                    dataset.duplicate_images() > 1 ? ", ..." : "", ")"));
  }
  for (const std::string& finding : findings) absl::StrAppend(&text, "check      ", finding, "\n");
  return text;
}

}  // namespace

bool JobHasEnded(tl::v1::Job::State state) {
  using tl::v1::Job;
  return state == Job::SUCCEEDED || state == Job::FAILED || state == Job::CANCELLED ||
         state == Job::STOPPED_EARLY;
}

std::string FormatTimestamp(const google::protobuf::Timestamp& timestamp) {
  if (timestamp.seconds() == 0 && timestamp.nanos() == 0) return "-";
  const absl::Time time = absl::FromUnixSeconds(timestamp.seconds()) +
                          absl::Nanoseconds(timestamp.nanos());
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", time, absl::LocalTimeZone());
}

std::string ProgressLine(const tl::v1::Progress& progress, int bar_width) {
  const double fraction =
      progress.batches() > 0
          ? std::clamp(static_cast<double>(progress.batch()) / progress.batches(), 0.0, 1.0)
          : 0.0;
  const int filled = static_cast<int>(std::lround(fraction * bar_width));
  const char* what = progress.phase() == tl::v1::Progress::AUTO_PROBE ? "auto probe run" : "epoch";
  return absl::StrFormat("%s %d/%d [%s%s] %3d%%  %d/%d batches  loss %.4f  %.0f img/s",
                         what, progress.epoch(), progress.epochs(), std::string(filled, '#'),
                         std::string(bar_width - filled, '.'),
                         static_cast<int>(std::lround(fraction * 100)), progress.batch(),
                         progress.batches(), progress.loss(), progress.images_per_second());
}

std::string EpochTableHeader() {
  return absl::StrFormat("%5s  %10s  %9s  %8s  %7s  %7s  %8s  %7s", "epoch", "train_loss",
                         "train_acc", "val_loss", "val_acc", "val_f1", "img/s", "seconds");
}

std::string EpochTableRow(const tl::v1::EpochMetrics& m, bool validated) {
  if (!validated) {
    return absl::StrFormat("%5d  %10.4f  %9.4f  %8s  %7s  %7s  %8.0f  %7.1f", m.epoch(),
                           m.train_loss(), m.train_accuracy(), "-", "-", "-",
                           m.images_per_second(), m.seconds());
  }
  return absl::StrFormat("%5d  %10.4f  %9.4f  %8.4f  %7.4f  %7.4f  %8.0f  %7.1f", m.epoch(),
                         m.train_loss(), m.train_accuracy(), m.val_loss(), m.val_accuracy(),
                         m.val_macro_f1(), m.images_per_second(), m.seconds());
}

bool HasValidationImages(const tl::v1::Job& job) {
  return !job.result().has_dataset() || job.result().dataset().val_images() > 0;
}

std::string JobDetails(const tl::v1::Job& job) {
  std::string text = absl::StrCat("job        ", job.id(), "\n");
  absl::StrAppend(&text, "name       ", job.spec().name().empty() ? "-" : Shown(job.spec().name()),
                  "\n");
  absl::StrAppend(&text, "state      ", tl::v1::Job::State_Name(job.state()),
                  job.cancel_requested() && job.state() != tl::v1::Job::CANCELLED
                      ? " (cancel requested)"
                      : "",
                  job.pause_requested() ? " (pause requested)" : "", "\n");
  if (!job.pending_reason().empty()) {
    absl::StrAppend(&text, "waiting    ", Shown(job.pending_reason()), "\n");
  }
  absl::StrAppend(&text, "owner      ", Shown(job.owner()), "\n");
  if (!job.sweep_id().empty()) {
    absl::StrAppend(&text, "sweep      ", Shown(job.sweep_id()), " (this job is its trial ",
                    job.sweep_trial(), ")\n");
  }
  absl::StrAppend(&text, "attempt    ", job.attempt(),
                  job.failures() > 0 ? absl::StrCat(" (", job.failures(), " failed)") : "", "\n");
  if (job.replica_worker_ids_size() > 1) {
    absl::StrAppend(&text, "workers    ", Shown(absl::StrJoin(job.replica_worker_ids(), ", ")), " (",
                    job.replica_worker_ids_size(), " replicas, rank 0 first)\n");
  } else if (!job.worker_id().empty()) {
    absl::StrAppend(&text, "worker     ", Shown(job.worker_id()), "\n");
  }
  if (job.spec().has_evaluate()) {
    absl::StrAppend(&text, "evaluates  ", Shown(job.spec().evaluate().model_path()), "\n");
  } else {
    // Epochs left to the data join the spec once the worker has scanned it.
    const tl::v1::TrainingSpec& training = job.spec().training();
    absl::StrAppend(&text, "strategy   ", tl::v1::TrainingSpec::Strategy_Name(training.strategy()),
                    ", ",
                    training.has_epochs() ? absl::StrCat(training.epochs(), " epochs")
                                          : std::string("epochs sized by the data"),
                    "\n");
  }
  absl::StrAppend(&text, "created    ", FormatTimestamp(job.create_time()), "\n");
  absl::StrAppend(&text, "started    ", FormatTimestamp(job.start_time()), "\n");
  absl::StrAppend(&text, "ended      ", FormatTimestamp(job.end_time()), "\n");
  if (job.has_start_time() && job.has_end_time()) {
    absl::StrAppend(&text, "duration   ",
                    absl::StrFormat("%.1f s", Seconds(job.end_time()) - Seconds(job.start_time())),
                    "\n");
  }
  if (job.epoch() > 0) absl::StrAppend(&text, "epoch      ", job.epoch(), "\n");
  if (!job.error().empty()) absl::StrAppend(&text, "error      ", Shown(job.error()), "\n");
  const tl::v1::JobResult& result = job.result();
  if (result.has_dataset()) {
    absl::StrAppend(&text, "dataset    ", result.dataset().class_names_size(), " classes, ",
                    result.dataset().train_images(), " train / ", result.dataset().val_images(),
                    " val images",
                    result.dataset().skipped_images() > 0
                        ? absl::StrCat(", ", result.dataset().skipped_images(), " unreadable")
                        : "",
                    "\n");
    absl::StrAppend(&text, DatasetCheckLines(result.dataset()));
  }
  if (result.data_sizing().sized_fields_size() > 0) {
    const tl::v1::DataSizing& sizing = result.data_sizing();
    absl::StrAppend(&text, "sized      ",
                    absl::StrFormat("%d epochs of batch %d, validation slice %g: %d steps over %d "
                                    "images (%s sized by the data)",
                                    sizing.epochs(), sizing.batch_size(), sizing.val_fraction(),
                                    sizing.steps(), sizing.train_images(),
                                    absl::StrJoin(sizing.sized_fields(), ", ")),
                    "\n");
  }
  if (!result.precision_reason().empty()) {
    absl::StrAppend(&text, "precision  ", Shown(result.precision_reason()), "\n");
  }
  if (result.has_auto_strategy()) {
    const tl::v1::AutoStrategyDecision& decision = result.auto_strategy();
    std::string evidence;
    if (decision.probed() && decision.candidates_size() > 0) {
      // Probes of earlier versions have two figures and no candidates.
      std::vector<std::string> scored;
      for (const tl::v1::AutoCandidate& candidate : decision.candidates()) {
        scored.push_back(absl::StrFormat(
            "%s%s%s %.4f%s", tl::v1::TrainingSpec::Strategy_Name(candidate.strategy()),
            candidate.strategy() == tl::v1::TrainingSpec::FINE_TUNE
                ? absl::StrCat(" (", candidate.unfreeze_groups(), " groups)")
                : "",
            candidate.learning_rate() > 0 ? absl::StrFormat(" at %.3g:", candidate.learning_rate())
                                          : "",
            candidate.accuracy(),
            candidate.first_fold_only() && decision.folds() > 1 ? " (first fold)" : ""));
      }
      evidence = absl::StrCat(": ", absl::StrJoin(scored, ", "), " over ", decision.folds(),
                              decision.folds() == 1 ? " held-out slice" : " folds");
    } else if (decision.probed()) {
      evidence = absl::StrFormat(": frozen head %.4f, fine-tune %.4f on %d held-out images",
                                 decision.feature_extraction_accuracy(),
                                 decision.fine_tune_accuracy(), decision.probe_holdout_images());
    }
    absl::StrAppend(&text, "auto       ", tl::v1::TrainingSpec::Strategy_Name(decision.chosen()),
                    decision.chosen_learning_rate() > 0
                        ? absl::StrFormat(" at %.3g", decision.chosen_learning_rate())
                        : "",
                    evidence, "\n           ", Shown(decision.reason()), "\n");
  }
  if (result.has_final_metrics()) {
    const tl::v1::EpochMetrics& m = result.final_metrics();
    // Zeros where nothing was held out would read as a model that learned nothing.
    absl::StrAppend(
        &text, "metrics    ",
        HasValidationImages(job)
            ? absl::StrFormat("val accuracy %.4f, val macro F1 %.4f, train loss %.4f",
                              m.val_accuracy(), m.val_macro_f1(), m.train_loss())
            : absl::StrFormat("train accuracy %.4f, train loss %.4f (no validation images)",
                              m.train_accuracy(), m.train_loss()),
        "\n");
  }
  if (result.best_epoch() > 0) {
    absl::StrAppend(&text, "best epoch ", result.best_epoch(),
                    result.stopped_early() ? " (stopped early)" : "", "\n");
  }
  if (!result.model_path().empty()) {
    absl::StrAppend(&text, "model      ", Shown(result.model_path()), "\n");
    absl::StrAppend(&text, "backbone   ", Shown(result.backbone_path()), "\n");
    absl::StrAppend(&text, "epochs     ", Shown(result.metrics_path()), "\n");
  }
  if (result.has_test_report()) {
    absl::StrAppend(&text, "test       ",
                    absl::StrFormat("accuracy %.4f, macro F1 %.4f on %d images (tlctl report)",
                                    result.test_report().accuracy(),
                                    result.test_report().macro_f1(),
                                    result.test_report().images()),
                    "\n");
  }
  if (!result.report_path().empty()) {
    absl::StrAppend(&text, "report     ", Shown(result.report_path()), "\n");
  }
  return text;
}

// STATE is as wide as the longest state name, STOPPED_EARLY.
std::string JobListHeader() {
  return absl::StrFormat("%-16s  %-13s  %-24s  %-10s  %5s  %7s  %s", "ID", "STATE", "NAME", "OWNER",
                         "EPOCH", "VAL_ACC", "CREATED");
}

std::string JobListRow(const tl::v1::Job& job) {
  const std::string accuracy =
      job.result().has_final_metrics() && HasValidationImages(job)
          ? absl::StrFormat("%.4f", job.result().final_metrics().val_accuracy())
          : "-";
  return absl::StrFormat("%-16s  %-13s  %-24s  %-10s  %5d  %7s  %s", job.id(),
                         tl::v1::Job::State_Name(job.state()), PrefixUtf8(Shown(job.spec().name()), 24),
                         PrefixUtf8(Shown(job.owner()), 10), job.epoch(), accuracy,
                         FormatTimestamp(job.create_time()));
}

std::string LogLineText(const tl::v1::LogLine& line) {
  return absl::StrCat(FormatTimestamp(line.time()), " ", Shown(line.worker_id()), "#",
                      line.attempt(), "  ", Shown(line.text()));
}

}  // namespace tl::client
