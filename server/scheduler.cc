#include "server/scheduler.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "google/protobuf/util/time_util.h"

namespace tl::server {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::tl::v1::Job;
using ::tl::v1::JobEvent;
using ::tl::v1::SchedulerMessage;

google::protobuf::Timestamp ToTimestamp(absl::Time time) {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(time));
}

JobEvent JobChanged(const Job& job) {
  JobEvent event;
  *event.mutable_job() = job;
  return event;
}

}  // namespace

bool IsTerminal(Job::State state) {
  return state == Job::SUCCEEDED || state == Job::FAILED || state == Job::CANCELLED;
}

Scheduler::Scheduler(JobStore& store, ServerMetrics& metrics, SchedulerOptions options)
    : store_(store), metrics_(metrics), options_(std::move(options)) {
  spec_context_.data_root = options_.data_root;
  spec_context_.artifact_root = options_.artifact_root;
  spec_context_.find_job = [this](const std::string& job_id) { return store_.GetJob(job_id); };
}

Scheduler::~Scheduler() { Stop(); }

absl::Status Scheduler::Start() {
  std::lock_guard<std::mutex> lock(mutex_);
  absl::StatusOr<std::map<Job::State, int64_t>> counts = store_.CountByState();
  if (!counts.ok()) return counts.status();
  state_counts_ = *counts;
  for (const auto& [state, count] : state_counts_) metrics_.SetJobsInState(state, count);

  // One pass in submission order, so that a leased job that goes back to
  // the queue keeps its place among the jobs submitted after it.
  absl::StatusOr<std::vector<Job>> jobs =
      store_.JobsInStates({Job::QUEUED, Job::ASSIGNED, Job::RUNNING});
  if (!jobs.ok()) return jobs.status();
  size_t queued = 0;
  for (Job& job : *jobs) {
    ActiveJob active{std::move(job), next_queue_order_++};
    if (active.job.state() == Job::QUEUED) {
      queue_.insert(KeyOf(active));
      ++queued;
    } else {
      // Leased jobs from before a restart wait one lease for their workers
      // to reconnect and claim them; after that they go back to the queue.
      active.orphaned_since = Now();
    }
    active_.emplace(active.job.id(), std::move(active));
  }
  LogInfo("recovered ", queued, " queued and ", jobs->size() - queued, " leased jobs");

  std::lock_guard<std::mutex> lease_lock(lease_mutex_);
  stopping_ = false;
  lease_thread_ = std::thread([this] { LeaseLoop(); });
  return absl::OkStatus();
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

absl::Status Scheduler::Persist(ActiveJob& active, Job::State previous_state) {
  Job& job = active.job;
  *job.mutable_update_time() = ToTimestamp(Now());
  absl::Status status = store_.UpdateJob(job);
  if (!status.ok()) {
    LogError("cannot store job ", job.id(), ": ", status.ToString());
    return status;
  }
  if (previous_state != job.state()) {
    --state_counts_[previous_state];
    ++state_counts_[job.state()];
    metrics_.SetJobsInState(previous_state, state_counts_[previous_state]);
    metrics_.SetJobsInState(job.state(), state_counts_[job.state()]);
  }
  Notify(job.id(), JobChanged(job));
  return absl::OkStatus();
}

void Scheduler::Notify(const std::string& job_id, const JobEvent& event) {
  auto it = watchers_.find(job_id);
  if (it == watchers_.end()) return;
  std::vector<std::shared_ptr<JobWatcher>>& list = it->second;
  // A watcher that has gone away is dropped here rather than by its stream,
  // so that streams never need the scheduler's lock.
  list.erase(std::remove_if(list.begin(), list.end(),
                            [&](const std::shared_ptr<JobWatcher>& watcher) {
                              return !watcher->Deliver(event);
                            }),
             list.end());
  if (list.empty()) watchers_.erase(it);
}

void Scheduler::FinishWatchers(const std::string& job_id) {
  auto it = watchers_.find(job_id);
  if (it == watchers_.end()) return;
  for (const std::shared_ptr<JobWatcher>& watcher : it->second) watcher->Finish();
  watchers_.erase(it);
}

absl::StatusOr<Job> Scheduler::SubmitJob(const tl::v1::JobSpec& spec, const std::string& owner) {
  // Validation reads the file system; it runs before the lock is taken.
  absl::StatusOr<tl::v1::JobSpec> validated = ValidateJobSpec(spec, spec_context_);
  if (!validated.ok()) return validated.status();
  std::lock_guard<std::mutex> lock(mutex_);
  absl::StatusOr<Job> created =
      store_.CreateJob(*validated, owner.empty() ? "anonymous" : owner, Now());
  if (!created.ok()) return created.status();
  metrics_.JobSubmitted();
  metrics_.SetJobsInState(Job::QUEUED, ++state_counts_[Job::QUEUED]);
  ActiveJob active{*created, next_queue_order_++};
  queue_.insert(KeyOf(active));
  const std::string id = created->id();
  active_.emplace(id, std::move(active));
  LogInfo("job ", id, " queued (", created->spec().name(), ", owner ", created->owner(), ")");
  Dispatch();
  return *created;
}

absl::StatusOr<Job> Scheduler::GetJob(const std::string& job_id) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id is empty");
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = active_.find(job_id);
    if (it != active_.end()) return it->second.job;
  }
  return store_.GetJob(job_id);
}

absl::StatusOr<JobStore::Page> Scheduler::ListJobs(const std::vector<Job::State>& states,
                                                   int page_size, const std::string& page_token) {
  if (page_size == 0) page_size = 50;
  if (page_size < 0 || page_size > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size is ", page_size, "; it must lie in [1, 1000] (0 means 50)"));
  }
  for (int state : states) {
    if (!Job::State_IsValid(state) || state == Job::STATE_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat("states holds ", state,
                                                     ", which is not a job state"));
    }
  }
  return store_.ListJobs(states, page_size, page_token);
}

absl::StatusOr<Job> Scheduler::CancelJob(const std::string& job_id, const std::string& reason) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id is empty");
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = active_.find(job_id);
  if (it == active_.end()) {
    absl::StatusOr<Job> stored = store_.GetJob(job_id);
    if (!stored.ok()) return stored.status();
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " has already ended (", Job::State_Name(stored->state()), ")"));
  }
  ActiveJob& active = it->second;
  const std::string why = reason.empty() ? "cancelled on request" : reason;
  if (active.job.state() == Job::QUEUED || active.session == 0) {
    // Nobody runs it: it ends now.
    const bool was_queued = queue_.erase(KeyOf(active)) > 0;
    EndJob(active, Job::CANCELLED, why);
    auto still_active = active_.find(job_id);
    if (still_active != active_.end()) {
      // The store refused the write; the job stays as it was, queued again.
      if (was_queued) queue_.insert(KeyOf(still_active->second));
      return absl::UnavailableError(absl::StrCat("job ", job_id,
                                                 " could not be cancelled now; try again"));
    }
    return store_.GetJob(job_id);
  }
  active.job.set_cancel_requested(true);
  active.job.set_error(why);
  absl::Status status = Persist(active, active.job.state());
  if (!status.ok()) return status;
  SchedulerMessage message;
  message.mutable_cancel()->set_job_id(job_id);
  message.mutable_cancel()->set_reason(why);
  workers_.at(active.session).connection->Send(message);
  LogInfo("job ", job_id, " cancel sent to worker ", active.job.worker_id());
  return active.job;
}

absl::Status Scheduler::WatchJob(const std::string& job_id, std::shared_ptr<JobWatcher> watcher) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id is empty");
  std::lock_guard<std::mutex> lock(mutex_);
  Job job;
  auto it = active_.find(job_id);
  if (it != active_.end()) {
    job = it->second.job;
  } else {
    absl::StatusOr<Job> stored = store_.GetJob(job_id);
    if (!stored.ok()) return stored.status();
    job = *std::move(stored);
  }
  absl::StatusOr<std::vector<tl::v1::EpochMetrics>> epochs = store_.GetEpochs(job_id);
  if (!epochs.ok()) return epochs.status();
  // Under the lock, so that no event falls between the snapshot and the
  // registration.
  watcher->Deliver(JobChanged(job));
  for (const tl::v1::EpochMetrics& metrics : *epochs) {
    JobEvent event;
    *event.mutable_epoch() = metrics;
    watcher->Deliver(event);
  }
  if (IsTerminal(job.state())) {
    watcher->Finish();
  } else {
    watchers_[job_id].push_back(std::move(watcher));
  }
  return absl::OkStatus();
}

void Scheduler::EndJob(ActiveJob& active, Job::State state, const std::string& error) {
  const Job::State previous = active.job.state();
  Job& job = active.job;
  job.set_state(state);
  job.set_error(error);
  *job.mutable_end_time() = ToTimestamp(Now());
  if (!Persist(active, previous).ok()) {
    // The row keeps its old state; the job stays active so that a later
    // event can end it again.
    job.set_state(previous);
    return;
  }
  metrics_.JobFinished(state);
  metrics_.RemoveJob(job.id());
  LogInfo("job ", job.id(), " ", Job::State_Name(state), error.empty() ? "" : ": ", error);
  const std::string id = job.id();
  const int64_t session = active.session;
  FinishWatchers(id);
  active_.erase(id);
  if (session != 0) ReleaseWorker(session);
}

void Scheduler::Requeue(ActiveJob& active, const std::string& why) {
  // A requested cancel wins over the attempt limit: the user asked for the job to stop, so
  // it ends CANCELLED whichever attempt its worker was lost on.
  if (active.job.cancel_requested()) {
    EndJob(active, Job::CANCELLED, active.job.error());
    return;
  }
  if (active.job.attempt() >= options_.max_attempts) {
    EndJob(active, Job::FAILED,
           absl::StrCat(why, "; gave up after ", active.job.attempt(), " attempts"));
    return;
  }
  const ActiveJob before = active;
  active.job.set_state(Job::QUEUED);
  active.job.set_worker_id("");
  active.job.set_error(why);
  active.session = 0;
  active.orphaned_since = absl::InfinitePast();
  if (!Persist(active, before.job.state()).ok()) {
    active = before;  // still orphaned: the next lease check tries again
    return;
  }
  queue_.insert(KeyOf(active));
  metrics_.RemoveJob(active.job.id());  // its series return with its next run
  LogWarning("job ", active.job.id(), " requeued: ", why);
}

bool Scheduler::WorkerFits(const WorkerState& worker, const Job& job) const {
  const std::string& wanted = job.spec().resources().device();
  if (wanted.empty()) return true;
  for (const tl::v1::Device& device : worker.hello.devices()) {
    if (device.kind() == wanted) return true;
  }
  return false;
}

void Scheduler::Dispatch() {
  for (auto key = queue_.begin(); key != queue_.end();) {
    bool any_idle = false;
    bool assigned = false;
    ActiveJob& active = active_.at(std::get<2>(*key));
    for (auto& [session, worker] : workers_) {
      if (!worker.job_id.empty() || worker.refusing) continue;
      any_idle = true;
      if (!WorkerFits(worker, active.job)) continue;
      if (!Assign(active, session, worker).ok()) break;  // stays queued; the next job may go
      key = queue_.erase(key);
      assigned = true;
      break;
    }
    if (!any_idle) return;
    if (!assigned) ++key;
  }
}

absl::Status Scheduler::Assign(ActiveJob& active, int64_t session, WorkerState& worker) {
  Job& job = active.job;
  tl::v1::Assignment assignment;
  assignment.set_job_id(job.id());
  assignment.set_attempt(job.attempt() + 1);
  *assignment.mutable_spec() = job.spec();
  assignment.set_output_dir(job.id());
  if (job.spec().backbone().has_from_job()) {
    absl::StatusOr<Job> source = store_.GetJob(job.spec().backbone().from_job());
    if (!source.ok()) return source.status();
    assignment.set_backbone_path(source->result().backbone_path());
    assignment.set_backbone_from_artifacts(true);
  } else {
    assignment.set_backbone_path(job.spec().backbone().path());
  }

  const Job::State previous = job.state();
  job.set_state(Job::ASSIGNED);
  job.set_attempt(job.attempt() + 1);
  job.set_worker_id(worker.hello.worker_id());
  job.set_error("");
  active.session = session;
  if (absl::Status status = Persist(active, previous); !status.ok()) {
    job.set_state(previous);
    job.set_attempt(job.attempt() - 1);
    job.set_worker_id("");
    active.session = 0;
    return status;
  }
  worker.job_id = job.id();
  SchedulerMessage message;
  *message.mutable_assignment() = std::move(assignment);
  worker.connection->Send(message);
  UpdateWorkerMetrics();
  LogInfo("job ", job.id(), " attempt ", job.attempt(), " assigned to ", worker.hello.worker_id());
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

absl::StatusOr<int64_t> Scheduler::ConnectWorker(const tl::v1::WorkerHello& hello,
                                                 std::shared_ptr<WorkerConnection> connection) {
  if (hello.worker_id().empty()) {
    return absl::InvalidArgumentError("hello.worker_id is empty");
  }
  std::vector<std::shared_ptr<WorkerConnection>> replaced;
  absl::StatusOr<int64_t> result = ConnectWorkerLocked(hello, std::move(connection), &replaced);
  // A worker's earlier stream that the scheduler had not yet seen die is
  // closed now, outside the lock (its teardown takes the lock).
  for (const std::shared_ptr<WorkerConnection>& old : replaced) old->Close();
  return result;
}

absl::StatusOr<int64_t> Scheduler::ConnectWorkerLocked(
    const tl::v1::WorkerHello& hello, std::shared_ptr<WorkerConnection> connection,
    std::vector<std::shared_ptr<WorkerConnection>>* replaced) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Two sessions of one worker cannot both be live: the older one is a
  // stream that broke without the scheduler noticing yet. Left registered it
  // would look idle and take assignments into a dead stream.
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->second.hello.worker_id() != hello.worker_id()) {
      ++it;
      continue;
    }
    if (!it->second.job_id.empty()) {
      auto job = active_.find(it->second.job_id);
      if (job != active_.end() && job->second.session == it->first) {
        job->second.session = 0;
        job->second.orphaned_since = Now();
      }
    }
    replaced->push_back(it->second.connection);
    it = workers_.erase(it);
  }
  const int64_t session = next_session_++;
  WorkerState& worker = workers_[session];
  worker.hello = hello;
  worker.connection = std::move(connection);
  worker.last_seen = Now();
  SchedulerMessage welcome;
  welcome.mutable_welcome()->set_heartbeat_interval_ms(
      static_cast<int32_t>(absl::ToInt64Milliseconds(options_.heartbeat_interval)));
  welcome.mutable_welcome()->set_lease_timeout_ms(
      static_cast<int32_t>(absl::ToInt64Milliseconds(options_.lease_timeout)));
  worker.connection->Send(welcome);
  LogInfo("worker ", hello.worker_id(), " connected (session ", session, ", ",
          hello.devices_size(), " devices", hello.held_job_id().empty() ? "" : ", holding ",
          hello.held_job_id(), ")");
  if (!hello.held_job_id().empty()) AdoptHeldJob(session, worker);
  UpdateWorkerMetrics();
  Dispatch();
  return session;
}

void Scheduler::AdoptHeldJob(int64_t session, WorkerState& worker) {
  const tl::v1::WorkerHello& hello = worker.hello;
  auto it = active_.find(hello.held_job_id());
  bool adopted = false;
  if (it != active_.end() && it->second.job.attempt() == hello.held_attempt()) {
    ActiveJob& active = it->second;
    const bool held_by_gone_or_same_worker =
        active.session == 0 || workers_.count(active.session) == 0 ||
        workers_.at(active.session).hello.worker_id() == hello.worker_id();
    if (held_by_gone_or_same_worker) {
      const ActiveJob before = active;
      const Job::State previous = active.job.state();
      if (previous == Job::QUEUED) active.job.set_state(Job::RUNNING);
      active.job.set_worker_id(hello.worker_id());
      active.job.set_error(active.job.cancel_requested() ? active.job.error() : "");
      active.session = session;
      active.orphaned_since = absl::InfinitePast();
      adopted = Persist(active, previous).ok();
      if (adopted) {
        if (previous == Job::QUEUED) queue_.erase(KeyOf(before));
        if (before.session != 0 && workers_.count(before.session)) {
          workers_.at(before.session).job_id.clear();
        }
        worker.job_id = active.job.id();
      } else {
        active = before;
      }
    }
  }
  if (adopted) {
    LogInfo("worker ", hello.worker_id(), " resumed holding job ", hello.held_job_id());
    if (it->second.job.cancel_requested()) {
      // The first cancel may have gone down the stream that broke.
      SchedulerMessage cancel;
      cancel.mutable_cancel()->set_job_id(hello.held_job_id());
      cancel.mutable_cancel()->set_reason(it->second.job.error());
      worker.connection->Send(cancel);
    }
    return;
  }
  // The job moved on without this worker (requeued elsewhere, cancelled or
  // ended): its copy must stop.
  SchedulerMessage cancel;
  cancel.mutable_cancel()->set_job_id(hello.held_job_id());
  cancel.mutable_cancel()->set_reason("the job is no longer leased to this worker");
  worker.connection->Send(cancel);
}

void Scheduler::DisconnectWorker(int64_t session) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = workers_.find(session);
  if (it == workers_.end()) return;
  const std::string job_id = it->second.job_id;
  LogInfo("worker ", it->second.hello.worker_id(), " disconnected (session ", session, ")");
  workers_.erase(it);
  if (!job_id.empty()) {
    auto job = active_.find(job_id);
    if (job != active_.end() && job->second.session == session) {
      job->second.session = 0;
      job->second.orphaned_since = Now();
      if (job->second.job.cancel_requested()) EndJob(job->second, Job::CANCELLED, job->second.job.error());
    }
  }
  UpdateWorkerMetrics();
}

void Scheduler::CheckLeases(absl::Time now) {
  std::vector<std::shared_ptr<WorkerConnection>> to_close;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<int64_t> silent;
    for (const auto& [session, worker] : workers_) {
      if (now - worker.last_seen > options_.lease_timeout) silent.push_back(session);
    }
    for (int64_t session : silent) {
      WorkerState& worker = workers_.at(session);
      LogWarning("worker ", worker.hello.worker_id(), " silent for ",
                 absl::FormatDuration(now - worker.last_seen), "; dropping it");
      to_close.push_back(worker.connection);
      if (!worker.job_id.empty()) {
        auto job = active_.find(worker.job_id);
        if (job != active_.end() && job->second.session == session) {
          job->second.session = 0;
          job->second.orphaned_since = now - options_.lease_timeout;  // already a lease late
        }
      }
      workers_.erase(session);
    }
    std::vector<std::string> expired;
    for (auto& [id, active] : active_) {
      if (active.job.state() != Job::QUEUED && active.session == 0 &&
          now - active.orphaned_since >= options_.lease_timeout) {
        expired.push_back(id);
      }
    }
    for (const std::string& id : expired) {
      ActiveJob& active = active_.at(id);
      Requeue(active, absl::StrCat("worker ", active.job.worker_id(), " lost during attempt ",
                                   active.job.attempt()));
    }
    if (!silent.empty()) UpdateWorkerMetrics();
    // Also retries assignments that an earlier failure (a store error) left.
    Dispatch();
  }
  // Closing runs the transport's teardown, which takes mutex_: outside it.
  for (const std::shared_ptr<WorkerConnection>& connection : to_close) connection->Close();
}

Scheduler::ActiveJob* Scheduler::HeldJob(int64_t session, const std::string& job_id, int attempt) {
  auto it = active_.find(job_id);
  if (it == active_.end() || it->second.session != session || it->second.job.attempt() != attempt) {
    return nullptr;
  }
  return &it->second;
}

void Scheduler::HandleWorkerMessage(int64_t session, const tl::v1::WorkerMessage& message) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto worker = workers_.find(session);
  if (worker == workers_.end()) return;  // dropped for silence; its stream is closing
  worker->second.last_seen = Now();
  switch (message.message_case()) {
    case tl::v1::WorkerMessage::kStarted:
      OnStarted(session, message.started());
      break;
    case tl::v1::WorkerMessage::kEpoch:
      OnEpoch(session, message.epoch());
      break;
    case tl::v1::WorkerMessage::kProgress:
      OnProgress(session, message.progress());
      break;
    case tl::v1::WorkerMessage::kFinished:
      OnFinished(session, message.finished());
      break;
    case tl::v1::WorkerMessage::kHeartbeat:
    case tl::v1::WorkerMessage::kHello:
    case tl::v1::WorkerMessage::MESSAGE_NOT_SET:
      break;
  }
}

void Scheduler::OnStarted(int64_t session, const tl::v1::JobStarted& started) {
  ActiveJob* active = HeldJob(session, started.job_id(), started.attempt());
  if (active == nullptr) return;
  const Job::State previous = active->job.state();
  active->job.set_state(Job::RUNNING);
  if (!active->job.has_start_time()) *active->job.mutable_start_time() = ToTimestamp(Now());
  *active->job.mutable_result()->mutable_dataset() = started.dataset();
  Persist(*active, previous).IgnoreError();  // logged inside; the next report retries
}

void Scheduler::OnEpoch(int64_t session, const tl::v1::EpochReport& report) {
  ActiveJob* active = HeldJob(session, report.job_id(), report.metrics().attempt());
  if (active == nullptr) return;
  if (!store_.PutEpoch(report.job_id(), report.metrics()).ok()) {
    LogError("cannot store epoch ", report.metrics().epoch(), " of job ", report.job_id());
    return;
  }
  const Job::State previous = active->job.state();
  if (previous == Job::ASSIGNED) active->job.set_state(Job::RUNNING);  // its JobStarted was lost
  active->job.set_epoch(report.metrics().epoch());
  *active->job.mutable_result()->mutable_final_metrics() = report.metrics();
  metrics_.EpochFinished(report.job_id(), report.metrics());
  JobEvent event;
  *event.mutable_epoch() = report.metrics();
  Notify(report.job_id(), event);
  Persist(*active, previous).IgnoreError();
}

void Scheduler::OnProgress(int64_t session, const tl::v1::ProgressReport& report) {
  if (HeldJob(session, report.job_id(), report.attempt()) == nullptr) return;
  metrics_.Progressed(report.job_id(), report.progress());
  JobEvent event;
  *event.mutable_progress() = report.progress();
  Notify(report.job_id(), event);
}

void Scheduler::OnFinished(int64_t session, const tl::v1::JobFinished& finished) {
  WorkerState& worker = workers_.at(session);
  if (finished.outcome() != tl::v1::JobFinished::REFUSED && worker.refusing) {
    // Whatever kept it busy has ended.
    worker.refusing = false;
    Dispatch();
  }
  ActiveJob* active = HeldJob(session, finished.job_id(), finished.attempt());
  if (active == nullptr) return;
  if (finished.outcome() == tl::v1::JobFinished::REFUSED) {
    worker.refusing = true;
    worker.job_id.clear();
    active->job.set_attempt(active->job.attempt() - 1);  // this attempt never ran
    Requeue(*active, finished.error());
    UpdateWorkerMetrics();
    Dispatch();
    return;
  }
  tl::v1::JobResult result = finished.result();
  if (!result.has_dataset()) *result.mutable_dataset() = active->job.result().dataset();
  *active->job.mutable_result() = std::move(result);
  switch (finished.outcome()) {
    case tl::v1::JobFinished::SUCCEEDED:
      EndJob(*active, Job::SUCCEEDED, "");
      return;
    case tl::v1::JobFinished::CANCELLED:
      EndJob(*active, Job::CANCELLED,
             active->job.error().empty() ? finished.error() : active->job.error());
      return;
    case tl::v1::JobFinished::FAILED:
    default:
      EndJob(*active, Job::FAILED,
             finished.error().empty() ? "the worker reported a failure" : finished.error());
      return;
  }
}

}  // namespace tl::server
