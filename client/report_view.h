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

// The job's validation and test reports; empty when it has neither.
std::string JobReportText(const tl::v1::Job& job);

}  // namespace tl::client
