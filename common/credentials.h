// Reading the files that secure a connection: bearer tokens, TLS
// certificates and keys. One place, so that tlserver, tlworker and tlctl
// read them alike and name the flag in every error.
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tl {

// The file's text without surrounding whitespace (a token file ends in a
// newline that is not part of the token). NOT_FOUND names `flag` and path.
absl::StatusOr<std::string> ReadTrimmedFile(const std::string& path, const std::string& flag);

// TLS trusting the PEM certificates in `ca_path`, or insecure when it is empty.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientCredentials(
    const std::string& ca_path, const std::string& flag);

// TLS with the PEM certificate chain and key, or insecure when both are
// empty; one without the other is INVALID_ARGUMENT.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const std::string& cert_path, const std::string& key_path);

}  // namespace tl
