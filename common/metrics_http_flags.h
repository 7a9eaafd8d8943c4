// The flags that secure /metrics, shared by tlserver and tlworker so that
// both spell and check them alike: --metrics_tls_cert, --metrics_tls_key,
// --metrics_token_file. Each process keeps its own --metrics_listen, whose
// default differs.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/metrics_http_server.h"

namespace tl {

// The endpoint on `listen_address` as the flags describe it, the token read
// from --metrics_token_file. Errors name the flag and the file.
absl::StatusOr<MetricsHttpOptions> MetricsHttpOptionsFromFlags(const std::string& listen_address);

}  // namespace tl
