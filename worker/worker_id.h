// The id a tlworker process connects as. Replicas started from one command
// line (docker-compose --scale, a Kubernetes Deployment) need ids that differ
// yet share a prefix a worker token can name (`cpu-*`), so --worker_id may
// hold placeholders filled in per process.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tl::worker {

// `pattern` with "{hostname}" and "{pid}" replaced; an empty pattern means
// "{hostname}-{pid}". Any other "{...}" or a lone brace is an error naming
// --worker_id. (The scheduler bounds the length, naming hello.worker_id.)
absl::StatusOr<std::string> ResolveWorkerId(std::string_view pattern, std::string_view hostname,
                                            long pid);

}  // namespace tl::worker
