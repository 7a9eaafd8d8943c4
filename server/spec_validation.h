// Checks a submitted JobSpec and fills in its defaults, before anything is
// queued. Every error is INVALID_ARGUMENT and names the field (and the file
// or folder) at fault, so a user can fix the spec from the message alone.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "tl/v1/jobs.pb.h"

namespace tl::server {

struct SpecContext {
  std::string data_root;      // datasets and backbones live under it
  std::string artifact_root;  // finished jobs' outputs live under it
  // Looks up a stored job, for backbone.from_job.
  std::function<absl::StatusOr<tl::v1::Job>(const std::string& job_id)> find_job;
};

// Returns the spec as it will be stored: defaults filled in, paths
// normalized relative to the data root.
absl::StatusOr<tl::v1::JobSpec> ValidateJobSpec(const tl::v1::JobSpec& spec,
                                                const SpecContext& context);

}  // namespace tl::server
