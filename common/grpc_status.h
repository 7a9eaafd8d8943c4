// The one boundary between absl::Status (everything inside tl) and
// grpc::Status (the wire). Both follow google.rpc.Code, so codes map one to
// one; messages pass through unchanged.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace tl {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace tl
