// The defaults of a submitted spec, filled in from the spec table
// (spec_fields.h) so that the stored spec says what the job runs with.
// Nothing is checked here: a value that later fails its bounds may have led to
// a default that means nothing, and the spec is refused anyway.
#pragma once

#include "tl/v1/jobs.pb.h"

namespace tl::server {

void FillSpecDefaults(tl::v1::JobSpec& spec);

// The fields a worker sized from the data (DataSizing.sized_fields: epochs,
// batch_size, val_fraction) written into a stored spec that left them unset,
// then the defaults that follow from them (a STEP schedule's step_epochs),
// so that the stored spec says what the job ran with. A field the spec set
// is never replaced.
void FillSizedFields(const tl::v1::DataSizing& sizing, tl::v1::JobSpec& spec);

}  // namespace tl::server
