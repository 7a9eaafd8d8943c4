// A submitted SweepSpec checked and filled in, and the job spec of each of its
// trials. Bounds and defaults: sweep_limits.h; the space: search_space.h.
#pragma once

#include "absl/status/statusor.h"
#include "google/protobuf/struct.pb.h"
#include "server/spec/spec_context.h"
#include "server/sweep/search_space.h"
#include "tl/v1/sweeps.pb.h"

namespace tl::server {

// Returns the spec as it is stored: the sweep's own defaults filled in (method,
// seed, objective, trial counts, ASHA's rungs) and base.dataset.val_fraction
// set where trials would have no validation images, refit by where the
// validation images come from. The base spec keeps its
// other fields as given: each trial's job spec is filled in as a job's.
//
// Every trial the spec will create is checked as SubmitJob checks a spec (the
// files and folders once, the numbers for each trial), so a sweep that is
// accepted never makes a trial that is refused. Errors name the field:
// `space[2].values[1]`, `base.training.epochs`, `max_trials`; a trial's spec
// that fails names the parameter or the base field at fault and the trial's
// values.
absl::StatusOr<tl::v1::SweepSpec> ValidateSweepSpec(const tl::v1::SweepSpec& spec,
                                                    const SpecContext& context);

// The job spec of trial `index` of a stored (validated) spec, before the job
// validation fills it in: the base with the trial's values, the sweep's
// priority and the name "<sweep name>-trial-<index>". `applied` (may be null)
// gets the values set, by field path.
tl::v1::JobSpec TrialSpec(const tl::v1::SweepSpec& spec, const std::vector<SpaceParameter>& space,
                          int index, google::protobuf::Struct* applied);

// The job spec of a sweep's refit (SweepSpec.refit), before the job
// validation fills it in: trial `best_index`'s, named "<sweep name>-refit",
// with dataset.val_fraction 0 and, where the trial stopped early on its
// validation images, no early stopping and best_result.best_epoch epochs.
tl::v1::JobSpec RefitSpec(const tl::v1::SweepSpec& spec, const std::vector<SpaceParameter>& space,
                          int best_index, const tl::v1::JobResult& best_result);

// The epochs a trial of this spec trains at most: base.training.epochs, or the
// largest value of a searched training.epochs. 0 when neither is set.
int MaxTrialEpochs(const tl::v1::SweepSpec& spec, const std::vector<SpaceParameter>& space);

}  // namespace tl::server
