// job.json -> tl.v1.JobSpec and sweep.json -> tl.v1.SweepSpec: the proto3
// JSON forms, parsed by protobuf so that every field is spelled as in proto/
// (lowerCamelCase or snake_case) and an unknown field is an error, not
// silently ignored. Errors name the file (`origin`) and the field.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "tl/v1/jobs.pb.h"
#include "tl/v1/sweeps.pb.h"

namespace tl::client {

absl::StatusOr<tl::v1::JobSpec> ParseJobSpecJson(const std::string& json_text,
                                                 const std::string& origin);
absl::StatusOr<tl::v1::JobSpec> ReadJobSpecFile(const std::string& path);

// A parameter of the space that does not parse is named by its place
// ("space[2]"), which protobuf's own message leaves out.
absl::StatusOr<tl::v1::SweepSpec> ParseSweepSpecJson(const std::string& json_text,
                                                     const std::string& origin);
absl::StatusOr<tl::v1::SweepSpec> ReadSweepSpecFile(const std::string& path);

}  // namespace tl::client
