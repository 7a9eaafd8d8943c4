// Asynchronous successive halving (ASHA), the stopping variant, as pure
// functions: where a trial's rungs are, and whether a trial that has just
// reported its objective at a rung goes on.
//
// Rungs lie at epochs min_epochs * reduction_factor^k (k = 0, 1, ...) below
// the trial's own epochs (the last epoch is no rung: the trial ends there
// anyway). At a rung, a trial goes on while it is among the best
// max(1, floor(n / reduction_factor)) of the n trials that have reached that
// rung so far, itself included; so the first trial at a rung always goes
// on, and a later one is measured against every earlier one, stopped or not.
// Ties favour the trial deciding.
#pragma once

#include <vector>

#include "server/sweep/objective.h"

namespace tl::server {

// The rung epochs of a trial of `epochs` epochs, ascending.
std::vector<int> AshaRungs(int min_epochs, int reduction_factor, int epochs);

bool IsAshaRung(int epoch, int min_epochs, int reduction_factor, int epochs);

enum class AshaDecision { kContinue, kStop };

// `earlier`: the objectives of the other trials that reached the rung before this one.
AshaDecision DecideAtRung(const SweepObjective& objective, int reduction_factor, double value,
                          const std::vector<double>& earlier);

}  // namespace tl::server
