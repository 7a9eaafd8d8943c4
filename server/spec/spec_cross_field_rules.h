// The rules between fields of a spec that no row of the spec table
// (spec_fields.h) can say: pairs of fields that exclude or need each other,
// the class weights map, the device a request names. Checked on a spec whose
// defaults are filled in and whose fields are each within their bounds.
#pragma once

#include "absl/status/status.h"
#include "tl/v1/jobs.pb.h"

namespace tl::server {

absl::Status CheckCrossFieldRules(const tl::v1::JobSpec& spec);

}  // namespace tl::server
