// Early stopping: training ends once a validation metric has not improved
// for `patience` epochs, and the exported model is the best epoch's. The
// state is a pure function of the finished epochs' metrics, so a resumed job
// rebuilds it from its checkpoint's epochs; only the best weights need a
// file of their own (BestWeights).
#pragma once

#include <string>
#include <vector>

#include "train/trainer.h"

namespace tl::engine {

enum class EarlyStoppingMetric { kValLoss, kValAccuracy, kValMacroF1 };

// The member defaults serve the engine's direct users (tests); the worker
// sets every field from the job's stored spec, and the JobSpec's documented
// defaults (mode by metric, patience) live in server/spec/spec_fields.cc.
struct EarlyStoppingOptions {
  bool enabled = false;
  EarlyStoppingMetric metric = EarlyStoppingMetric::kValLoss;
  bool maximize = false;  // mode: false is "min"
  int patience = 5;       // epochs without improvement before stopping
  double min_delta = 0;   // an improvement must beat the best by more than this
};

const char* MetricName(EarlyStoppingMetric metric);  // "val_loss", ...
double MetricValue(const EpochStats& stats, EarlyStoppingMetric metric);

// Throws EngineError(kInvalidArgument) naming the training.early_stopping.*
// field out of bounds.
void CheckEarlyStopping(const EarlyStoppingOptions& options);

class EarlyStopping {
 public:
  explicit EarlyStopping(EarlyStoppingOptions options) : options_(options) {}

  // Takes one finished epoch; true when it is the new best. A non-finite
  // value never is.
  bool Update(const EpochStats& stats);
  // No improvement for `patience` epochs (always false when disabled).
  bool ShouldStop() const {
    return options_.enabled && best_epoch_ > 0 && epochs_since_best_ >= options_.patience;
  }
  int best_epoch() const { return best_epoch_; }  // 0 before any epoch
  double best_value() const { return best_value_; }
  int epochs_since_best() const { return epochs_since_best_; }
  const EarlyStoppingOptions& options() const { return options_; }

 private:
  EarlyStoppingOptions options_;
  int best_epoch_ = 0;
  double best_value_ = 0;
  int epochs_since_best_ = 0;
};

// The best epoch's classifier weights, as output_dir/best/epoch-<N>.pt.
// A new best is written before the checkpoint that records it and older
// ones are removed only after, so whatever checkpoint a resumed job finds,
// its best epoch's file is there.
class BestWeights {
 public:
  explicit BestWeights(const std::string& output_dir);
  void Save(TransferModel& model, int epoch) const;
  // Removes the files of every epoch but `epoch`.
  void KeepOnly(int epoch) const;
  // Copies the saved weights of `epoch` into the model (on `device`); throws
  // EngineError(kFailedPrecondition) when they are missing.
  void Restore(TransferModel& model, int epoch, const torch::Device& device) const;
  std::string PathFor(int epoch) const;

 private:
  std::string dir_;
};

}  // namespace tl::engine
