#include "server/store/job_store.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace tl::server {

absl::Status JobNotFound(absl::string_view job_id) {
  return absl::NotFoundError(absl::StrCat("job \"", absl::CHexEscape(job_id), "\" not found"));
}

absl::Status SweepNotFound(absl::string_view sweep_id) {
  return absl::NotFoundError(absl::StrCat("sweep \"", absl::CHexEscape(sweep_id), "\" not found"));
}

}  // namespace tl::server
