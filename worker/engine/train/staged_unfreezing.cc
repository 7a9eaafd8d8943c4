#include "train/staged_unfreezing.h"

#include <algorithm>
#include <string>

#include "base/errors.h"

namespace tl::engine {

bool IsStaged(const TrainOptions& options) {
  return options.strategy == Strategy::kFineTune &&
         (options.head_only_epochs > 0 || options.unfreeze_every_epochs > 0);
}

int UnfrozenGroupsAt(const TrainOptions& options, int epoch) {
  if (!IsStaged(options)) return options.unfreeze_groups;
  if (epoch <= options.head_only_epochs) return 0;
  if (options.unfreeze_every_epochs <= 0) return options.unfreeze_groups;
  const int since = epoch - options.head_only_epochs - 1;
  return std::min(options.unfreeze_groups, 1 + since / options.unfreeze_every_epochs);
}

void CheckStagedUnfreezing(const TrainOptions& options) {
  const bool set = options.head_only_epochs != 0 || options.unfreeze_every_epochs != 0;
  if (set && options.strategy != Strategy::kFineTune) {
    throw InvalidArgument(
        "training.head_only_epochs and training.unfreeze_every_epochs apply to the FINE_TUNE "
        "strategy only");
  }
  // The backbone must get at least one epoch, or the stages mean nothing.
  if (options.head_only_epochs < 0 ||
      (options.head_only_epochs > 0 && options.head_only_epochs >= options.epochs)) {
    throw InvalidArgument("training.head_only_epochs is " +
                          std::to_string(options.head_only_epochs) +
                          "; it must lie in [0, training.epochs - 1]");
  }
  if (options.unfreeze_every_epochs < 0 || options.unfreeze_every_epochs > 1000) {
    throw InvalidArgument("training.unfreeze_every_epochs is " +
                          std::to_string(options.unfreeze_every_epochs) +
                          "; it must lie in [0, 1000]");
  }
}

}  // namespace tl::engine
