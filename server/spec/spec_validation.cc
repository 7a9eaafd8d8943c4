#include "server/spec/spec_validation.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/spec/caller_text.h"
#include "server/spec/spec_bounds.h"
#include "server/spec/spec_cross_field_rules.h"
#include "server/spec/spec_defaults.h"
#include "server/spec/spec_errors.h"
#include "server/spec/spec_files.h"

namespace tl::server {
namespace {

using ::tl::v1::JobSpec;

// Owners one job may be shared with by name.
constexpr int kMaxShareWith = 100;

// The free text a submitter writes: the job's name and whom it is shared with.
absl::Status CheckCallerTexts(const JobSpec& spec) {
  TL_RETURN_IF_ERROR(CheckCallerText("name", spec.name(), kMaxJobNameCharacters));
  if (spec.share_with_size() > kMaxShareWith) {
    return Invalid("share_with", absl::StrCat("names ", spec.share_with_size(),
                                              " owners; at most ", kMaxShareWith,
                                              " are allowed (\"*\" shares with everyone)"));
  }
  for (int i = 0; i < spec.share_with_size(); ++i) {
    const std::string field = absl::StrCat("share_with[", i, "]");
    if (spec.share_with(i).empty()) return Invalid(field, "is empty");
    TL_RETURN_IF_ERROR(CheckCallerText(field, spec.share_with(i), kMaxOwnerCharacters));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<JobSpec> ValidateJobSpecNumbers(const JobSpec& submitted) {
  JobSpec spec = submitted;
  // Fields this server does not know (a newer client, or padding) are not stored.
  spec.DiscardUnknownFields();
  if (spec.ByteSizeLong() > kMaxSpecBytes) {
    return Invalid("spec", absl::StrCat("is ", spec.ByteSizeLong(), " bytes; at most ",
                                        kMaxSpecBytes, " are allowed"));
  }
  TL_RETURN_IF_ERROR(CheckCallerTexts(spec));
  FillSpecDefaults(spec);
  // Numbers before files: a typo in a number should not cost a scan of the
  // dataset folders.
  TL_RETURN_IF_ERROR(CheckSpecBounds(spec));
  TL_RETURN_IF_ERROR(CheckCrossFieldRules(spec));
  return spec;
}

absl::StatusOr<JobSpec> ValidateJobSpec(const JobSpec& submitted, const SpecContext& context) {
  TL_ASSIGN_OR_RETURN(JobSpec spec, ValidateJobSpecNumbers(submitted));
  TL_RETURN_IF_ERROR(CheckSpecFiles(spec, context));
  return spec;
}

}  // namespace tl::server
