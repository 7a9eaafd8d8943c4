// The scheduler's own life (start, drain, the lease thread), how a job changes (Update), ends,
// goes back to the queue or pauses, and how queued jobs are placed on workers. JobService
// calls are in scheduler_requests.cc, the worker streams in scheduler_workers.cc, gangs in
// scheduler_gang.cc.
#include "server/core/scheduler.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "server/core/job_states.h"
#include "server/core/placement.h"
#include "server/core/scheduler_internal.h"
#include "server/core/subscriptions.h"
#include "server/spec/caller_text.h"

namespace tl::server {

using ::tl::v1::Job;
using ::tl::v1::JobEvent;
using ::tl::v1::SchedulerMessage;
using scheduler_internal::HoldsWorker;
using scheduler_internal::SweepResultJobId;
using scheduler_internal::ToTimestamp;
using scheduler_internal::Waiting;

Scheduler::Scheduler(JobStore& store, ServerMetrics& metrics, SchedulerOptions options)
    : store_(store), metrics_(metrics), options_(std::move(options)) {
  spec_context_.data_root = options_.data_root;
  spec_context_.artifact_root = options_.artifact_root;
}

Scheduler::~Scheduler() { Stop(); }

absl::Status Scheduler::Start() {
  std::lock_guard<std::mutex> lock(mutex_);
  TL_ASSIGN_OR_RETURN(state_counts_, store_.CountByState());
  for (const auto& [state, count] : state_counts_) metrics_.SetJobsInState(state, count);

  // One pass in submission order, so that a leased job that goes back to
  // the queue keeps its place among the jobs submitted after it.
  TL_ASSIGN_OR_RETURN(
      std::vector<JobRecord> jobs,
      store_.JobsInStates({Job::QUEUED, Job::ASSIGNED, Job::RUNNING, Job::PAUSED}));
  size_t queued = 0;
  for (JobRecord& job : jobs) {
    ActiveJob active{std::move(job), next_queue_order_++};
    CountStateChange(active.job.owner(), Job::STATE_UNSPECIFIED, active.job.state());
    if (active.job.state() == Job::QUEUED) {
      queue_.insert(KeyOf(active));
      ++queued;
    } else if (active.job.state() == Job::PAUSED) {
      // Waits for ResumeJob.
    } else {
      // Leased jobs from before a restart wait one lease for their workers
      // to reconnect and claim them; after that they go back to the queue.
      active.orphaned_since = Now();
      active.leased_to = active.job.worker_id();
    }
    active_.emplace(active.job.id(), std::move(active));
  }
  LogInfo("recovered ", queued, " queued and ", jobs.size() - queued, " leased jobs");
  // After the jobs: a sweep reads its unended trials from them.
  TL_RETURN_IF_ERROR(LoadSweeps());
  ServeAllSweeps();

  std::lock_guard<std::mutex> lease_lock(lease_mutex_);
  stopping_ = false;
  lease_thread_ = std::thread([this] { LeaseLoop(); });
  return absl::OkStatus();
}

void Scheduler::BeginDrain() {
  std::vector<std::shared_ptr<WorkerConnection>> connections;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    draining_ = true;
    LogInfo("draining: no new assignments");
    InterruptAll(watchers_);
    InterruptAll(log_followers_);
    InterruptAll(sweep_watchers_);
    for (const auto& [session, worker] : workers_) connections.push_back(worker.connection);
  }
  // Outside the lock: a stream's teardown takes it.
  for (const std::shared_ptr<WorkerConnection>& connection : connections) {
    connection->Close("the server is shutting down; reconnect to the next one");
  }
}

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(lease_mutex_);
    stopping_ = true;
  }
  lease_wakeup_.notify_all();
  if (lease_thread_.joinable()) lease_thread_.join();
}

void Scheduler::LeaseLoop() {
  std::unique_lock<std::mutex> lock(lease_mutex_);
  const auto period = std::chrono::milliseconds(
      std::max<int64_t>(50, absl::ToInt64Milliseconds(options_.lease_timeout) / 10));
  while (!lease_wakeup_.wait_for(lock, period, [this] { return stopping_; })) {
    lock.unlock();
    CheckLeases(Now());
    lock.lock();
  }
}

Scheduler::QueueKey Scheduler::KeyOf(const ActiveJob& active) {
  return {-active.job.spec().priority(), active.queue_order, active.job.id()};
}

absl::Status Scheduler::Persist(ActiveJob& active, Job::State previous_state,
                               const tl::v1::EpochMetrics* epoch) {
  JobRecord& job = active.job;
  *job.mutable_update_time() = ToTimestamp(Now());
  const int64_t previous_sequence = job.last_event_sequence();
  std::vector<JobEvent> events;
  int64_t sequence = previous_sequence;
  if (epoch != nullptr) {
    JobEvent& finished_epoch = events.emplace_back();
    finished_epoch.set_sequence(++sequence);
    *finished_epoch.mutable_epoch() = *epoch;
  }
  job.set_last_event_sequence(++sequence);
  JobEvent& changed = events.emplace_back();
  changed.set_sequence(sequence);
  *changed.mutable_job() = ToApiJob(job);
  absl::Status status = store_.CommitJob(job, events, epoch);
  if (!status.ok()) {
    job.set_last_event_sequence(previous_sequence);
    LogError("cannot store job ", job.id(), ": ", status.ToString());
    return status;
  }
  if (previous_state != job.state()) {
    CountStateChange(job.owner(), previous_state, job.state());
    --state_counts_[previous_state];
    ++state_counts_[job.state()];
    metrics_.SetJobsInState(previous_state, state_counts_[previous_state]);
    metrics_.SetJobsInState(job.state(), state_counts_[job.state()]);
  }
  for (const JobEvent& event : events) Notify(job.id(), event);
  NoteTrialChange(job, epoch);
  return absl::OkStatus();
}

absl::Status Scheduler::Update(ActiveJob& active, const std::function<void(ActiveJob&)>& change,
                               const tl::v1::EpochMetrics* epoch) {
  ActiveJob next = active;
  change(next);
  const Job::State from = active.job.state();
  const Job::State to = next.job.state();
  if (!IsAllowedTransition(from, to)) {
    LogError("job ", active.job.id(), ": refused to move from ", Job::State_Name(from), " to ",
             Job::State_Name(to));
    return absl::InternalError(absl::StrCat("job ", active.job.id(), " cannot move from ",
                                            Job::State_Name(from), " to ",
                                            Job::State_Name(to)));
  }
  TL_RETURN_IF_ERROR(Persist(next, from, epoch));
  active = std::move(next);
  return absl::OkStatus();
}

void Scheduler::CountStateChange(const std::string& owner, Job::State from, Job::State to) {
  OwnerLoad& load = owner_loads_[owner];
  if (Waiting(from)) --load.waiting;
  if (HoldsWorker(from)) --load.running;
  if (Waiting(to)) ++load.waiting;
  if (HoldsWorker(to)) ++load.running;
  if (load.waiting == 0 && load.running == 0) owner_loads_.erase(owner);
}

void Scheduler::Notify(const std::string& job_id, const JobEvent& event) {
  DeliverOrDrop(watchers_, job_id, [&](JobWatcher& watcher) { return watcher.Deliver(event); });
}

void Scheduler::EndJob(ActiveJob& active, Job::State state, std::string error,
                       int failures) {
  // A cancel that ASHA asked for (MarkStopEarly) ends the trial as stopped early, whichever path
  // sees the end: the worker's report, a lost worker, a cancel of a job nobody runs.
  if (state == Job::CANCELLED && active.job.stop_early_requested()) state = Job::STOPPED_EARLY;
  const absl::Status status = Update(active, [&](ActiveJob& next) {
    next.job.set_state(state);
    next.job.set_error(ClipUtf8(error, kMaxWorkerErrorBytes));
    *next.job.mutable_end_time() = ToTimestamp(Now());
    if (failures >= 0) next.job.set_failures(failures);
  });
  // Not stored: the job stays active, exactly as it was, so that a later event ends it again.
  if (!status.ok()) return;
  const JobRecord& job = active.job;
  metrics_.JobFinished(ToApiJob(job));
  metrics_.RemoveJob(job.id());
  LogInfo("job ", job.id(), " ", Job::State_Name(state), error.empty() ? "" : ": ", error);
  const std::string id = job.id();
  const int64_t session = active.session;
  // A gang's other ranks end by themselves after a success; otherwise they are stopped.
  ReleaseReplicas(active, /*cancel=*/state != Job::SUCCEEDED, error);
  FinishAll(watchers_, id);
  FinishAll(log_followers_, id);
  active_.erase(id);
  if (session != 0) ReleaseWorker(session);
}

void Scheduler::Requeue(ActiveJob& active, std::string why, bool counts_as_failure) {
  // A requested cancel wins over the attempt limit: the user asked for the job to stop, so
  // it ends CANCELLED whichever attempt its worker was lost on.
  if (active.job.cancel_requested()) {
    EndJob(active, Job::CANCELLED, active.job.error());
    return;
  }
  const int failures = active.job.failures() + (counts_as_failure ? 1 : 0);
  if (failures >= options_.max_attempts) {
    EndJob(active, Job::FAILED,
           absl::StrCat(why, "; gave up after ", failures, " failed attempts"), failures);
    return;
  }
  const ActiveJob before = active;
  const bool pause = active.job.pause_requested();
  const absl::Status status = Update(active, [&](ActiveJob& next) {
    next.job.set_state(pause ? Job::PAUSED : Job::QUEUED);
    next.job.set_pause_requested(false);
    next.job.set_failures(failures);
    next.job.set_worker_id("");
    next.job.clear_replica_worker_ids();
    next.job.set_error(ClipUtf8(why, kMaxWorkerErrorBytes));
    next.session = 0;
    next.orphaned_since = absl::InfinitePast();
  });
  if (!status.ok()) return;  // still orphaned: the next lease check tries again
  // The next attempt gets a new gang; what is left of this one stops.
  ReleaseReplicas(active, /*cancel=*/true, why);
  if (!pause) queue_.insert(KeyOf(active));
  if (before.session != 0) {
    // The worker that reported the failure is free; the caller dispatches.
    auto worker = workers_.find(before.session);
    if (worker != workers_.end() && worker->second.job_id == active.job.id()) {
      worker->second.job_id.clear();
    }
  }
  metrics_.RemoveJob(active.job.id());  // its series return with its next run
  LogWarning("job ", active.job.id(), pause ? " paused: " : " requeued: ", why);
}

void Scheduler::PauseStopped(ActiveJob& active) {
  const int64_t session = active.session;
  const absl::Status status = Update(active, [](ActiveJob& next) {
    next.job.set_state(Job::PAUSED);
    next.job.set_pause_requested(false);
    next.job.set_worker_id("");
    next.session = 0;
  });
  if (!status.ok()) return;
  metrics_.RemoveJob(active.job.id());
  // The other ranks paused at the same epoch (their process group agrees on it).
  ReleaseReplicas(active, /*cancel=*/false, "paused");
  LogInfo("job ", active.job.id(), " paused after epoch ", active.job.epoch());
  ReleaseWorker(session);
}

bool Scheduler::OwnerAtRunningLimit(const std::string& owner) const {
  if (options_.max_running_per_owner <= 0) return false;
  auto load = owner_loads_.find(owner);
  return load != owner_loads_.end() && load->second.running >= options_.max_running_per_owner;
}

std::string Scheduler::PendingReason(const ActiveJob& active) const {
  if (draining_) return "the server is shutting down";
  if (OwnerAtRunningLimit(active.job.owner())) {
    return absl::StrCat("owner ", active.job.owner(), " already runs ",
                        options_.max_running_per_owner, " jobs, the limit");
  }
  bool any_fits = false;
  bool any_slots = false;
  for (const auto& [session, worker] : workers_) {
    any_fits = any_fits || WorkerFits(worker.hello, active.job.spec().resources());
    any_slots = any_slots || worker.hello.slots() > 1;
  }
  if (workers_.empty()) return "no worker is connected";
  if (!any_fits) {
    return absl::StrCat("no connected worker offers ",
                        DescribeResources(active.job.spec().resources()),
                        any_slots ? " (a worker with slots offers each slot its share of the "
                                    "device's memory)"
                                  : "");
  }
  int64_t ahead = 0;
  for (const QueueKey& key : queue_) {
    if (std::get<2>(key) == active.job.id()) break;
    ++ahead;
  }
  const int replicas = Replicas(active.job);
  if (replicas > 1) {
    const int suitable = CountSuitableWorkers(PlacementWorkers(), active.job);
    if (suitable < replicas) {
      return absl::StrCat("needs ", replicas, " workers at once that offer ",
                          DescribeResources(active.job.spec().resources()),
                          " and a replica address; ", suitable, " such worker(s) connected");
    }
    return absl::StrCat("waiting for ", replicas, " free workers at once (", ahead,
                        " jobs ahead)");
  }
  return absl::StrCat("waiting for a free worker (", ahead, " jobs ahead)");
}

std::vector<PlacementWorker> Scheduler::PlacementWorkers() const {
  std::vector<PlacementWorker> workers;
  for (const auto& [session, worker] : workers_) {
    workers.push_back({session, &worker.hello, worker.job_id.empty() && !worker.busy_elsewhere &&
                                             !worker.leaving});
  }
  return workers;
}

void Scheduler::Dispatch() {
  if (draining_) return;
  // Jobs whose assignment the store refused this time: they stay queued, and the placement is
  // made again without them so that the jobs behind them may go.
  std::set<std::string> refused;
  for (bool place_again = true; place_again;) {
    place_again = false;
    std::vector<const JobRecord*> queue;
    for (const QueueKey& key : queue_) {
      if (!refused.count(std::get<2>(key))) queue.push_back(&active_.at(std::get<2>(key)).job);
    }
    PlacementLimits limits;
    limits.max_running_per_owner = options_.max_running_per_owner;
    for (const auto& [owner, load] : owner_loads_) limits.running_per_owner[owner] = load.running;
    for (const Placement& placement : PlaceJobs(queue, PlacementWorkers(), std::move(limits))) {
      ActiveJob& active = active_.at(placement.job_id);
      const QueueKey key = KeyOf(active);
      if (!Assign(active, placement.sessions).ok()) {
        refused.insert(placement.job_id);
        place_again = true;
        break;
      }
      queue_.erase(key);
    }
  }
}

absl::Status Scheduler::Assign(ActiveJob& active, const std::vector<int64_t>& sessions) {
  const JobRecord& job = active.job;
  tl::v1::Assignment assignment;
  assignment.set_job_id(job.id());
  assignment.set_attempt(job.attempt() + 1);
  *assignment.mutable_spec() = job.spec();
  assignment.set_output_dir(job.id());
  // Set where a stored spec still names a sweep: the job it resolved to, kept from now on.
  std::string resolved_source;
  if (job.spec().backbone().has_from_job()) {
    const std::string& source_id = job.spec().backbone().from_job();
    absl::StatusOr<JobRecord> source = store_.GetJob(source_id);
    if (absl::IsNotFound(source.status())) {
      // A job stored before submit resolved a sweep's id to its result job names the sweep;
      // it takes the sweep's result now (it was checked against that sweep when submitted),
      // and keeps it for every later attempt.
      TL_ASSIGN_OR_RETURN(SweepRecord sweep, store_.GetSweep(source_id));
      source = store_.GetJob(SweepResultJobId(sweep));
      if (source.ok()) {
        resolved_source = source->id();
        assignment.mutable_spec()->mutable_backbone()->set_from_job(resolved_source);
      }
    }
    if (!source.ok()) return source.status();
    assignment.set_backbone_path(source->result().backbone_path());
    assignment.set_backbone_from_artifacts(true);
  } else {
    assignment.set_backbone_path(job.spec().backbone().path());
  }
  const bool gang = sessions.size() > 1;
  const WorkerState& rank_zero = workers_.at(sessions.front());
  if (gang) {
    assignment.set_replica_count(static_cast<int32_t>(sessions.size()));
    assignment.set_rendezvous_host(rank_zero.hello.replica_address());
    assignment.set_rendezvous_port(rank_zero.hello.rendezvous_port());
    // A new prefix per attempt: keys a stopped gang left in a store never meet the next one.
    assignment.set_rendezvous_key(absl::StrCat(job.id(), "/", assignment.attempt()));
  }

  const JobRecord waiting = job;  // its update time says since when it waited
  absl::Status status = Update(active, [&](ActiveJob& next) {
    next.job.set_state(Job::ASSIGNED);
    next.job.set_attempt(assignment.attempt());
    if (!resolved_source.empty()) {
      next.job.mutable_spec()->mutable_backbone()->set_from_job(resolved_source);
    }
    next.job.set_worker_id(rank_zero.hello.worker_id());
    next.leased_to = rank_zero.hello.worker_id();
    next.job.set_error("");
    next.job.clear_replica_worker_ids();
    if (gang) {
      for (int64_t session : sessions) {
        next.job.add_replica_worker_ids(workers_.at(session).hello.worker_id());
      }
    }
    next.session = sessions.front();
    next.replica_sessions = std::set<int64_t>(sessions.begin() + 1, sessions.end());
  });
  if (!status.ok()) return status;
  metrics_.JobAssigned(ToApiJob(waiting));
  for (size_t rank = 0; rank < sessions.size(); ++rank) {
    WorkerState& worker = workers_.at(sessions[rank]);
    worker.job_id = job.id();
    SchedulerMessage message;
    *message.mutable_assignment() = assignment;
    message.mutable_assignment()->set_replica_rank(static_cast<int32_t>(rank));
    worker.connection->Send(message);
  }
  UpdateWorkerMetrics();
  LogInfo("job ", job.id(), " attempt ", job.attempt(), " assigned to ",
          gang ? absl::StrCat(sessions.size(), " workers, rank 0 ") : "",
          rank_zero.hello.worker_id());
  return absl::OkStatus();
}

void Scheduler::ReleaseWorker(int64_t session) {
  auto it = workers_.find(session);
  if (it == workers_.end()) return;
  it->second.job_id.clear();
  UpdateWorkerMetrics();
  Dispatch();
}

void Scheduler::UpdateWorkerMetrics() {
  int64_t busy = 0;
  for (const auto& [session, worker] : workers_) busy += worker.job_id.empty() ? 0 : 1;
  metrics_.SetWorkers(static_cast<int64_t>(workers_.size()), busy);
}

}  // namespace tl::server
