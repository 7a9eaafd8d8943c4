#include "common/credentials.h"

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tl {

absl::StatusOr<std::string> ReadTrimmedFile(const std::string& path, const std::string& flag) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat(flag, ": cannot read ", path));
  std::stringstream text;
  text << file.rdbuf();
  return std::string(absl::StripAsciiWhitespace(text.str()));
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientCredentials(
    const std::string& ca_path, const std::string& flag) {
  if (ca_path.empty()) return grpc::InsecureChannelCredentials();
  TL_ASSIGN_OR_RETURN(const std::string roots, ReadTrimmedFile(ca_path, flag));
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = roots + "\n";
  return grpc::SslCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const std::string& cert_path, const std::string& key_path) {
  if (cert_path.empty() && key_path.empty()) return grpc::InsecureServerCredentials();
  if (cert_path.empty() || key_path.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  TL_ASSIGN_OR_RETURN(const std::string cert, ReadTrimmedFile(cert_path, "--tls_cert"));
  TL_ASSIGN_OR_RETURN(const std::string key, ReadTrimmedFile(key_path, "--tls_key"));
  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({key + "\n", cert + "\n"});
  return grpc::SslServerCredentials(options);
}

}  // namespace tl
