// Who is calling: bearer tokens from a tokens file, each naming a principal
// and a role. Transport-free: the gRPC adapters pass the "authorization"
// header in and hand the resulting Principal to the Scheduler, which decides
// what the principal may see and do.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tl::server {

enum class Role {
  kUser,    // submits jobs and sees, pauses and cancels its own
  kWorker,  // opens the worker stream
  kAdmin,   // everything a user may do, on every owner's jobs
};

struct Principal {
  std::string name;
  Role role = Role::kUser;
  // Workers only: the worker ids this principal may connect as, each an exact id or a prefix
  // ending in '*'. Empty: the principal's own name is its one worker id.
  std::vector<std::string> worker_ids;
  // True for the one caller there is when the server runs without tokens.
  bool authentication_off = false;

  // The caller when authentication is off: acts on every job, submits under
  // whatever owner the request names, and connects as any worker.
  static Principal Unauthenticated() { return {"", Role::kAdmin, {}, true}; }
  bool SeesEveryJob() const { return role == Role::kAdmin; }
  // Whether this principal may open the worker stream as `worker_id`.
  bool MayConnectAsWorker(absl::string_view worker_id) const;
};

absl::string_view RoleName(Role role);

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
