// How tlctl shows sweeps to people: a sweep in words with its table of
// trials, one-line sweep summaries, and the rows of the trial table that
// `tlctl sweep watch` prints or redraws.
#pragma once

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "tl/v1/sweeps.pb.h"

namespace tl::client {

// Whether a sweep in `state` has ended for good: SUCCEEDED, FAILED or
// CANCELLED (a PAUSED one may be resumed).
bool SweepHasEnded(tl::v1::Sweep::State state);

// "learning_rate=0.003162 strategy=FULL unfreeze_groups=2": the trial's
// values in the order of the sweep's space, each field without its
// "training." or "preprocessing." (no field of one shares a name with the
// other's).
std::string TrialParameters(const tl::v1::SweepTrial& trial, const tl::v1::SweepSpec& spec);

// The table of trials; the sweep's best trial (Sweep.best_job_id) is marked
// with a "*" in the first column.
std::string TrialTableHeader();
std::string TrialTableRow(const tl::v1::SweepTrial& trial, const tl::v1::Sweep& sweep);

// Several lines: id, name, state, owner, method, objective, trial counts,
// best trial, times, error; then the table of every trial.
std::string SweepDetails(const tl::v1::Sweep& sweep);

// One line of the sweep's progress: "sweep s-1 RUNNING  5 of 16 trials ended
// (1 failed), best 0.8125 (job j-9)".
std::string SweepSummaryLine(const tl::v1::Sweep& sweep);

// What a watch prints off a terminal as a sweep changes: a summary line when
// the sweep's state changes, and a trial's row whenever its state, epoch,
// objective or best mark changes (the table's header before the first row).
// A sweep seen again unchanged (a watch that reconnected) prints nothing.
class TrialChangeLog {
 public:
  std::vector<std::string> Lines(const tl::v1::Sweep& sweep);

 private:
  using TrialShown = std::tuple<tl::v1::Job::State, int, bool, double, bool>;
  tl::v1::Sweep::State state_shown_ = tl::v1::Sweep::STATE_UNSPECIFIED;
  std::map<int, TrialShown> trials_shown_;
  bool header_shown_ = false;
};

// What a watch redraws on a terminal: the summary line and the trial table,
// at most `max_rows` rows (the unfinished trials and the best first, then
// the latest ended ones, in the order of their index), and a line saying how
// many are left out.
std::string LiveTrialTable(const tl::v1::Sweep& sweep, int max_rows);

std::string SweepListHeader();
std::string SweepListRow(const tl::v1::Sweep& sweep);

}  // namespace tl::client
