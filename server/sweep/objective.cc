#include "server/sweep/objective.h"

#include <cmath>
#include <limits>

namespace tl::server {

SweepObjective::Direction DefaultDirection(SweepObjective::Metric metric) {
  return metric == SweepObjective::VAL_LOSS ? SweepObjective::MINIMIZE : SweepObjective::MAXIMIZE;
}

double ObjectiveOf(const SweepObjective& objective, const tl::v1::EpochMetrics& epoch) {
  switch (objective.metric()) {
    case SweepObjective::VAL_LOSS:
      return epoch.val_loss();
    case SweepObjective::VAL_MACRO_F1:
      return epoch.val_macro_f1();
    default:
      return epoch.val_accuracy();
  }
}

namespace {

// Larger is better; NaN lowest.
double Score(const SweepObjective& objective, double value) {
  if (std::isnan(value)) return -std::numeric_limits<double>::infinity();
  return objective.direction() == SweepObjective::MINIMIZE ? -value : value;
}

}  // namespace

bool IsBetter(const SweepObjective& objective, double a, double b) {
  if (std::isnan(a)) return false;
  if (std::isnan(b)) return true;
  return Score(objective, a) > Score(objective, b);
}

namespace {

// The epoch a trial is judged by (TrialObjective), or nullptr.
const tl::v1::EpochMetrics* JudgedEpoch(const std::vector<tl::v1::EpochMetrics>& epochs,
                                        const tl::v1::JobResult* result) {
  if (result != nullptr && result->best_epoch() > 0) {
    for (const tl::v1::EpochMetrics& epoch : epochs) {
      if (epoch.epoch() == result->best_epoch()) return &epoch;
    }
  }
  if (!epochs.empty()) return &epochs.back();
  if (result != nullptr && result->has_final_metrics()) return &result->final_metrics();
  return nullptr;
}

}  // namespace

std::optional<double> TrialObjective(const SweepObjective& objective,
                                     const std::vector<tl::v1::EpochMetrics>& epochs,
                                     const tl::v1::JobResult* result) {
  const tl::v1::EpochMetrics* judged = JudgedEpoch(epochs, result);
  if (judged == nullptr) return std::nullopt;
  return ObjectiveOf(objective, *judged);
}

std::optional<double> TrialTieBreakLoss(const std::vector<tl::v1::EpochMetrics>& epochs,
                                        const tl::v1::JobResult* result) {
  const tl::v1::EpochMetrics* judged = JudgedEpoch(epochs, result);
  if (judged == nullptr) return std::nullopt;
  return judged->val_loss();
}

bool RanksAbove(const SweepObjective& objective, double a, std::optional<double> a_loss, double b,
                std::optional<double> b_loss) {
  if (IsBetter(objective, a, b)) return true;
  if (IsBetter(objective, b, a)) return false;
  if (!a_loss || std::isnan(*a_loss)) return false;
  if (!b_loss || std::isnan(*b_loss)) return true;
  return *a_loss < *b_loss;
}

}  // namespace tl::server
