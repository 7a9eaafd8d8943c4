// The defaults of a submitted spec, filled in from the spec table
// (spec_fields.h) so that the stored spec says what the job runs with.
// Nothing is checked here: a value that later fails its bounds may have led to
// a default that means nothing, and the spec is refused anyway.
#pragma once

#include "tl/v1/jobs.pb.h"

namespace tl::server {

void FillSpecDefaults(tl::v1::JobSpec& spec);

}  // namespace tl::server
