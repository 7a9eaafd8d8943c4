#include "server/sweep/sweep_states.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"

namespace tl::server {

using ::tl::v1::Job;
using ::tl::v1::Sweep;

namespace {

const std::map<Sweep::State, std::set<Sweep::State>>& Successors() {
  static const auto* table = new std::map<Sweep::State, std::set<Sweep::State>>{
      {Sweep::STATE_UNSPECIFIED,
       {Sweep::RUNNING,     // submitted
        Sweep::FAILED}},    // its first trial could not be created
      {Sweep::RUNNING,
       {Sweep::PAUSED, Sweep::SUCCEEDED, Sweep::FAILED, Sweep::CANCELLED}},
      {Sweep::PAUSED,
       {Sweep::RUNNING,     // ResumeSweep
        Sweep::SUCCEEDED,   // its last trials ended while it was paused
        Sweep::FAILED,      // a trial failed while pausing, past the budget
        Sweep::CANCELLED}},
  };
  return *table;
}

}  // namespace

bool IsSweepTerminal(Sweep::State state) {
  return state == Sweep::SUCCEEDED || state == Sweep::FAILED || state == Sweep::CANCELLED;
}

bool IsAllowedSweepTransition(Sweep::State from, Sweep::State to) {
  if (from == to) return from != Sweep::STATE_UNSPECIFIED;
  auto it = Successors().find(from);
  return it != Successors().end() && it->second.count(to) > 0;
}

bool IsRefitTrial(const tl::v1::SweepSpec& spec, int index) { return index >= spec.max_trials(); }

SweepOutlook AssessSweep(const tl::v1::SweepSpec& spec, SweepRequest request,
                         const std::vector<TrialStatus>& trials,
                         const std::string& recorded_best_job_id) {
  SweepOutlook outlook;
  int stopped_early = 0;
  int cancelled = 0;
  const TrialStatus* refit = nullptr;
  const TrialStatus* best = nullptr;
  // The refit's trial, once the refit exists: it stays the best.
  const bool refit_exists =
      std::any_of(trials.begin(), trials.end(),
                  [&spec](const TrialStatus& trial) { return IsRefitTrial(spec, trial.index); });
  const auto refits_trial = [&](const TrialStatus& trial) {
    return refit_exists && !recorded_best_job_id.empty() && trial.job_id == recorded_best_job_id;
  };
  for (const TrialStatus& trial : trials) {
    if (IsRefitTrial(spec, trial.index)) {
      refit = &trial;
      outlook.refit_job_id = trial.job_id;
      continue;
    }
    ++outlook.created;
    if (!trial.ended) continue;
    ++outlook.ended;
    if (trial.state == Job::FAILED) ++outlook.failed;
    if (trial.state == Job::STOPPED_EARLY) ++stopped_early;
    if (trial.state == Job::CANCELLED) ++cancelled;
    if (trial.state != Job::SUCCEEDED) continue;
    ++outlook.succeeded;
    if (!trial.objective) continue;
    if (best == nullptr ||
        (!refits_trial(*best) &&
         (refits_trial(trial) ||
          RanksAbove(spec.objective(), *trial.objective, trial.tie_break_loss, *best->objective,
                     best->tie_break_loss)))) {
      best = &trial;
      outlook.best_objective = trial.objective;
      outlook.best_job_id = trial.job_id;
    }
  }
  const int unended = outlook.created - outlook.ended;
  const bool refit_unended = refit != nullptr && !refit->ended;
  if (request == SweepRequest::kCancel) {
    outlook.state = Sweep::CANCELLED;
    outlook.stop_unended = unended > 0 || refit_unended;
    return outlook;
  }
  if (outlook.failed > spec.max_failed_trials()) {
    outlook.state = Sweep::FAILED;
    outlook.error = absl::StrCat(outlook.failed, " trials failed; max_failed_trials is ",
                                 spec.max_failed_trials());
    outlook.stop_unended = unended > 0 || refit_unended;
    return outlook;
  }
  if (outlook.created >= spec.max_trials() && unended == 0) {
    if (outlook.succeeded == 0) {
      outlook.state = Sweep::FAILED;
      outlook.error = absl::StrCat("no trial succeeded (", outlook.failed, " failed, ",
                                   stopped_early, " stopped early, ", cancelled, " cancelled)");
      return outlook;
    }
    if (!spec.refit() || outlook.best_job_id.empty()) {
      outlook.state = Sweep::SUCCEEDED;
      return outlook;
    }
    if (refit != nullptr && refit->ended) {
      if (refit->state == Job::SUCCEEDED) {
        outlook.state = Sweep::SUCCEEDED;
      } else {
        outlook.state = Sweep::FAILED;
        // The refit's own error says why.
        outlook.error = absl::StrCat("the refit, job ", refit->job_id, ", ended ",
                                     Job::State_Name(refit->state), "; the best trial, job ",
                                     outlook.best_job_id, ", keeps its model",
                                     refit->error.empty() ? "" : ": ", refit->error);
      }
      return outlook;
    }
    outlook.state = request == SweepRequest::kPause ? Sweep::PAUSED : Sweep::RUNNING;
    outlook.create_refit = refit == nullptr && outlook.state == Sweep::RUNNING;
    return outlook;
  }
  if (request == SweepRequest::kPause) {
    outlook.state = Sweep::PAUSED;
    return outlook;
  }
  outlook.state = Sweep::RUNNING;
  outlook.trials_to_create = std::max(
      0, std::min(spec.max_trials() - outlook.created, spec.max_parallel_trials() - unended));
  return outlook;
}

}  // namespace tl::server
