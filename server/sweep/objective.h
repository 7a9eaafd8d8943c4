// A sweep's objective: which validation figure of an epoch it reads, and
// which of two values is better. NaN (a diverged loss) is worse than any
// number, whatever the direction.
#pragma once

#include <optional>
#include <vector>

#include "tl/v1/jobs.pb.h"
#include "tl/v1/sweeps.pb.h"

namespace tl::server {

using SweepObjective = tl::v1::SweepSpec::Objective;

// MINIMIZE for VAL_LOSS, MAXIMIZE for the others: the direction an unset one means.
SweepObjective::Direction DefaultDirection(SweepObjective::Metric metric);

// The objective's figure of one epoch. `objective` has its defaults filled in.
double ObjectiveOf(const SweepObjective& objective, const tl::v1::EpochMetrics& epoch);

// Whether `a` is strictly better than `b`.
bool IsBetter(const SweepObjective& objective, double a, double b);

// A trial's objective: at its latest epoch while it runs; once it has a result, at the epoch
// whose weights it exported (JobResult.best_epoch with early stopping, else the last).
// nullopt before any epoch. `epochs` in epoch order.
std::optional<double> TrialObjective(const SweepObjective& objective,
                                     const std::vector<tl::v1::EpochMetrics>& epochs,
                                     const tl::v1::JobResult* result);

// The validation loss at the epoch TrialObjective reads: what decides between trials whose
// objectives are equal, the lower the better. On a few validation images several trials
// reach the same accuracy (often all of them 1.0), and the loss still tells a recipe that fits
// those images with confidence from one that barely does. nullopt where TrialObjective is.
std::optional<double> TrialTieBreakLoss(const std::vector<tl::v1::EpochMetrics>& epochs,
                                        const tl::v1::JobResult* result);

// Whether a trial of objective `a` and tie-break loss `a_loss` ranks above one of `b` and
// `b_loss`: a better objective, or an equal one and a lower loss (a known loss above none;
// NaN below any).
bool RanksAbove(const SweepObjective& objective, double a, std::optional<double> a_loss, double b,
                std::optional<double> b_loss);

}  // namespace tl::server
