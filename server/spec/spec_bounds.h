// The bounds of the spec table (spec_fields.h), checked on a spec whose
// defaults are filled in: enum numbers the proto defines, numbers inside their
// intervals, and fields set only under the setting they need. Stops at the
// first field at fault, in the table's order, and names it.
#pragma once

#include "absl/status/status.h"
#include "server/spec/spec_fields.h"
#include "tl/v1/jobs.pb.h"

namespace tl::server {

absl::Status CheckSpecBounds(const tl::v1::JobSpec& spec);

// One field's own bounds, whatever the table's conditions say.
absl::Status CheckFieldBounds(const SpecField& field, const tl::v1::JobSpec& spec);

// `value` against an interval; `field` names it in the error. For numbers
// that are no table row's (a class's weight).
absl::Status CheckInterval(const std::string& field, double value, bool integer,
                           const SpecLimit& low, const SpecLimit& high,
                           const tl::v1::JobSpec& spec);

}  // namespace tl::server
