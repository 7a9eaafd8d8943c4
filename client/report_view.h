// How `tlctl report` shows a job's evaluation reports: overall figures, the
// per-class table and the confusion matrix as text, all from the job record
// (no artifact files needed).
#pragma once

#include <string>

#include "tl/v1/jobs.pb.h"

namespace tl::client {

// One report under a title ("validation", "test"). The matrix's columns are
// class numbers, listed with their names beside the rows.
std::string EvaluationReportText(const std::string& title, const tl::v1::EvaluationReport& report);

// What AUTO's probe measured: each candidate's recipe, its held-out accuracy
// on every fold and their mean, and what was chosen and why.
std::string AutoProbeText(const tl::v1::AutoStrategyDecision& decision);

// The job's validation and test reports, then AUTO's probe when it had one;
// empty when it has no report.
std::string JobReportText(const tl::v1::Job& job);

}  // namespace tl::client
