#include "server/spec/caller_text.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/text.h"

namespace tl::server {

absl::Status CheckCallerText(absl::string_view field, absl::string_view text,
                             size_t max_characters) {
  if (HasControlCharacters(text)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " holds a control or invisible formatting character (a line break, tab, "
               "escape, NUL, a bidirectional or zero-width mark); use printable characters only"));
  }
  const size_t characters = CountCodePoints(text);
  if (characters > max_characters) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is ", characters,
                                                   " characters long; at most ",
                                                   max_characters, " are allowed"));
  }
  return absl::OkStatus();
}

namespace {

void Clip(std::string* text, size_t max_bytes) {
  if (text->size() > max_bytes) *text = ClipUtf8(*text, max_bytes);
}

void BoundDataset(tl::v1::DatasetSummary& dataset) {
  for (std::string& name : *dataset.mutable_class_names()) Clip(&name, kMaxReportedTextBytes);
  for (auto* examples : {dataset.mutable_unreadable_examples(),
                         dataset.mutable_duplicate_examples()}) {
    if (examples->size() > kMaxReportedExamples) {
      examples->DeleteSubrange(kMaxReportedExamples, examples->size() - kMaxReportedExamples);
    }
    for (std::string& example : *examples) Clip(&example, kMaxReportedTextBytes);
  }
}

std::string BoundResult(tl::v1::JobResult& result) {
  // Only messages that are there: reaching into an absent one would make it present.
  if (result.has_dataset()) BoundDataset(*result.mutable_dataset());
  if (result.has_auto_strategy()) {
    Clip(result.mutable_auto_strategy()->mutable_reason(), kMaxWorkerErrorBytes);
  }
  for (std::string* path :
       {result.mutable_model_path(), result.mutable_model_info_path(),
        result.mutable_backbone_path(), result.mutable_metrics_path(),
        result.mutable_report_path(), result.mutable_confusion_matrix_path()}) {
    Clip(path, kMaxReportedTextBytes);
  }
  std::vector<tl::v1::EvaluationReport*> reports;
  if (result.has_val_report()) reports.push_back(result.mutable_val_report());
  if (result.has_test_report()) reports.push_back(result.mutable_test_report());
  for (tl::v1::EvaluationReport* report : reports) {
    for (tl::v1::ClassEvaluation& row : *report->mutable_classes()) {
      Clip(row.mutable_class_name(), kMaxReportedTextBytes);
    }
  }
  if (result.ByteSizeLong() <= kMaxResultBytes) return "";
  const size_t reported = result.ByteSizeLong();
  for (tl::v1::EvaluationReport* report : reports) report->clear_confusion();
  if (result.ByteSizeLong() > kMaxResultBytes) {
    result.clear_val_report();
    result.clear_test_report();
  }
  return absl::StrCat("a result of ", reported, " bytes was cut to ", result.ByteSizeLong(),
                      " (at most ", kMaxResultBytes, "); report.json holds the full reports");
}

}  // namespace

std::string BoundWorkerReport(tl::v1::WorkerMessage& message) {
  switch (message.message_case()) {
    case tl::v1::WorkerMessage::kHello: {
      tl::v1::WorkerHello& hello = *message.mutable_hello();
      Clip(hello.mutable_hostname(), kMaxReportedTextBytes);
      Clip(hello.mutable_replica_address(), kMaxReportedTextBytes);
      Clip(hello.mutable_held_job_id(), kMaxReportedTextBytes);
      if (hello.devices_size() > kMaxReportedDevices) {
        hello.mutable_devices()->DeleteSubrange(kMaxReportedDevices,
                                                hello.devices_size() - kMaxReportedDevices);
      }
      for (tl::v1::Device& device : *hello.mutable_devices()) {
        Clip(device.mutable_kind(), kMaxReportedTextBytes);
        Clip(device.mutable_name(), kMaxReportedTextBytes);
      }
      return "";
    }
    case tl::v1::WorkerMessage::kStarted:
      if (message.started().has_dataset()) {
        BoundDataset(*message.mutable_started()->mutable_dataset());
      }
      return "";
    case tl::v1::WorkerMessage::kFinished:
      Clip(message.mutable_finished()->mutable_error(), kMaxWorkerErrorBytes);
      return BoundResult(*message.mutable_finished()->mutable_result());
    case tl::v1::WorkerMessage::kLog:
      for (tl::v1::LogLine& line : *message.mutable_log()->mutable_lines()) {
        Clip(line.mutable_text(), kMaxLogLineBytes);
      }
      return "";
    default:
      return "";
  }
}

}  // namespace tl::server
