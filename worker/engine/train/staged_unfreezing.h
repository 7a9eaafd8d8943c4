// Staged fine-tuning: the new head trains alone for head_only_epochs, then
// the backbone's layer groups are unfrozen from the last, all at once or one
// more every unfreeze_every_epochs, up to unfreeze_groups. The stage is a
// pure function of the epoch, so a resumed job is at the stage it would
// have been at.
#pragma once

#include "train/trainer.h"

namespace tl::engine {

// Whether the options ask for stages at all (FINE_TUNE with either field set).
bool IsStaged(const TrainOptions& options);

// The layer groups, counted from the last, that train in `epoch` (1-based):
//   0                                            while epoch <= head_only_epochs,
//   min(unfreeze_groups, 1 + (epoch - head_only_epochs - 1) / unfreeze_every_epochs)
//                                                after, when unfreeze_every_epochs > 0,
//   unfreeze_groups                              otherwise.
int UnfrozenGroupsAt(const TrainOptions& options, int epoch);

// Throws EngineError(kInvalidArgument) naming training.head_only_epochs or
// training.unfreeze_every_epochs when they are out of bounds or set with
// another strategy than FINE_TUNE.
void CheckStagedUnfreezing(const TrainOptions& options);

}  // namespace tl::engine
