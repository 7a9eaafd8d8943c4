// Sweeps in the scheduler: SweepService-like calls (submit, read, list, cancel, pause,
// resume, watch), the trials they create and stop, and how a sweep follows its trials. The
// rules themselves are pure functions of server/sweep/ (what a sweep may search, which trial
// comes next, ASHA's decisions, the sweep's state); this file keeps them in step with the
// jobs and the store.
//
// Every change of a trial's job goes through Persist, which notes it (trial_changes_); the
// calls that change jobs serve the noted sweeps before they let go of the lock
// (ServeSweepsAtExit), and the lease thread serves every sweep once a period, so that a
// trial a store failure kept from being created is tried again.
#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "server/core/job_states.h"
#include "server/core/scheduler.h"
#include "server/core/scheduler_internal.h"
#include "server/core/subscriptions.h"
#include "server/spec/caller_text.h"
#include "server/sweep/asha.h"
#include "server/sweep/objective.h"
#include "server/sweep/sweep_spec.h"
#include "server/sweep/sweep_states.h"

namespace tl::server {
namespace {

using ::tl::v1::Job;
using ::tl::v1::Sweep;
using ::tl::v1::SweepEvent;
using ::tl::v1::SweepSpec;
using scheduler_internal::ToTimestamp;

// Rounds of serving sweeps whose own changes (a trial cancelled, created) touch sweeps again.
constexpr int kMaxServeRounds = 8;

// The principal a sweep's trials act as when they are validated: the sweep's owner.
Principal OwnerPrincipal(const std::string& owner) { return {owner, Role::kUser, {}, false}; }

// A job the sweep would create no longer passes (a file gone, a source job's sharing
// withdrawn): the sweep cannot go on as submitted. Other failures (the store, an owner's
// limit) are tried again later.
bool RefusesTheSweep(const absl::Status& status) {
  return absl::IsFailedPrecondition(status) || absl::IsInvalidArgument(status) ||
         absl::IsPermissionDenied(status) || absl::IsNotFound(status);
}

}  // namespace

Scheduler::ServeSweepsAtExit::~ServeSweepsAtExit() { scheduler_.ServeSweeps(); }

absl::StatusOr<Sweep> Scheduler::SubmitSweep(const SweepSpec& spec, const std::string& owner,
                                             const std::string& request_id,
                                             const Principal& caller) {
  if (request_id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("request_id is ", request_id.size(),
                                                   " bytes long; at most ", kMaxRequestIdBytes,
                                                   " are allowed"));
  }
  TL_RETURN_IF_ERROR(CheckCallerText("owner", owner, kMaxOwnerCharacters));
  SpecContext context = spec_context_;
  context.find_job = [this, caller](const std::string& job_id) -> absl::StatusOr<Job> {
    TL_ASSIGN_OR_RETURN(JobRecord source, UsableSourceJob(job_id, caller));
    return ToApiJob(source);
  };
  // Validation reads the file system; it runs before the lock is taken.
  TL_ASSIGN_OR_RETURN(SweepSpec validated, ValidateSweepSpec(spec, context));
  TL_ASSIGN_OR_RETURN(std::vector<SpaceParameter> space, ResolveSpace(validated));
  const std::string sweep_owner = owner.empty() ? "anonymous" : owner;

  std::lock_guard<std::mutex> lock(mutex_);
  const ServeSweepsAtExit serve(*this);
  if (draining_) return absl::UnavailableError("the server is shutting down; submit again later");
  if (!request_id.empty()) {
    TL_ASSIGN_OR_RETURN(std::optional<SweepRecord> earlier,
                        store_.FindSweepByRequestId(sweep_owner, request_id));
    if (earlier.has_value()) {
      SweepSpec repeat = validated;
      const std::string& earlier_source = earlier->spec().base().backbone().from_job();
      if (NamedTheEarlierSourcesSweep(earlier_source, repeat.base().backbone().from_job(),
                                      spec.base().backbone().from_job())) {
        repeat.mutable_base()->mutable_backbone()->set_from_job(earlier_source);
      }
      if (earlier->spec().SerializeAsString() != repeat.SerializeAsString()) {
        return absl::AlreadyExistsError(absl::StrCat("request_id \"", request_id,
                                                     "\" already created sweep ", earlier->id(),
                                                     " with a different spec"));
      }
      return SweepView(*earlier, /*with_trials=*/true);
    }
  }
  SweepRecord record;
  *record.mutable_spec() = std::move(validated);
  record.set_state(Sweep::RUNNING);
  record.set_owner(sweep_owner);
  record.set_request_id(request_id);
  *record.mutable_create_time() = ToTimestamp(Now());
  *record.mutable_update_time() = record.create_time();
  TL_ASSIGN_OR_RETURN(record, store_.CreateSweep(record));
  LogInfo("sweep ", record.id(), " submitted (", record.spec().name(), ", owner ", sweep_owner,
          ", ", record.spec().max_trials(), " trials)");
  ActiveSweep& active = sweeps_[record.id()];
  active.sweep = record;
  active.space = std::move(space);
  ++sweep_state_counts_[Sweep::RUNNING];
  metrics_.SetSweepsInState(Sweep::RUNNING, sweep_state_counts_[Sweep::RUNNING]);
  const std::string id = record.id();
  ServeSweep(active);  // may end it at once (a trial's spec refused): read it back after
  Dispatch();
  TL_ASSIGN_OR_RETURN(SweepRecord now, VisibleSweep(id, caller));
  return SweepView(now, /*with_trials=*/true);
}

absl::StatusOr<SweepRecord> Scheduler::VisibleSweep(const std::string& sweep_id,
                                                    const Principal& caller) {
  if (sweep_id.empty()) return absl::InvalidArgumentError("sweep_id is empty");
  SweepRecord record;
  auto it = sweeps_.find(sweep_id);
  if (it != sweeps_.end()) {
    record = it->second.sweep;
  } else {
    TL_ASSIGN_OR_RETURN(record, store_.GetSweep(sweep_id));
  }
  // Another owner's sweep reads as a missing one, as jobs do.
  if (!caller.SeesEveryJob() && record.owner() != caller.name) return SweepNotFound(sweep_id);
  return record;
}

absl::StatusOr<Scheduler::ActiveSweep*> Scheduler::UnendedSweep(const std::string& sweep_id,
                                                                 const Principal& caller) {
  TL_ASSIGN_OR_RETURN(SweepRecord visible, VisibleSweep(sweep_id, caller));
  auto it = sweeps_.find(sweep_id);
  if (it == sweeps_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "sweep ", sweep_id, " has already ended (", Sweep::State_Name(visible.state()), ")"));
  }
  return &it->second;
}

absl::StatusOr<Sweep> Scheduler::GetSweep(const std::string& sweep_id, const Principal& caller) {
  std::lock_guard<std::mutex> lock(mutex_);
  TL_ASSIGN_OR_RETURN(SweepRecord record, VisibleSweep(sweep_id, caller));
  return SweepView(record, /*with_trials=*/true);
}

absl::StatusOr<Scheduler::SweepPage> Scheduler::ListSweeps(
    const std::vector<Sweep::State>& states, int page_size, const std::string& page_token,
    const std::string& owner, const Principal& caller) {
  if (!caller.SeesEveryJob() && !owner.empty() && owner != caller.name) {
    return absl::PermissionDeniedError(
        absl::StrCat("owner ", owner, ": a user lists only its own sweeps"));
  }
  const std::string owner_filter = caller.SeesEveryJob() ? owner : caller.name;
  if (page_size == 0) page_size = 50;
  if (page_size < 0 || page_size > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size is ", page_size, "; it must lie in [1, 1000] (0 means 50)"));
  }
  for (int state : states) {
    if (!Sweep::State_IsValid(state) || state == Sweep::STATE_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat("states holds ", state,
                                                     ", which is not a sweep state"));
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  TL_ASSIGN_OR_RETURN(JobStore::SweepPage page,
                      store_.ListSweeps(states, page_size, page_token, owner_filter));
  SweepPage shown;
  shown.next_page_token = std::move(page.next_page_token);
  for (const SweepRecord& record : page.sweeps) {
    auto active = sweeps_.find(record.id());
    TL_ASSIGN_OR_RETURN(
        Sweep sweep,
        SweepView(active != sweeps_.end() ? active->second.sweep : record, /*with_trials=*/false));
    shown.sweeps.push_back(std::move(sweep));
  }
  return shown;
}

absl::StatusOr<Sweep> Scheduler::CancelSweep(const std::string& sweep_id, const std::string& reason,
                                             const Principal& caller) {
  TL_RETURN_IF_ERROR(CheckCallerText("reason", reason, kMaxReasonCharacters));
  std::lock_guard<std::mutex> lock(mutex_);
  const ServeSweepsAtExit serve(*this);
  TL_ASSIGN_OR_RETURN(ActiveSweep* active, UnendedSweep(sweep_id, caller));
  const std::string id = active->sweep.id();
  SweepRecord next = active->sweep;
  next.set_cancel_requested(true);
  next.set_error(reason.empty() ? "cancelled on request" : reason);
  TL_RETURN_IF_ERROR(StoreSweep(*active, next));
  ServeSweep(*active);  // ends it and cancels its trials
  TL_ASSIGN_OR_RETURN(SweepRecord ended, VisibleSweep(id, caller));
  return SweepView(ended, /*with_trials=*/true);
}

absl::StatusOr<Sweep> Scheduler::PauseSweep(const std::string& sweep_id, const Principal& caller) {
  std::lock_guard<std::mutex> lock(mutex_);
  const ServeSweepsAtExit serve(*this);
  TL_ASSIGN_OR_RETURN(ActiveSweep* active, UnendedSweep(sweep_id, caller));
  if (!active->sweep.pause_requested()) {
    SweepRecord next = active->sweep;
    next.set_pause_requested(true);
    TL_RETURN_IF_ERROR(StoreSweep(*active, next));
    for (auto& [index, trial] : active->trials) {
      auto job = active_.find(trial.job_id);
      if (job == active_.end()) continue;
      const absl::StatusOr<Job> paused = PauseActive(job->second);
      if (!paused.ok()) LogWarning("sweep ", sweep_id, ": trial ", index, ": ", paused.status().ToString());
    }
    LogInfo("sweep ", sweep_id, " paused");
  }
  ServeSweep(*active);
  TL_ASSIGN_OR_RETURN(SweepRecord record, VisibleSweep(sweep_id, caller));
  return SweepView(record, /*with_trials=*/true);
}

absl::StatusOr<Sweep> Scheduler::ResumeSweep(const std::string& sweep_id,
                                             const Principal& caller) {
  std::lock_guard<std::mutex> lock(mutex_);
  const ServeSweepsAtExit serve(*this);
  TL_ASSIGN_OR_RETURN(ActiveSweep* active, UnendedSweep(sweep_id, caller));
  if (active->sweep.pause_requested()) {
    SweepRecord next = active->sweep;
    next.set_pause_requested(false);
    TL_RETURN_IF_ERROR(StoreSweep(*active, next));
    for (auto& [index, trial] : active->trials) {
      auto job = active_.find(trial.job_id);
      if (job == active_.end()) continue;
      if (job->second.job.state() == Job::PAUSED) {
        ResumeActive(job->second).IgnoreError();  // logged inside
      } else if (job->second.job.pause_requested()) {
        // Not paused yet: it pauses after its epoch, and the sweep resumes it then.
      }
    }
    LogInfo("sweep ", sweep_id, " resumed");
  }
  ServeSweep(*active);
  Dispatch();
  TL_ASSIGN_OR_RETURN(SweepRecord record, VisibleSweep(sweep_id, caller));
  return SweepView(record, /*with_trials=*/true);
}

absl::Status Scheduler::WatchSweep(const std::string& sweep_id,
                                   std::shared_ptr<SweepWatcher> watcher,
                                   const Principal& caller) {
  std::lock_guard<std::mutex> lock(mutex_);
  TL_ASSIGN_OR_RETURN(SweepRecord record, VisibleSweep(sweep_id, caller));
  TL_ASSIGN_OR_RETURN(Sweep sweep, SweepView(record, /*with_trials=*/true));
  SweepEvent event;
  event.set_sequence(1);
  *event.mutable_sweep() = std::move(sweep);
  if (!watcher->Deliver(event)) return absl::OkStatus();
  if (sweeps_.count(sweep_id) == 0) {
    watcher->Finish();
    return absl::OkStatus();
  }
  if (draining_) {
    watcher->Interrupt();  // as WatchJob's
    return absl::OkStatus();
  }
  sweep_watchers_[sweep_id].push_back(std::make_shared<NumberedSweepWatcher>(std::move(watcher)));
  return absl::OkStatus();
}

// ---------------------------------------------------------------- following the trials

void Scheduler::NoteTrialChange(const JobRecord& job, const tl::v1::EpochMetrics* epoch) {
  if (job.sweep_id().empty() || sweeps_.count(job.sweep_id()) == 0) return;
  TrialChange& change = trial_changes_.emplace_back();
  change.job = job;
  if (epoch != nullptr) change.epoch = *epoch;
}

void Scheduler::ServeSweeps() {
  for (int round = 0; round < kMaxServeRounds && !trial_changes_.empty(); ++round) {
    std::vector<TrialChange> changes;
    changes.swap(trial_changes_);
    std::set<std::string> touched;
    for (const TrialChange& change : changes) {
      auto it = sweeps_.find(change.job.sweep_id());
      if (it == sweeps_.end()) continue;
      ApplyTrialChange(it->second, change);
      touched.insert(change.job.sweep_id());
    }
    bool created = false;
    for (const std::string& id : touched) {
      auto it = sweeps_.find(id);
      if (it != sweeps_.end()) created = ServeSweep(it->second) || created;
    }
    // A trial created after a job ended waits for no other event to be placed.
    if (created) Dispatch();
  }
}

void Scheduler::ServeAllSweeps() {
  std::vector<std::string> ids;
  for (const auto& [id, active] : sweeps_) ids.push_back(id);
  bool created = false;
  for (const std::string& id : ids) {
    auto it = sweeps_.find(id);
    if (it != sweeps_.end()) created = ServeSweep(it->second) || created;
  }
  if (created) Dispatch();
  ServeSweeps();
}

void Scheduler::ApplyTrialChange(ActiveSweep& active, const TrialChange& change) {
  const JobRecord& job = change.job;
  ActiveTrial& trial = active.trials[job.sweep_trial()];
  trial.job_id = job.id();
  trial.state = job.state();
  trial.epoch = job.epoch();
  trial.epochs = job.spec().training().epochs();
  trial.error = job.error();
  const SweepSpec& spec = active.sweep.spec();
  // The refit holds nothing out: it has no objective and no rungs.
  if (IsRefitTrial(spec, job.sweep_trial())) {
    trial.changed = true;
    return;
  }
  if (change.epoch.has_value()) {
    const double value = ObjectiveOf(spec.objective(), *change.epoch);
    trial.objective = value;
    // What the trial reached at a rung, for the trials that reach it later (OnEpoch decided
    // this one's stop when it stored the epoch: AshaStopAtEpoch).
    if (spec.method() == SweepSpec::ASHA &&
        IsAshaRung(change.epoch->epoch(), spec.asha().min_epochs(),
                   spec.asha().reduction_factor(), trial.epochs)) {
      active.rungs[change.epoch->epoch()][job.sweep_trial()] = value;
    }
  }
  if (job.state() == Job::SUCCEEDED) {
    // The exported weights are the best epoch's under early stopping: its figure counts.
    absl::StatusOr<std::vector<tl::v1::EpochMetrics>> epochs = store_.GetEpochs(job.id());
    const std::vector<tl::v1::EpochMetrics> stored =
        epochs.ok() ? *epochs : std::vector<tl::v1::EpochMetrics>();
    trial.objective = TrialObjective(spec.objective(), stored, &job.result());
    trial.tie_break_loss = TrialTieBreakLoss(stored, &job.result());
  }
  trial.changed = true;
}

std::optional<std::string> Scheduler::AshaStopAtEpoch(const JobRecord& job,
                                                      const tl::v1::EpochMetrics& epoch) const {
  if (job.sweep_id().empty() || job.cancel_requested() || IsTerminal(job.state())) {
    return std::nullopt;
  }
  auto sweep = sweeps_.find(job.sweep_id());
  if (sweep == sweeps_.end()) return std::nullopt;
  const SweepSpec& spec = sweep->second.sweep.spec();
  const int index = job.sweep_trial();
  if (spec.method() != SweepSpec::ASHA || IsRefitTrial(spec, index) ||
      !IsAshaRung(epoch.epoch(), spec.asha().min_epochs(), spec.asha().reduction_factor(),
                  job.spec().training().epochs())) {
    return std::nullopt;
  }
  std::vector<double> earlier;
  auto rung = sweep->second.rungs.find(epoch.epoch());
  if (rung != sweep->second.rungs.end()) {
    // Decided when it first reached the rung (this is the epoch sent again after a reconnect).
    if (rung->second.count(index) > 0) return std::nullopt;
    for (const auto& [other, value] : rung->second) earlier.push_back(value);
  }
  const double value = ObjectiveOf(spec.objective(), epoch);
  if (DecideAtRung(spec.objective(), spec.asha().reduction_factor(), value, earlier) ==
      AshaDecision::kContinue) {
    return std::nullopt;
  }
  return absl::StrCat("stopped early by ASHA at epoch ", epoch.epoch(), ": its ",
                      SweepSpec::Objective::Metric_Name(spec.objective().metric()), " ", value,
                      " is not among the best 1/", spec.asha().reduction_factor(), " of the ",
                      earlier.size() + 1, " trials at that epoch");
}

void Scheduler::MarkStopEarly(ActiveJob& next, const std::string& why) {
  next.job.set_cancel_requested(true);
  next.job.set_stop_early_requested(true);
  next.job.set_error(why);
}

void Scheduler::SendStopEarly(const ActiveJob& active, const std::string& why) {
  tl::v1::SchedulerMessage message;
  message.mutable_cancel()->set_job_id(active.job.id());
  message.mutable_cancel()->set_reason(why);
  workers_.at(active.session).connection->Send(message);
  SendToReplicas(active, message);
  LogInfo("job ", active.job.id(), " ", why);
}

absl::Status Scheduler::StoreSweep(ActiveSweep& active, const SweepRecord& next) {
  SweepRecord stored = next;
  *stored.mutable_update_time() = ToTimestamp(Now());
  TL_RETURN_IF_ERROR(store_.UpdateSweep(stored));
  if (stored.state() != active.sweep.state()) {
    --sweep_state_counts_[active.sweep.state()];
    ++sweep_state_counts_[stored.state()];
    metrics_.SetSweepsInState(active.sweep.state(), sweep_state_counts_[active.sweep.state()]);
    metrics_.SetSweepsInState(stored.state(), sweep_state_counts_[stored.state()]);
  }
  active.sweep = std::move(stored);
  return absl::OkStatus();
}

bool Scheduler::ServeSweep(ActiveSweep& active) {
  const std::string id = active.sweep.id();
  std::vector<TrialStatus> trials;
  for (const auto& [index, trial] : active.trials) {
    TrialStatus& status = trials.emplace_back();
    status.index = index;
    status.job_id = trial.job_id;
    status.state = trial.state;
    status.ended = IsTerminal(trial.state);
    status.objective = trial.objective;
    status.tie_break_loss = trial.tie_break_loss;
    status.error = trial.error;
  }
  const SweepRequest request = active.sweep.cancel_requested() ? SweepRequest::kCancel
                               : active.sweep.pause_requested() ? SweepRequest::kPause
                                                                : SweepRequest::kRun;
  SweepOutlook outlook =
      AssessSweep(active.sweep.spec(), request, trials, active.sweep.best_job_id());

  bool changed = std::any_of(active.trials.begin(), active.trials.end(),
                             [](const auto& entry) { return entry.second.changed; });
  for (auto& [index, trial] : active.trials) trial.changed = false;
  if (outlook.state == Sweep::RUNNING) {
    // A running sweep keeps its trials going: one that paused after the sweep was resumed
    // (its pause was under way), or that its owner paused alone, is resumed.
    for (auto& [index, trial] : active.trials) {
      auto job = active_.find(trial.job_id);
      if (job != active_.end() && job->second.job.state() == Job::PAUSED) {
        ResumeActive(job->second).IgnoreError();  // logged by Update
      }
    }
  }
  int created = 0;
  for (int i = 0; i < outlook.trials_to_create; ++i) {
    const absl::Status status = CreateTrial(active);
    if (RefusesTheSweep(status)) {
      // The trial's spec no longer passes (a file gone, a source job's sharing withdrawn):
      // the sweep cannot go on as submitted.
      outlook.state = Sweep::FAILED;
      outlook.error = absl::StrCat("trial ", active.sweep.trials_created(), ": ",
                                   status.message());
      outlook.stop_unended = true;
      break;
    }
    if (!status.ok()) break;  // the store or an owner limit: tried again later
    ++created;
  }
  if (created > 0) changed = true;
  if (outlook.create_refit) {
    const absl::Status status = CreateRefit(active, outlook.best_job_id);
    if (status.ok()) {
      outlook.refit_job_id = active.trials.rbegin()->second.job_id;
      ++created;
      changed = true;
    } else if (RefusesTheSweep(status) || absl::IsInternal(status)) {
      outlook.state = Sweep::FAILED;
      outlook.error = absl::StrCat("the refit of job ", outlook.best_job_id, ": ",
                                   status.message(), "; the best trial keeps its model");
    }  // else the store or an owner limit: tried again later
  }

  SweepRecord next = active.sweep;
  next.set_state(outlook.state);
  next.set_best_job_id(outlook.best_job_id);
  next.set_refit_job_id(outlook.refit_job_id);
  if (outlook.best_objective) {
    next.set_best_objective(*outlook.best_objective);
  } else {
    next.clear_best_objective();
  }
  if (!outlook.error.empty()) next.set_error(outlook.error);
  const bool ending = IsSweepTerminal(outlook.state);
  if (ending) *next.mutable_end_time() = ToTimestamp(Now());
  if (next.state() != active.sweep.state() || next.best_job_id() != active.sweep.best_job_id() ||
      next.best_objective() != active.sweep.best_objective() ||
      next.refit_job_id() != active.sweep.refit_job_id() || ending) {
    if (!IsAllowedSweepTransition(active.sweep.state(), next.state())) {
      LogError("sweep ", id, ": refused to move from ", Sweep::State_Name(active.sweep.state()),
               " to ", Sweep::State_Name(next.state()));
      return created > 0;
    }
    const absl::Status stored = StoreSweep(active, next);
    if (!stored.ok()) {
      LogError("cannot store sweep ", id, ": ", stored.ToString());
      return created > 0;  // served again at the next lease check
    }
    changed = true;
  }
  if (outlook.stop_unended) {
    for (auto& [index, trial] : active.trials) {
      auto job = active_.find(trial.job_id);
      if (job == active_.end()) continue;
      const absl::StatusOr<Job> cancelled = CancelActive(
          job->second, absl::StrCat("sweep ", id, " ended: ",
                                    active.sweep.error().empty() ? Sweep::State_Name(outlook.state)
                                                                 : active.sweep.error()));
      if (!cancelled.ok()) LogWarning("sweep ", id, ": trial ", index, ": ", cancelled.status().ToString());
    }
  }
  metrics_.SweepServed(id, TrialStates(active), active.sweep.has_best_objective()
                                                    ? std::optional<double>(
                                                          active.sweep.best_objective())
                                                    : std::nullopt);
  if (changed) NotifySweep(active);
  if (ending) {
    LogInfo("sweep ", id, " ", Sweep::State_Name(active.sweep.state()),
            active.sweep.error().empty() ? "" : ": ", active.sweep.error());
    metrics_.RemoveSweep(id);
    FinishAll(sweep_watchers_, id);
    sweeps_.erase(id);
  }
  return created > 0;
}

std::map<Job::State, int> Scheduler::TrialStates(const ActiveSweep& active) const {
  std::map<Job::State, int> states;
  for (const auto& [index, trial] : active.trials) ++states[trial.state];
  return states;
}

absl::Status Scheduler::CreateTrial(ActiveSweep& active) {
  const SweepRecord& sweep = active.sweep;
  const int index = sweep.trials_created();
  return InsertTrial(active, TrialSpec(sweep.spec(), active.space, index, nullptr),
                     DescribeValues(active.space, TrialValues(active.space, sweep.spec().method(),
                                                              sweep.spec().seed(), index)));
}

absl::Status Scheduler::CreateRefit(ActiveSweep& active, const std::string& best_job_id) {
  int best_index = -1;
  for (const auto& [index, trial] : active.trials) {
    if (trial.job_id == best_job_id) best_index = index;
  }
  if (best_index < 0) return absl::InternalError(absl::StrCat("best trial ", best_job_id, " is unknown"));
  TL_ASSIGN_OR_RETURN(JobRecord best, store_.GetJob(best_job_id));
  return InsertTrial(active, RefitSpec(active.sweep.spec(), active.space, best_index, best.result()),
                     absl::StrCat("the refit of trial ", best_index, ", job ", best_job_id,
                                  ", on every training image"));
}

absl::Status Scheduler::InsertTrial(ActiveSweep& active, const tl::v1::JobSpec& spec,
                                    const std::string& description) {
  const SweepRecord& sweep = active.sweep;
  const int index = sweep.trials_created();
  if (options_.max_queued_per_owner > 0) {
    auto load = owner_loads_.find(sweep.owner());
    if (load != owner_loads_.end() && load->second.waiting >= options_.max_queued_per_owner) {
      return absl::ResourceExhaustedError("the owner's queue is full");
    }
  }
  JobRecord trial;
  trial.set_owner(sweep.owner());
  trial.set_sweep_trial(index);
  SpecContext context = spec_context_;
  const Principal owner = OwnerPrincipal(sweep.owner());
  context.find_job = [this, owner](const std::string& job_id) -> absl::StatusOr<Job> {
    TL_ASSIGN_OR_RETURN(JobRecord source, UsableSourceJob(job_id, owner));
    return ToApiJob(source);
  };
  TL_ASSIGN_OR_RETURN(*trial.mutable_spec(), ValidateJobSpec(spec, context));
  SweepRecord next = sweep;
  next.set_trials_created(index + 1);
  *next.mutable_update_time() = ToTimestamp(Now());
  absl::StatusOr<JobRecord> created = store_.CreateTrial(next, trial, Now());
  if (!created.ok()) {
    LogError("sweep ", sweep.id(), ": cannot create trial ", index, ": ", created.status().ToString());
    // FAILED_PRECONDITION here is the store's counter, not the spec: reload it.
    if (absl::IsFailedPrecondition(created.status())) {
      absl::StatusOr<SweepRecord> stored = store_.GetSweep(sweep.id());
      if (stored.ok()) active.sweep.set_trials_created(stored->trials_created());
      return absl::UnavailableError("trial counter reloaded");
    }
    return created.status();
  }
  active.sweep = next;
  JobRecord& job = *created;
  metrics_.JobSubmitted();
  metrics_.SetJobsInState(Job::QUEUED, ++state_counts_[Job::QUEUED]);
  CountStateChange(job.owner(), Job::STATE_UNSPECIFIED, Job::QUEUED);
  ActiveTrial& entry = active.trials[index];
  entry.job_id = job.id();
  entry.state = Job::QUEUED;
  entry.epochs = job.spec().training().epochs();
  entry.changed = true;
  ActiveJob queued{job, next_queue_order_++};
  queue_.insert(KeyOf(queued));
  active_.emplace(job.id(), std::move(queued));
  LogInfo("sweep ", sweep.id(), ": trial ", index, " is job ", job.id(), " (", description, ")");
  return absl::OkStatus();
}

absl::Status Scheduler::LoadSweeps() {
  TL_ASSIGN_OR_RETURN(std::vector<SweepRecord> all,
                      store_.SweepsInStates({Sweep::RUNNING, Sweep::PAUSED, Sweep::SUCCEEDED,
                                             Sweep::FAILED, Sweep::CANCELLED}));
  for (const SweepRecord& record : all) {
    ++sweep_state_counts_[record.state()];
    if (IsSweepTerminal(record.state())) continue;
    absl::StatusOr<std::vector<SpaceParameter>> space = ResolveSpace(record.spec());
    if (!space.ok()) {
      // A space this build no longer accepts (a field renamed): the sweep cannot go on.
      LogError("sweep ", record.id(), " cannot be resumed: ", space.status().ToString());
      continue;
    }
    ActiveSweep& active = sweeps_[record.id()];
    active.sweep = record;
    active.space = *std::move(space);
    TL_ASSIGN_OR_RETURN(std::vector<JobRecord> trials, store_.TrialsOf(record.id()));
    for (const JobRecord& trial : trials) {
      auto running = active_.find(trial.id());
      const JobRecord& job = running != active_.end() ? running->second.job : trial;
      ActiveTrial& entry = active.trials[job.sweep_trial()];
      entry.job_id = job.id();
      entry.state = job.state();
      entry.epoch = job.epoch();
      entry.epochs = job.spec().training().epochs();
      entry.error = job.error();
      TL_ASSIGN_OR_RETURN(std::vector<tl::v1::EpochMetrics> epochs, store_.GetEpochs(job.id()));
      const SweepSpec& spec = record.spec();
      for (const tl::v1::EpochMetrics& epoch : epochs) {
        if (spec.method() == SweepSpec::ASHA && !IsRefitTrial(spec, job.sweep_trial()) &&
            IsAshaRung(epoch.epoch(), spec.asha().min_epochs(), spec.asha().reduction_factor(),
                       entry.epochs)) {
          active.rungs[epoch.epoch()][job.sweep_trial()] = ObjectiveOf(spec.objective(), epoch);
        }
      }
      if (IsRefitTrial(spec, job.sweep_trial())) continue;
      const tl::v1::JobResult* result = job.state() == Job::SUCCEEDED ? &job.result() : nullptr;
      entry.objective = TrialObjective(spec.objective(), epochs, result);
      if (result != nullptr) entry.tie_break_loss = TrialTieBreakLoss(epochs, result);
    }
    LogInfo("recovered sweep ", record.id(), " (", Sweep::State_Name(record.state()), ", ",
            std::min<size_t>(trials.size(), record.spec().max_trials()), " of ",
            record.spec().max_trials(), " trials created",
            record.refit_job_id().empty() ? "" : ", and the refit", ")");
  }
  for (const auto& [state, count] : sweep_state_counts_) metrics_.SetSweepsInState(state, count);
  return absl::OkStatus();
}

// ---------------------------------------------------------------- what callers read

absl::StatusOr<Sweep> Scheduler::SweepView(const SweepRecord& record, bool with_trials) {
  Sweep sweep;
  sweep.set_id(record.id());
  *sweep.mutable_spec() = record.spec();
  sweep.set_state(record.state());
  sweep.set_owner(record.owner());
  if (record.has_create_time()) *sweep.mutable_create_time() = record.create_time();
  if (record.has_update_time()) *sweep.mutable_update_time() = record.update_time();
  if (record.has_end_time()) *sweep.mutable_end_time() = record.end_time();
  sweep.set_error(ClipUtf8(record.error(), kMaxWorkerErrorBytes));
  sweep.set_best_job_id(record.best_job_id());
  if (record.has_best_objective()) sweep.set_best_objective(record.best_objective());
  sweep.set_request_id(record.request_id());
  // The counts are the search's: the refit is shown apart (refit_job_id).
  sweep.set_trials_created(std::min(record.trials_created(), record.spec().max_trials()));
  sweep.set_refit_job_id(record.refit_job_id());
  TL_ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, store_.TrialsOf(record.id()));
  absl::StatusOr<std::vector<SpaceParameter>> space = ResolveSpace(record.spec());
  auto active = sweeps_.find(record.id());
  int best_index = -1;
  for (const JobRecord& stored : jobs) {
    if (stored.id() == record.best_job_id()) best_index = stored.sweep_trial();
  }
  for (const JobRecord& stored : jobs) {
    auto running = active_.find(stored.id());
    const JobRecord& job = running != active_.end() ? running->second.job : stored;
    const bool refit = IsRefitTrial(record.spec(), job.sweep_trial());
    if (IsTerminal(job.state()) && !refit) sweep.set_trials_ended(sweep.trials_ended() + 1);
    if (job.state() == Job::FAILED && !refit) sweep.set_failed_trials(sweep.failed_trials() + 1);
    if (!with_trials) continue;
    tl::v1::SweepTrial& trial = *sweep.add_trials();
    trial.set_index(job.sweep_trial());
    trial.set_job_id(job.id());
    trial.set_state(job.state());
    trial.set_epoch(job.epoch());
    // The refit's parameters are those of the best trial it trains again.
    trial.set_refit(refit);
    const int drawn = refit ? best_index : job.sweep_trial();
    if (space.ok() && drawn >= 0) TrialSpec(record.spec(), *space, drawn, trial.mutable_parameters());
    std::optional<double> objective;
    if (refit) {
      // No objective: it holds nothing out.
    } else if (active != sweeps_.end() && active->second.trials.count(job.sweep_trial()) > 0) {
      objective = active->second.trials.at(job.sweep_trial()).objective;
    } else {
      absl::StatusOr<std::vector<tl::v1::EpochMetrics>> epochs = store_.GetEpochs(job.id());
      if (epochs.ok()) {
        objective = TrialObjective(record.spec().objective(), *epochs,
                                   job.state() == Job::SUCCEEDED ? &job.result() : nullptr);
      }
    }
    if (objective) trial.set_objective(*objective);
  }
  return sweep;
}

void Scheduler::NotifySweep(ActiveSweep& active) {
  if (sweep_watchers_.count(active.sweep.id()) == 0) return;
  absl::StatusOr<Sweep> sweep = SweepView(active.sweep, /*with_trials=*/true);
  if (!sweep.ok()) return;
  SweepEvent event;
  *event.mutable_sweep() = *std::move(sweep);
  DeliverOrDrop(sweep_watchers_, active.sweep.id(),
                [&](SweepWatcher& watcher) { return watcher.Deliver(event); });
}

}  // namespace tl::server
