#include "worker/worker_id.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/worker_slots.h"

namespace tl::worker {

absl::StatusOr<std::string> ResolveWorkerId(std::string_view pattern, std::string_view hostname,
                                            long pid) {
  if (pattern.empty()) pattern = "{hostname}-{pid}";
  std::string id;
  for (size_t at = 0; at < pattern.size();) {
    const char c = pattern[at];
    if (c == '}') {
      return absl::InvalidArgumentError(absl::StrCat("--worker_id \"", std::string(pattern),
                                                     "\": a '}' without its '{' (placeholders: ",
                                                     "{hostname}, {pid})"));
    }
    if (c != '{') {
      id += c;
      ++at;
      continue;
    }
    const size_t close = pattern.find('}', at);
    const std::string_view name =
        close == std::string_view::npos ? pattern.substr(at) : pattern.substr(at, close - at + 1);
    if (name == "{hostname}") {
      id.append(hostname.data(), hostname.size());
    } else if (name == "{pid}") {
      absl::StrAppend(&id, pid);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--worker_id \"", std::string(pattern),
                                                     "\": unknown ", std::string(name),
                                                     " (placeholders: {hostname}, {pid})"));
    }
    at += name.size();
  }
  if (id.empty()) return absl::InvalidArgumentError("--worker_id resolves to an empty id");
  // The scheduler would refuse it: it reads a job's slot from its worker id.
  if (const std::string_view process = SlotProcessOf(id); !process.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--worker_id \"", id, "\" reads as slot ", id.substr(process.size() + 5), " of worker \"",
        std::string(process), "\"; give the process an id that does not end in /slotN (its "
        "slots, with --slots, connect as ID/slot1, ID/slot2, ...)"));
  }
  return id;
}

}  // namespace tl::worker
