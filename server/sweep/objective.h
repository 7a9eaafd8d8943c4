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

}  // namespace tl::server
