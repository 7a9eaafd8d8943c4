#include "server/core/scheduler.h"

#include <filesystem>
#include <iterator>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/text.h"
#include "server/core/job_states.h"
#include "server/core/placement.h"
#include "server/spec/caller_text.h"
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

// Log lines one GetJobLogs call reads from the store before following.
constexpr int kMaxLogLinesReplayed = 100000;

// Watchers and log followers, by job id.
template <typename Subscriber>
using Subscribers = std::map<std::string, std::vector<std::shared_ptr<Subscriber>>>;

// Hands something to each subscriber of a job through `deliver`, which says whether the
// subscriber took it. One that has gone away is dropped here rather than by its stream, so
// that streams never need the scheduler's lock.
template <typename Subscriber, typename Deliver>
void DeliverOrDrop(Subscribers<Subscriber>& by_job, const std::string& job_id, Deliver deliver) {
  auto it = by_job.find(job_id);
  if (it == by_job.end()) return;
  std::vector<std::shared_ptr<Subscriber>>& list = it->second;
  list.erase(std::remove_if(list.begin(), list.end(),
                            [&](const std::shared_ptr<Subscriber>& subscriber) {
                              return !deliver(*subscriber);
                            }),
             list.end());
  if (list.empty()) by_job.erase(it);
}

// The job has ended: its subscribers are finished and forgotten.
template <typename Subscriber>
void FinishAll(Subscribers<Subscriber>& by_job, const std::string& job_id) {
  auto it = by_job.find(job_id);
  if (it == by_job.end()) return;
  for (const std::shared_ptr<Subscriber>& subscriber : it->second) subscriber->Finish();
  by_job.erase(it);
}

// The server goes away: every subscriber is told to come back, and forgotten.
template <typename Subscriber>
void InterruptAll(Subscribers<Subscriber>& by_job) {
  for (auto& [job_id, list] : by_job) {
    for (const std::shared_ptr<Subscriber>& subscriber : list) subscriber->Interrupt();
  }
  by_job.clear();
}

// A watcher that asked for the events after `after_sequence`: numbered events at or below it
// are not delivered, whether replayed from the store or live. Progress has no number and
// always goes through.
class EventsAfter final : public JobWatcher {
 public:
  EventsAfter(std::shared_ptr<JobWatcher> watcher, int64_t after_sequence)
      : watcher_(std::move(watcher)), after_sequence_(after_sequence) {}
  bool Deliver(const JobEvent& event) override {
    // A watcher whose client left is dropped even when it is handed nothing.
    if (!event.has_progress() && event.sequence() <= after_sequence_) return !watcher_->Gone();
    return watcher_->Deliver(event);
  }
  bool Gone() const override { return watcher_->Gone(); }
  void Finish() override { watcher_->Finish(); }
  void Interrupt() override { watcher_->Interrupt(); }

 private:
  const std::shared_ptr<JobWatcher> watcher_;
  const int64_t after_sequence_;
};

bool Waiting(Job::State state) { return state == Job::QUEUED || state == Job::PAUSED; }
bool HoldsWorker(Job::State state) { return state == Job::ASSIGNED || state == Job::RUNNING; }

// Rows stored before the text bounds held may carry an error (a cancel reason) of megabytes.
void ClipStoredText(Job& job) {
  if (job.error().size() > kMaxWorkerErrorBytes) {
    job.set_error(ClipUtf8(job.error(), kMaxWorkerErrorBytes));
  }
}

// The first path in a worker's result that does not name a file inside the job's own folder of
// the artifact root ("<job id>/..."), with its field; empty when every one does. Later jobs open
// these paths (backbone.from_job, evaluate.from_job) and people download them: a worker may
// not point them anywhere else.
std::string PathOutsideJobFolder(const tl::v1::JobResult& result, const std::string& job_id) {
  const std::pair<const char*, const std::string*> paths[] = {
      {"model_path", &result.model_path()},
      {"model_info_path", &result.model_info_path()},
      {"backbone_path", &result.backbone_path()},
      {"metrics_path", &result.metrics_path()},
      {"report_path", &result.report_path()},
      {"confusion_matrix_path", &result.confusion_matrix_path()},
  };
  for (const auto& [field, path] : paths) {
    if (path->empty()) continue;
    const std::filesystem::path normal = std::filesystem::path(*path).lexically_normal();
    bool inside = normal.is_relative() && normal.begin() != normal.end() &&
                  *normal.begin() == job_id && std::distance(normal.begin(), normal.end()) > 1;
    for (const std::filesystem::path& part : normal) inside = inside && part != "..";
    if (!inside) return absl::StrCat(field, " \"", absl::CHexEscape(ClipUtf8(*path, 256)), "\"");
  }
  return "";
}

bool SharedWith(const Job& job, const std::string& name) {
  for (const std::string& reader : job.spec().share_with()) {
    if (reader == "*" || reader == name) return true;
  }
  return false;
}

}  // namespace

Scheduler::Scheduler(JobStore& store, ServerMetrics& metrics, SchedulerOptions options)
    : store_(store), metrics_(metrics), options_(std::move(options)) {
  spec_context_.data_root = options_.data_root;
  spec_context_.artifact_root = options_.artifact_root;
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
      store_.JobsInStates({Job::QUEUED, Job::ASSIGNED, Job::RUNNING, Job::PAUSED});
  if (!jobs.ok()) return jobs.status();
  size_t queued = 0;
  for (Job& job : *jobs) {
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
  LogInfo("recovered ", queued, " queued and ", jobs->size() - queued, " leased jobs");

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
  Job& job = active.job;
  *job.mutable_update_time() = ToTimestamp(Now());
  job.clear_pending_reason();
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
  *changed.mutable_job() = job;
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
  if (absl::Status status = Persist(next, from, epoch); !status.ok()) return status;
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

absl::StatusOr<Job> Scheduler::SubmitJob(const tl::v1::JobSpec& spec, const std::string& owner,
                                          const std::string& request_id,
                                          const Principal& caller) {
  if (request_id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("request_id is ", request_id.size(),
                                                   " bytes long; at most ", kMaxRequestIdBytes,
                                                   " are allowed"));
  }
  if (absl::Status status = CheckCallerText("owner", owner, kMaxOwnerCharacters); !status.ok()) {
    return status;
  }
  SpecContext context = spec_context_;
  context.find_job = [this, caller](const std::string& job_id) {
    return UsableSourceJob(job_id, caller);
  };
  // Validation reads the file system; it runs before the lock is taken.
  absl::StatusOr<tl::v1::JobSpec> validated = ValidateJobSpec(spec, context);
  if (!validated.ok()) return validated.status();
  PendingSubmit mine{*std::move(validated), owner.empty() ? "anonymous" : owner, request_id};
  // Group commit: whoever finds no commit in progress takes every submit queued so far and
  // stores them in one transaction (one sync to disk); the others wait for it. Under load
  // the batches grow by themselves, and a lone submit is committed at once.
  std::unique_lock<std::mutex> lock(submit_mutex_);
  submit_queue_.push_back(&mine);
  while (!mine.done) {
    if (submit_leader_active_) {
      submit_done_.wait(lock);
      continue;
    }
    submit_leader_active_ = true;
    std::vector<PendingSubmit*> batch;
    batch.swap(submit_queue_);
    lock.unlock();
    CommitSubmits(batch);
    lock.lock();
    for (PendingSubmit* pending : batch) pending->done = true;
    submit_leader_active_ = false;
    submit_done_.notify_all();
  }
  return std::move(mine.result);
}

void Scheduler::CommitSubmits(const std::vector<PendingSubmit*>& batch) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<JobStore::NewJob> to_create;
  std::vector<PendingSubmit*> creators;
  std::map<std::pair<std::string, std::string>, PendingSubmit*> first_with_request_id;
  std::vector<std::pair<PendingSubmit*, PendingSubmit*>> repeats;  // (repeat, first)
  std::map<std::string, int64_t> new_waiting;  // per owner, in this batch
  const absl::Time now = Now();
  for (PendingSubmit* pending : batch) {
    if (draining_) {
      pending->result = absl::UnavailableError("the server is shutting down; submit again later");
      continue;
    }
    if (!pending->request_id.empty()) {
      const auto key = std::make_pair(pending->owner, pending->request_id);
      auto first = first_with_request_id.find(key);
      if (first != first_with_request_id.end()) {
        repeats.emplace_back(pending, first->second);
        continue;
      }
      absl::StatusOr<std::optional<Job>> earlier =
          store_.FindByRequestId(pending->owner, pending->request_id);
      if (!earlier.ok()) {
        pending->result = earlier.status();
        continue;
      }
      if (earlier->has_value()) {
        const Job& job = **earlier;
        if (job.spec().SerializeAsString() != pending->spec.SerializeAsString()) {
          pending->result = absl::AlreadyExistsError(
              absl::StrCat("request_id \"", pending->request_id, "\" already created job ",
                           job.id(), " with a different spec"));
        } else {
          auto active = active_.find(job.id());
          pending->result = active != active_.end() ? active->second.job : job;
        }
        continue;
      }
      first_with_request_id.emplace(key, pending);
    }
    if (options_.max_queued_per_owner > 0) {
      auto load = owner_loads_.find(pending->owner);
      const int64_t waiting =
          (load == owner_loads_.end() ? 0 : load->second.waiting) + new_waiting[pending->owner];
      if (waiting >= options_.max_queued_per_owner) {
        pending->result = absl::ResourceExhaustedError(
            absl::StrCat("owner ", pending->owner, " already has ", waiting,
                         " waiting jobs (the limit is ", options_.max_queued_per_owner, ")"));
        continue;
      }
    }
    ++new_waiting[pending->owner];
    to_create.push_back({pending->spec, pending->owner, pending->request_id, now});
    creators.push_back(pending);
  }
  if (!to_create.empty()) {
    absl::StatusOr<std::vector<Job>> created = store_.CreateJobs(to_create);
    for (size_t i = 0; i < creators.size(); ++i) {
      if (!created.ok()) {
        creators[i]->result = created.status();
        continue;
      }
      Job& job = (*created)[i];
      metrics_.JobSubmitted();
      metrics_.SetJobsInState(Job::QUEUED, ++state_counts_[Job::QUEUED]);
      CountStateChange(job.owner(), Job::STATE_UNSPECIFIED, Job::QUEUED);
      ActiveJob active{job, next_queue_order_++};
      queue_.insert(KeyOf(active));
      active_.emplace(job.id(), std::move(active));
      LogInfo("job ", job.id(), " queued (", job.spec().name(), ", owner ", job.owner(), ")");
      creators[i]->result = std::move(job);
    }
    if (created.ok()) Dispatch();
  }
  for (auto& [repeat, first] : repeats) {
    if (first->result.ok() &&
        first->spec.SerializeAsString() != repeat->spec.SerializeAsString()) {
      repeat->result = absl::AlreadyExistsError(
          absl::StrCat("request_id \"", repeat->request_id, "\" already created job ",
                       first->result->id(), " with a different spec"));
    } else {
      repeat->result = first->result;
    }
  }
}

absl::StatusOr<Job> Scheduler::UsableSourceJob(const std::string& job_id,
                                               const Principal& caller) {
  absl::StatusOr<Job> job = store_.GetJob(job_id);
  if (caller.SeesEveryJob()) return job;
  // A store failure is not an answer about the job; only "no such job" reads as "not yours".
  if (!job.ok() && job.status().code() != absl::StatusCode::kNotFound) return job.status();
  if (!job.ok() || (job->owner() != caller.name && !SharedWith(*job, caller.name))) {
    return absl::PermissionDeniedError(absl::StrCat("job \"", absl::CHexEscape(job_id),
                                                    "\" does not exist or is not shared with ",
                                                    caller.name));
  }
  return job;
}

absl::StatusOr<Job> Scheduler::VisibleJob(const std::string& job_id, const Principal& caller) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id is empty");
  Job job;
  auto it = active_.find(job_id);
  if (it != active_.end()) {
    job = it->second.job;
    if (job.state() == Job::QUEUED) job.set_pending_reason(PendingReason(it->second));
  } else {
    absl::StatusOr<Job> stored = store_.GetJob(job_id);
    if (!stored.ok()) return stored.status();
    job = *std::move(stored);
  }
  if (!caller.SeesEveryJob() && job.owner() != caller.name) return JobNotFound(job_id);
  ClipStoredText(job);
  return job;
}

absl::StatusOr<Scheduler::ActiveJob*> Scheduler::UnendedJob(const std::string& job_id,
                                                             const Principal& caller) {
  absl::StatusOr<Job> visible = VisibleJob(job_id, caller);
  if (!visible.ok()) return visible.status();
  auto it = active_.find(job_id);
  if (it == active_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " has already ended (", Job::State_Name(visible->state()), ")"));
  }
  return &it->second;
}

absl::StatusOr<Job> Scheduler::GetJob(const std::string& job_id, const Principal& caller) {
  std::lock_guard<std::mutex> lock(mutex_);
  return VisibleJob(job_id, caller);
}

absl::StatusOr<JobStore::Page> Scheduler::ListJobs(const std::vector<Job::State>& states,
                                                   int page_size, const std::string& page_token,
                                                   const std::string& owner,
                                                   const Principal& caller) {
  if (!caller.SeesEveryJob() && !owner.empty() && owner != caller.name) {
    return absl::PermissionDeniedError(
        absl::StrCat("owner ", owner, ": a user lists only its own jobs"));
  }
  const std::string owner_filter = caller.SeesEveryJob() ? owner : caller.name;
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
  absl::StatusOr<JobStore::Page> page = store_.ListJobs(states, page_size, page_token,
                                                        owner_filter,
                                                        options_.max_list_reply_bytes);
  if (page.ok()) {
    for (Job& job : page->jobs) ClipStoredText(job);
  }
  return page;
}

absl::StatusOr<Job> Scheduler::CancelJob(const std::string& job_id, const std::string& reason,
                                          const Principal& caller) {
  if (absl::Status status = CheckCallerText("reason", reason, kMaxReasonCharacters);
      !status.ok()) {
    return status;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  absl::StatusOr<ActiveJob*> found = UnendedJob(job_id, caller);
  if (!found.ok()) return found.status();
  ActiveJob& active = **found;
  const std::string why = reason.empty() ? "cancelled on request" : reason;
  if (!HoldsWorker(active.job.state()) || active.session == 0) {
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
  absl::Status status = Update(active, [&](ActiveJob& next) {
    next.job.set_cancel_requested(true);
    next.job.set_error(why);
  });
  if (!status.ok()) return status;
  SchedulerMessage message;
  message.mutable_cancel()->set_job_id(job_id);
  message.mutable_cancel()->set_reason(why);
  workers_.at(active.session).connection->Send(message);
  SendToReplicas(active, message);
  LogInfo("job ", job_id, " cancel sent to worker ", active.job.worker_id());
  return active.job;
}

absl::StatusOr<Job> Scheduler::PauseJob(const std::string& job_id, const Principal& caller) {
  std::lock_guard<std::mutex> lock(mutex_);
  absl::StatusOr<ActiveJob*> found = UnendedJob(job_id, caller);
  if (!found.ok()) return found.status();
  ActiveJob& active = **found;
  if (active.job.state() == Job::PAUSED || active.job.pause_requested()) return active.job;
  if (active.job.cancel_requested()) {
    return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " is being cancelled"));
  }
  if (active.job.state() == Job::QUEUED) {
    absl::Status status =
        Update(active, [](ActiveJob& next) { next.job.set_state(Job::PAUSED); });
    if (!status.ok()) return status;
    queue_.erase(KeyOf(active));
    LogInfo("job ", job_id, " paused while queued");
    return active.job;
  }
  absl::Status status =
      Update(active, [](ActiveJob& next) { next.job.set_pause_requested(true); });
  if (!status.ok()) return status;
  // A job without a worker right now (its worker is reconnecting) gets the message when the
  // worker comes back, or pauses instead of requeuing when the lease runs out.
  if (active.session != 0) {
    SchedulerMessage message;
    message.mutable_pause()->set_job_id(job_id);
    workers_.at(active.session).connection->Send(message);
    SendToReplicas(active, message);
  }
  LogInfo("job ", job_id, " pause requested");
  return active.job;
}

absl::StatusOr<Job> Scheduler::ResumeJob(const std::string& job_id, const Principal& caller) {
  std::lock_guard<std::mutex> lock(mutex_);
  absl::StatusOr<Job> visible = VisibleJob(job_id, caller);
  if (!visible.ok()) return visible.status();
  auto it = active_.find(job_id);
  if (it == active_.end() || it->second.job.state() != Job::PAUSED) {
    return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " is ",
                                                      Job::State_Name(visible->state()),
                                                      "; only a PAUSED job can be resumed"));
  }
  ActiveJob& active = it->second;
  absl::Status status = Update(active, [](ActiveJob& next) { next.job.set_state(Job::QUEUED); });
  if (!status.ok()) return status;
  // Its submission order is kept: a resumed job does not lose its place to later ones.
  queue_.insert(KeyOf(active));
  LogInfo("job ", job_id, " resumed");
  Dispatch();
  return active.job;
}

absl::Status Scheduler::WatchJob(const std::string& job_id, std::shared_ptr<JobWatcher> watcher,
                                 int64_t after_sequence, const Principal& caller) {
  if (after_sequence < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("after_sequence is ", after_sequence, "; it must not be negative"));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  absl::StatusOr<Job> job = VisibleJob(job_id, caller);
  if (!job.ok()) return job.status();
  // Every stored event is committed before it is notified, and both happen under this lock:
  // reading and registering under it too means no event is missed or sent twice.
  absl::StatusOr<std::vector<JobEvent>> events = store_.GetEvents(job_id, after_sequence);
  if (!events.ok()) return events.status();
  watcher = std::make_shared<EventsAfter>(std::move(watcher), after_sequence);
  for (const JobEvent& event : *events) {
    if (!watcher->Deliver(event)) return absl::OkStatus();  // gone already
  }
  if (IsTerminal(job->state())) {
    watcher->Finish();
  } else {
    watchers_[job_id].push_back(std::move(watcher));
  }
  return absl::OkStatus();
}

absl::Status Scheduler::GetJobLogs(const std::string& job_id, int64_t after_sequence,
                                   bool follow, std::shared_ptr<LogFollower> follower,
                                   const Principal& caller) {
  std::lock_guard<std::mutex> lock(mutex_);
  absl::StatusOr<Job> job = VisibleJob(job_id, caller);
  if (!job.ok()) return job.status();
  absl::StatusOr<std::vector<tl::v1::LogLine>> lines =
      store_.GetLogs(job_id, after_sequence, kMaxLogLinesReplayed);
  if (!lines.ok()) return lines.status();
  for (const tl::v1::LogLine& line : *lines) follower->Deliver(line);
  if (!follow || IsTerminal(job->state())) {
    follower->Finish();
  } else {
    log_followers_[job_id].push_back(std::move(follower));
  }
  return absl::OkStatus();
}

void Scheduler::EndJob(ActiveJob& active, Job::State state, std::string error,
                       int failures) {
  const absl::Status status = Update(active, [&](ActiveJob& next) {
    next.job.set_state(state);
    next.job.set_error(ClipUtf8(error, kMaxWorkerErrorBytes));
    *next.job.mutable_end_time() = ToTimestamp(Now());
    if (failures >= 0) next.job.set_failures(failures);
  });
  // Not stored: the job stays active, exactly as it was, so that a later event ends it again.
  if (!status.ok()) return;
  const Job& job = active.job;
  metrics_.JobFinished(job);
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
  for (const auto& [session, worker] : workers_) {
    any_fits = any_fits || WorkerFits(worker.hello, active.job.spec().resources());
  }
  if (workers_.empty()) return "no worker is connected";
  if (!any_fits) {
    return absl::StrCat("no connected worker offers ",
                        DescribeResources(active.job.spec().resources()));
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
    workers.push_back({session, &worker.hello, worker.job_id.empty() && !worker.busy_elsewhere});
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
    std::vector<const Job*> queue;
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
  const Job& job = active.job;
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
  const bool gang = sessions.size() > 1;
  const WorkerState& rank_zero = workers_.at(sessions.front());
  if (gang) {
    assignment.set_replica_count(static_cast<int32_t>(sessions.size()));
    assignment.set_rendezvous_host(rank_zero.hello.replica_address());
    assignment.set_rendezvous_port(rank_zero.hello.rendezvous_port());
    // A new prefix per attempt: keys a stopped gang left in a store never meet the next one.
    assignment.set_rendezvous_key(absl::StrCat(job.id(), "/", assignment.attempt()));
  }

  const Job waiting = job;  // its update time says since when it waited
  absl::Status status = Update(active, [&](ActiveJob& next) {
    next.job.set_state(Job::ASSIGNED);
    next.job.set_attempt(assignment.attempt());
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
  metrics_.JobAssigned(waiting);
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

absl::StatusOr<int64_t> Scheduler::ConnectWorker(const tl::v1::WorkerHello& announced,
                                                 std::shared_ptr<WorkerConnection> connection,
                                                 const Principal& credential) {
  tl::v1::WorkerMessage bounded;
  *bounded.mutable_hello() = announced;
  BoundWorkerReport(bounded);
  const tl::v1::WorkerHello& hello = bounded.hello();
  if (hello.worker_id().empty()) {
    return absl::InvalidArgumentError("hello.worker_id is empty");
  }
  if (absl::Status status =
          CheckCallerText("hello.worker_id", hello.worker_id(), kMaxOwnerCharacters);
      !status.ok()) {
    return status;
  }
  if (!credential.MayConnectAsWorker(hello.worker_id())) {
    LogWarning("refused worker id ", hello.worker_id(), " to principal ", credential.name);
    return absl::PermissionDeniedError(
        absl::StrCat("hello.worker_id: principal ", credential.name, " may not connect as worker ",
                     hello.worker_id(), "; its token names the worker ids it may use"));
  }
  std::vector<std::shared_ptr<WorkerConnection>> replaced;
  absl::StatusOr<int64_t> result =
      ConnectWorkerLocked(hello, std::move(connection), credential, &replaced);
  // A worker's earlier stream that the scheduler had not yet seen die is
  // closed now, outside the lock (its teardown takes the lock).
  for (const std::shared_ptr<WorkerConnection>& old : replaced) {
    old->Close(absl::StrCat("a newer session of worker ", hello.worker_id(), " replaced this one"));
  }
  return result;
}

absl::StatusOr<int64_t> Scheduler::ConnectWorkerLocked(
    const tl::v1::WorkerHello& hello, std::shared_ptr<WorkerConnection> connection,
    const Principal& credential, std::vector<std::shared_ptr<WorkerConnection>>* replaced) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Only the credential a live session came with may replace it: another one (a leaked token
  // whose worker ids overlap) would take over that worker's job and report for it.
  for (const auto& [session, worker] : workers_) {
    if (worker.hello.worker_id() == hello.worker_id() && worker.credential != credential.name) {
      LogWarning("refused a second session of worker ", hello.worker_id(), " from principal ",
                 credential.name, "; its live session came from ", worker.credential);
      return absl::AlreadyExistsError(absl::StrCat(
          "worker ", hello.worker_id(), " is connected with another credential; try again "
          "once that session has ended"));
    }
  }
  // Two sessions of one worker cannot both be live: the older one is a
  // stream that broke without the scheduler noticing yet. Left registered it
  // would look idle and take assignments into a dead stream.
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->second.hello.worker_id() != hello.worker_id()) {
      ++it;
      continue;
    }
    DetachSession(it->first, it->second.job_id, Now());
    replaced->push_back(it->second.connection);
    it = workers_.erase(it);
  }
  const int64_t session = next_session_++;
  WorkerState& worker = workers_[session];
  worker.hello = hello;
  worker.credential = credential.name;
  worker.connection = std::move(connection);
  worker.last_seen = Now();
  metrics_.WorkerSeen(hello.worker_id());
  SchedulerMessage welcome;
  welcome.mutable_welcome()->set_heartbeat_interval_ms(
      static_cast<int32_t>(absl::ToInt64Milliseconds(options_.heartbeat_interval)));
  welcome.mutable_welcome()->set_lease_timeout_ms(
      static_cast<int32_t>(absl::ToInt64Milliseconds(options_.lease_timeout)));
  welcome.mutable_welcome()->set_answers_heartbeats(true);
  if (auto held = active_.find(hello.held_job_id());
      !hello.held_job_id().empty() && held != active_.end() &&
      held->second.job.attempt() == hello.held_attempt()) {
    welcome.mutable_welcome()->set_held_job_epoch(held->second.job.epoch());
  }
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
  // A job that was paused meanwhile stays paused: the worker's copy stops.
  if (it != active_.end() && Replicas(it->second.job) > 1) {
    adopted = RejoinGang(session, worker, it->second);
  } else if (it != active_.end() && it->second.job.attempt() == hello.held_attempt() &&
             it->second.job.state() != Job::PAUSED) {
    ActiveJob& active = it->second;
    // Only the worker the attempt was given to claims it back, and only while no live session
    // of another worker holds it.
    const bool held_by_gone_or_same_worker =
        active.session == 0 || workers_.count(active.session) == 0 ||
        workers_.at(active.session).hello.worker_id() == hello.worker_id();
    if (held_by_gone_or_same_worker && active.leased_to == hello.worker_id()) {
      const int64_t previous_session = active.session;
      const bool was_queued = active.job.state() == Job::QUEUED;
      adopted = Update(active, [&](ActiveJob& next) {
                  if (was_queued) next.job.set_state(Job::RUNNING);
                  next.job.set_worker_id(hello.worker_id());
                  if (!next.job.cancel_requested()) next.job.set_error("");
                  next.session = session;
                  next.orphaned_since = absl::InfinitePast();
                }).ok();
      if (adopted) {
        if (was_queued) queue_.erase(KeyOf(active));
        if (previous_session != 0 && workers_.count(previous_session)) {
          workers_.at(previous_session).job_id.clear();
        }
        worker.job_id = active.job.id();
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
    } else if (it->second.job.pause_requested()) {
      SchedulerMessage pause;
      pause.mutable_pause()->set_job_id(hello.held_job_id());
      worker.connection->Send(pause);
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
  metrics_.WorkerGone(it->second.hello.worker_id());
  workers_.erase(it);
  ActiveJob* orphaned = DetachSession(session, job_id, Now());
  if (orphaned != nullptr && orphaned->job.cancel_requested()) {
    EndJob(*orphaned, Job::CANCELLED, orphaned->job.error());
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
      metrics_.WorkerGone(worker.hello.worker_id());
      DetachSession(session, worker.job_id, now - options_.lease_timeout);  // a lease late already
      workers_.erase(session);
    }
    std::vector<std::string> expired;
    for (auto& [id, active] : active_) {
      // Only a job that holds a worker can lose it; a paused one waits for ResumeJob.
      if (HoldsWorker(active.job.state()) && active.session == 0 &&
          now - active.orphaned_since >= options_.lease_timeout) {
        expired.push_back(id);
      }
    }
    for (const std::string& id : expired) {
      ActiveJob& active = active_.at(id);
      Requeue(active,
              absl::StrCat("worker ", active.job.worker_id(), " lost during attempt ",
                           active.job.attempt()),
              /*counts_as_failure=*/true);
    }
    if (!silent.empty()) UpdateWorkerMetrics();
    // Also retries assignments that an earlier failure (a store error) left.
    Dispatch();
  }
  // Closing runs the transport's teardown, which takes mutex_: outside it.
  for (const std::shared_ptr<WorkerConnection>& connection : to_close) {
    connection->Close(
        "no heartbeat or other message from the worker within the lease; reconnect");
  }
}

Scheduler::ActiveJob* Scheduler::DetachSession(int64_t session, const std::string& job_id,
                                              absl::Time orphaned_since) {
  auto it = active_.find(job_id);
  if (job_id.empty() || it == active_.end()) return nullptr;
  ActiveJob& active = it->second;
  // A rank > 0 leaves its gang; its peers find out through their process group.
  active.replica_sessions.erase(session);
  if (active.session != session) return nullptr;
  active.session = 0;
  active.orphaned_since = orphaned_since;
  return &active;
}

Scheduler::ActiveJob* Scheduler::HeldJob(int64_t session, const std::string& job_id, int attempt) {
  auto it = active_.find(job_id);
  if (it == active_.end() || it->second.session != session || it->second.job.attempt() != attempt) {
    return nullptr;
  }
  return &it->second;
}

void Scheduler::HandleWorkerMessage(int64_t session, const tl::v1::WorkerMessage& reported) {
  // Everything a worker says is bounded before anything stores, logs or forwards it.
  tl::v1::WorkerMessage message = reported;
  const std::string cut = BoundWorkerReport(message);
  std::lock_guard<std::mutex> lock(mutex_);
  auto worker = workers_.find(session);
  if (worker == workers_.end()) return;  // dropped for silence; its stream is closing
  if (!cut.empty()) LogWarning("worker ", worker->second.hello.worker_id(), ": ", cut);
  worker->second.last_seen = Now();
  metrics_.WorkerSeen(worker->second.hello.worker_id());
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
    case tl::v1::WorkerMessage::kLog:
      OnLog(session, message.log());
      break;
    case tl::v1::WorkerMessage::kHeartbeat: {
      SchedulerMessage answer;
      answer.mutable_heartbeat();
      worker->second.connection->Send(answer);
      break;
    }
    case tl::v1::WorkerMessage::kHello:
    case tl::v1::WorkerMessage::MESSAGE_NOT_SET:
      break;
  }
}

void Scheduler::OnStarted(int64_t session, const tl::v1::JobStarted& started) {
  ActiveJob* active = HeldJob(session, started.job_id(), started.attempt());
  if (active == nullptr) return;
  Update(*active, [&](ActiveJob& next) {
    next.job.set_state(Job::RUNNING);
    if (!next.job.has_start_time()) *next.job.mutable_start_time() = ToTimestamp(Now());
    *next.job.mutable_result()->mutable_dataset() = started.dataset();
  }).IgnoreError();  // logged inside; its first epoch makes it RUNNING
}

void Scheduler::OnEpoch(int64_t session, const tl::v1::EpochReport& report) {
  ActiveJob* active = HeldJob(session, report.job_id(), report.metrics().attempt());
  if (active == nullptr) return;
  if (report.metrics().epoch() <= active->job.epoch() && IsStoredEpoch(report)) {
    // A resumed attempt reports the epochs of its checkpoint again, with the figures the
    // earlier attempt measured: they are stored already, and stored once.
    return;
  }
  // The epoch row, its event and the job's new row in one transaction.
  const absl::Status status = Update(
      *active,
      [&](ActiveJob& next) {
        // Its JobStarted was lost.
        if (next.job.state() == Job::ASSIGNED) next.job.set_state(Job::RUNNING);
        // An epoch sent again after a reconnect may arrive after later ones.
        if (report.metrics().epoch() >= next.job.epoch()) {
          next.job.set_epoch(report.metrics().epoch());
          *next.job.mutable_result()->mutable_final_metrics() = report.metrics();
          // Gauges before the event goes out: whoever hears of the epoch can scrape it at once.
          metrics_.EpochFinished(report.job_id(), report.metrics());
        }
      },
      &report.metrics());
  if (!status.ok()) {
    LogError("cannot store epoch ", report.metrics().epoch(), " of job ", report.job_id());
  }
}

bool Scheduler::IsStoredEpoch(const tl::v1::EpochReport& report) {
  absl::StatusOr<std::optional<tl::v1::EpochMetrics>> stored =
      store_.GetEpoch(report.job_id(), report.metrics().epoch());
  if (!stored.ok() || !stored->has_value()) return false;
  tl::v1::EpochMetrics metrics = **stored;
  // The attempt that reports it differs; every figure must not.
  metrics.set_attempt(report.metrics().attempt());
  return metrics.SerializeAsString() == report.metrics().SerializeAsString();
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
  if (finished.outcome() != tl::v1::JobFinished::REFUSED && worker.busy_elsewhere) {
    // Whatever kept it busy has ended.
    worker.busy_elsewhere = false;
    Dispatch();
  }
  ActiveJob* active = HeldJob(session, finished.job_id(), finished.attempt());
  if (active == nullptr) {
    ActiveJob* replica_of = ReplicaJob(session, finished.job_id(), finished.attempt());
    if (replica_of != nullptr) OnReplicaFinished(session, *replica_of, finished);
    return;
  }
  if (finished.outcome() == tl::v1::JobFinished::REFUSED) {
    worker.busy_elsewhere = true;
    worker.job_id.clear();
    active->job.set_attempt(active->job.attempt() - 1);  // this attempt never ran
    Requeue(*active, finished.error(), /*counts_as_failure=*/false);
    UpdateWorkerMetrics();
    Dispatch();
    return;
  }
  if (finished.outcome() == tl::v1::JobFinished::PAUSED) {
    PauseStopped(*active);
    return;
  }
  if (finished.outcome() == tl::v1::JobFinished::FAILED && finished.retryable()) {
    Requeue(*active,
            finished.error().empty() ? "the trainer failed"
                                     : ClipUtf8(finished.error(), kMaxWorkerErrorBytes),
            /*counts_as_failure=*/true);
    UpdateWorkerMetrics();
    Dispatch();
    return;
  }
  if (const std::string outside = PathOutsideJobFolder(finished.result(), finished.job_id());
      !outside.empty()) {
    // Not the spec's fault and maybe not every worker's: another attempt may go elsewhere.
    LogWarning("worker ", worker.hello.worker_id(), " reported ", outside, " for job ",
               finished.job_id(), ", outside the job's folder; its result is refused");
    Requeue(*active,
            absl::StrCat("worker ", worker.hello.worker_id(), " reported ", outside,
                         ", outside the job's folder ", finished.job_id(), "/"),
            /*counts_as_failure=*/true);
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
             active->job.error().empty() ? ClipUtf8(finished.error(), kMaxWorkerErrorBytes)
                                         : active->job.error());
      return;
    case tl::v1::JobFinished::FAILED:
    default:
      EndJob(*active, Job::FAILED,
             finished.error().empty() ? "the worker reported a failure"
                                      : ClipUtf8(finished.error(), kMaxWorkerErrorBytes));
      return;
  }
}

void Scheduler::OnLog(int64_t session, const tl::v1::JobLog& log) {
  // Every rank of a gang logs; only rank 0 reports epochs.
  if (HeldJob(session, log.job_id(), log.attempt()) == nullptr &&
      ReplicaJob(session, log.job_id(), log.attempt()) == nullptr) {
    return;
  }
  std::vector<tl::v1::LogLine> lines(log.lines().begin(), log.lines().end());
  const std::string& worker_id = workers_.at(session).hello.worker_id();
  for (tl::v1::LogLine& line : lines) {
    line.set_worker_id(worker_id);
    line.set_attempt(log.attempt());
    if (line.text().size() > kMaxLogLineBytes) line.set_text(ClipUtf8(line.text(), kMaxLogLineBytes));
  }
  absl::StatusOr<std::vector<tl::v1::LogLine>> stored =
      store_.AppendLogs(log.job_id(), lines, options_.max_log_lines_per_job);
  if (!stored.ok()) {
    LogError("cannot store log lines of job ", log.job_id(), ": ", stored.status().ToString());
    return;
  }
  DeliverOrDrop(log_followers_, log.job_id(), [&](LogFollower& follower) {
    for (const tl::v1::LogLine& line : *stored) {
      if (!follower.Deliver(line)) return false;
    }
    return true;
  });
}

}  // namespace tl::server
