// Checks a submitted JobSpec and fills in its defaults, before anything is
// queued. Every error names the field (and the file or folder) at fault, so
// a user can fix the spec from the message alone: INVALID_ARGUMENT, but
// PERMISSION_DENIED for a job the submitter may not use and
// FAILED_PRECONDITION for a job that has not succeeded (yet).
//
// In order: the free text (name, share_with); the defaults (spec_defaults.h);
// each field's bounds (spec_bounds.h) and the rules between fields
// (spec_cross_field_rules.h), both before anything on disk; then the files
// and folders the spec names (spec_files.h).
#pragma once

#include "absl/status/statusor.h"
#include "server/spec/spec_context.h"
#include "tl/v1/jobs.pb.h"

namespace tl::server {

// Returns the spec as it will be stored: defaults filled in, paths
// normalized relative to the data root.
absl::StatusOr<tl::v1::JobSpec> ValidateJobSpec(const tl::v1::JobSpec& spec,
                                                const SpecContext& context);

// ValidateJobSpec without the files and folders: the free text, the defaults,
// each field's bounds and the rules between fields. For many specs that
// differ only in numbers (a sweep's trials), whose files are checked once.
absl::StatusOr<tl::v1::JobSpec> ValidateJobSpecNumbers(const tl::v1::JobSpec& spec);

}  // namespace tl::server
