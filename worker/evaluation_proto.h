// The engine's evaluation report as the tl.v1.EvaluationReport a job result
// carries to the scheduler.
#pragma once

#include "tl/v1/jobs.pb.h"
#include "worker/engine/evaluation_report.h"

namespace tl::worker {

// Above this many classes the confusion matrix stays in report.json only:
// its square would make the job record large.
constexpr size_t kMaxClassesWithMatrix = 200;

tl::v1::EvaluationReport EvaluationReportProto(const engine::EvaluationReport& report);

// Puts the validation and test reports of `reports` into `result`.
void SetReports(const std::vector<engine::EvaluationReport>& reports, tl::v1::JobResult& result);

}  // namespace tl::worker
