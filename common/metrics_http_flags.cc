#include "common/metrics_http_flags.h"

#include "absl/flags/flag.h"
#include "common/credentials.h"
#include "common/status_macros.h"

ABSL_FLAG(std::string, metrics_tls_cert, "",
          "PEM certificate chain for /metrics; with --metrics_tls_key, /metrics speaks HTTPS "
          "only (Prometheus: scheme https, tls_config.ca_file)");
ABSL_FLAG(std::string, metrics_tls_key, "", "PEM private key of --metrics_tls_cert");
ABSL_FLAG(std::string, metrics_token_file, "",
          "file holding the bearer token every /metrics request must carry (Prometheus: "
          "authorization.credentials_file); empty: /metrics asks for none");

namespace tl {

absl::StatusOr<MetricsHttpOptions> MetricsHttpOptionsFromFlags(const std::string& listen_address) {
  MetricsHttpOptions options;
  options.listen_address = listen_address;
  options.tls_cert_path = absl::GetFlag(FLAGS_metrics_tls_cert);
  options.tls_key_path = absl::GetFlag(FLAGS_metrics_tls_key);
  const std::string token_file = absl::GetFlag(FLAGS_metrics_token_file);
  if (!token_file.empty()) {
    TL_ASSIGN_OR_RETURN(std::string token, ReadTrimmedFile(token_file, "--metrics_token_file"));
    if (token.empty()) {
      return absl::InvalidArgumentError("--metrics_token_file " + token_file + " is empty");
    }
    options.bearer_token = std::move(token);
  }
  return options;
}

}  // namespace tl
