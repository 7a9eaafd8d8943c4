#include "server/core/principal.h"

#include "absl/strings/match.h"
#include "absl/strings/strip.h"

namespace tl::server {

bool Principal::MayConnectAsWorker(absl::string_view worker_id) const {
  if (authentication_off) return true;
  if (role != Role::kWorker) return false;
  if (worker_ids.empty()) return worker_id == name;
  for (absl::string_view allowed : worker_ids) {
    if (absl::ConsumeSuffix(&allowed, "*") ? absl::StartsWith(worker_id, allowed)
                                           : worker_id == allowed) {
      return true;
    }
  }
  return false;
}

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kUser:
      return "user";
    case Role::kWorker:
      return "worker";
    case Role::kAdmin:
      return "admin";
  }
  return "unknown";
}

}  // namespace tl::server
