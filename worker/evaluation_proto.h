// Evaluation between the worker's protobuf world and the engine: the
// engine's report as the tl.v1.EvaluationReport a job result carries, and
// the engine configuration of an evaluation job.
#pragma once

#include "absl/status/statusor.h"
#include "eval/evaluation_report.h"
#include "job/image_job.h"
#include "tl/v1/service.pb.h"
#include "worker/job_runner.h"

namespace tl::worker {

// Above this many classes the confusion matrix stays in report.json only:
// its square would make the job record large.
constexpr size_t kMaxClassesWithMatrix = 200;

tl::v1::EvaluationReport EvaluationReportProto(const engine::EvaluationReport& report);

// Puts the validation and test reports of `reports` into `result`.
void SetReports(const std::vector<engine::EvaluationReport>& reports, tl::v1::JobResult& result);

// For an assignment whose spec has `evaluate`: the model confined to the
// artifact root, the labelled folder to the data root. INVALID_ARGUMENT
// names the field.
absl::StatusOr<engine::ImageJobConfig> EvaluationConfigFor(const tl::v1::Assignment& assignment,
                                                           const WorkerSettings& settings);

}  // namespace tl::worker
