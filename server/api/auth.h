// Bearer tokens from a tokens file, each naming a principal and a role
// (core/principal.h). Transport-free: the gRPC adapters pass the
// "authorization" header in and hand the resulting Principal to the
// Scheduler, which decides what the principal may see and do.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/principal.h"

namespace tl::server {

class TokenAuthenticator {
 public:
  // Reads a tokens file: one "TOKEN PRINCIPAL ROLE [WORKER_IDS]" per line
  // (ROLE is user, worker or admin), blank lines and lines starting with '#'
  // ignored. WORKER_IDS, for workers only, lists the worker ids the token
  // may connect as, comma-separated, each exact or a prefix ending in '*'
  // ("gpu-*"); without it the token connects as PRINCIPAL alone. Errors name
  // the file and line.
  static absl::StatusOr<std::unique_ptr<TokenAuthenticator>> LoadFile(const std::string& path);
  static absl::StatusOr<std::unique_ptr<TokenAuthenticator>> Parse(absl::string_view text,
                                                                   absl::string_view source);

  // `authorization` is the header's value, "Bearer TOKEN". UNAUTHENTICATED
  // when it is missing, malformed or names no known token.
  absl::StatusOr<Principal> Authenticate(absl::string_view authorization) const;

  size_t size() const { return principals_.size(); }

 private:
  std::map<std::string, Principal> principals_;  // by token
};

}  // namespace tl::server
