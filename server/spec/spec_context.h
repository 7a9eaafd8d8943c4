// What validating a spec needs from the scheduler: its roots on disk, and the
// stored jobs whose outputs a spec may name.
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

}  // namespace tl::server
