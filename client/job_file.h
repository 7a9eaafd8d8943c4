// job.json -> tl.v1.JobSpec: the proto3 JSON form, parsed by protobuf so that
// every JobSpec field is spelled as in proto/ (lowerCamelCase or snake_case)
// and an unknown field is an error, not silently ignored.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "tl/v1/jobs.pb.h"

namespace tl::client {

absl::StatusOr<tl::v1::JobSpec> ParseJobSpecJson(const std::string& json_text,
                                                 const std::string& origin);
absl::StatusOr<tl::v1::JobSpec> ReadJobSpecFile(const std::string& path);

}  // namespace tl::client
