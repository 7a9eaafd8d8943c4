// A sweep's state machine, as a pure function of its trials and of what its
// owner last asked (run, pause, cancel):
//
//   RUNNING <-> PAUSED (PauseSweep, ResumeSweep)
//   RUNNING | PAUSED -> SUCCEEDED | FAILED | CANCELLED
//
// - CANCELLED on CancelSweep; trials that have not ended are cancelled.
// - FAILED as soon as more trials have FAILED than max_failed_trials (the
//   trials still going are cancelled), or when every trial has ended and none
//   SUCCEEDED. A trial stopped early (STOPPED_EARLY) or cancelled on its own is
//   no failure.
// - SUCCEEDED when max_trials trials have been created, all have ended and at
//   least one SUCCEEDED; with spec.refit, once the refit has SUCCEEDED too.
// - The refit (trial max_trials, the best trial's recipe trained again on
//   every training image) is created when the search's trials have ended,
//   one SUCCEEDED and the sweep is RUNNING (not while PAUSED). A refit that
//   ends in any other state than SUCCEEDED fails the sweep; its best trial
//   stays recorded. The refit counts against no failure budget.
// - Otherwise PAUSED when asked, creating nothing, else RUNNING, creating
//   trials while fewer than max_parallel_trials are unended.
//
// The best trial is the SUCCEEDED one with the best objective, among equals
// the one of the lowest validation loss (TrialTieBreakLoss), then the first
// created: only a trial that finished has exported a model. Once the refit
// exists, the best trial is the one the sweep recorded when it created the
// refit, whose recipe the refit trains, whatever a later ranking says (a
// server that ranked equal objectives otherwise created it).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "server/sweep/objective.h"
#include "tl/v1/jobs.pb.h"
#include "tl/v1/sweeps.pb.h"

namespace tl::server {

// Whether trial `index` of a sweep is its refit: the search's trials are
// 0 .. max_trials - 1, the refit comes after them.
bool IsRefitTrial(const tl::v1::SweepSpec& spec, int index);

// One trial as the state machine sees it.
struct TrialStatus {
  int index = 0;
  std::string job_id;
  tl::v1::Job::State state = tl::v1::Job::QUEUED;
  // Whether the job has ended (the scheduler's job_states.h decides).
  bool ended = false;
  std::optional<double> objective;
  std::optional<double> tie_break_loss;  // TrialTieBreakLoss
  std::string error;  // the job's own, for one that ended without succeeding
};

// What the owner last asked of the sweep.
enum class SweepRequest { kRun, kPause, kCancel };

struct SweepOutlook {
  tl::v1::Sweep::State state = tl::v1::Sweep::RUNNING;
  std::string error;  // why FAILED
  // Trials to create now (RUNNING only).
  int trials_to_create = 0;
  // Create the refit of best_job_id's trial now (RUNNING only).
  bool create_refit = false;
  std::string refit_job_id;  // once created
  // The sweep has ended with trials still going: cancel them.
  bool stop_unended = false;
  // Of the search's trials (the refit apart).
  int created = 0;
  int ended = 0;
  int failed = 0;
  int succeeded = 0;
  std::string best_job_id;
  std::optional<double> best_objective;
};

// `spec` is a stored (validated) spec; `trials` every trial created so far;
// `recorded_best_job_id` the best trial the sweep has recorded.
SweepOutlook AssessSweep(const tl::v1::SweepSpec& spec, SweepRequest request,
                         const std::vector<TrialStatus>& trials,
                         const std::string& recorded_best_job_id = "");

// SUCCEEDED, FAILED and CANCELLED: nothing follows.
bool IsSweepTerminal(tl::v1::Sweep::State state);

// Whether a sweep may move from `from` to `to` (staying is always allowed;
// STATE_UNSPECIFIED as `from` is a sweep being created).
bool IsAllowedSweepTransition(tl::v1::Sweep::State from, tl::v1::Sweep::State to);

}  // namespace tl::server
