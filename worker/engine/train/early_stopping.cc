#include "train/early_stopping.h"

#include <cmath>
#include <filesystem>
#include <system_error>

#include "base/errors.h"
#include "model/model_weights.h"

namespace tl::engine {

namespace fs = std::filesystem;

const char* MetricName(EarlyStoppingMetric metric) {
  switch (metric) {
    case EarlyStoppingMetric::kValAccuracy:
      return "val_accuracy";
    case EarlyStoppingMetric::kValMacroF1:
      return "val_macro_f1";
    case EarlyStoppingMetric::kValLoss:
      break;
  }
  return "val_loss";
}

double MetricValue(const EpochStats& stats, EarlyStoppingMetric metric) {
  switch (metric) {
    case EarlyStoppingMetric::kValAccuracy:
      return stats.val_accuracy;
    case EarlyStoppingMetric::kValMacroF1:
      return stats.val_macro_f1;
    case EarlyStoppingMetric::kValLoss:
      break;
  }
  return stats.val_loss;
}

void CheckEarlyStopping(const EarlyStoppingOptions& options) {
  if (!options.enabled) return;
  if (options.patience < 1 || options.patience > 1000) {
    throw InvalidArgument("training.early_stopping.patience is " +
                          std::to_string(options.patience) + "; it must lie in [1, 1000]");
  }
  if (!(options.min_delta >= 0 && std::isfinite(options.min_delta))) {
    throw InvalidArgument("training.early_stopping.min_delta must be finite and not negative");
  }
}

bool EarlyStopping::Update(const EpochStats& stats) {
  const double value = MetricValue(stats, options_.metric);
  const bool improved =
      std::isfinite(value) &&
      (best_epoch_ == 0 || (options_.maximize ? value > best_value_ + options_.min_delta
                                              : value < best_value_ - options_.min_delta));
  if (improved) {
    best_epoch_ = stats.epoch;
    best_value_ = value;
    epochs_since_best_ = 0;
  } else if (best_epoch_ > 0) {
    ++epochs_since_best_;
  }
  return improved;
}

BestWeights::BestWeights(const std::string& output_dir)
    : dir_((fs::path(output_dir) / "best").string()) {}

std::string BestWeights::PathFor(int epoch) const {
  return (fs::path(dir_) / ("epoch-" + std::to_string(epoch) + ".pt")).string();
}

void BestWeights::Save(TransferModel& model, int epoch) const {
  fs::create_directories(dir_);
  SaveClassifierWeights(model.classifier(), PathFor(epoch));
}

void BestWeights::KeepOnly(int epoch) const {
  std::error_code error;
  const fs::path keep = PathFor(epoch);
  for (fs::directory_iterator it(dir_, error); !error && it != fs::directory_iterator();
       it.increment(error)) {
    if (it->path() != keep) fs::remove(it->path(), error);
  }
}

void BestWeights::Restore(TransferModel& model, int epoch, const torch::Device& device) const {
  const std::string path = PathFor(epoch);
  if (!fs::exists(path)) {
    throw FailedPrecondition("the weights of the best epoch " + std::to_string(epoch) +
                             " are missing from " + path);
  }
  LoadClassifierWeights(path, model.classifier(), device);
}

}  // namespace tl::engine
