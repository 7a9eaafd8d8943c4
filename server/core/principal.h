// Who is calling, once authenticated: a principal with a role. The
// scheduler decides from it what a caller may see and do; api/auth.h maps
// bearer tokens to principals.
#pragma once

#include <string>
#include <vector>

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

}  // namespace tl::server
