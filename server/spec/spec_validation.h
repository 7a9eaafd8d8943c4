// Checks a submitted JobSpec and fills in its defaults, before anything is
// queued. Every error names the field (and the file or folder) at fault, so
// a user can fix the spec from the message alone: INVALID_ARGUMENT, but
// PERMISSION_DENIED for a job the submitter may not use and
// FAILED_PRECONDITION for a job that has not succeeded (yet).
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "tl/v1/jobs.pb.h"

namespace tl::server {

struct SpecContext {
  std::string data_root;      // datasets and backbones live under it
  std::string artifact_root;  // finished jobs' outputs live under it
  // Looks up a stored job whose outputs the submitter may use (backbone.from_job,
  // evaluate.from_job, the job folder of evaluate.model_path). PERMISSION_DENIED when the
  // submitter may not, whether or not the job exists; NOT_FOUND when it does not exist and
  // the submitter may use any job's outputs (an admin).
  std::function<absl::StatusOr<tl::v1::Job>(const std::string& job_id)> find_job;
};

// Returns the spec as it will be stored: defaults filled in, paths
// normalized relative to the data root.
absl::StatusOr<tl::v1::JobSpec> ValidateJobSpec(const tl::v1::JobSpec& spec,
                                                const SpecContext& context);

}  // namespace tl::server
