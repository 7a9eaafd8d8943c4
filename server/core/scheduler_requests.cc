// The JobService side of the scheduler: submissions (validated, then stored
// in group commits), reading, listing, cancelling, pausing, resuming,
// watching and following logs, each for a caller it may serve.
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
#include "server/record/job_view.h"
#include "server/spec/caller_text.h"
#include "server/spec/spec_defaults.h"

namespace tl::server {
namespace {

using ::tl::v1::Job;
using ::tl::v1::JobEvent;
using ::tl::v1::SchedulerMessage;
using scheduler_internal::HoldsWorker;
using scheduler_internal::SweepResultJobId;

// Log lines one GetJobLogs call reads from the store before following.
constexpr int kMaxLogLinesReplayed = 100000;

// Rows stored before the text bounds held may carry an error (a cancel reason) of megabytes.
void ClipStoredText(Job& job) {
  if (job.error().size() > kMaxWorkerErrorBytes) {
    job.set_error(ClipUtf8(job.error(), kMaxWorkerErrorBytes));
  }
}

bool SharedWith(const JobRecord& job, const std::string& name) {
  for (const std::string& reader : job.spec().share_with()) {
    if (reader == "*" || reader == name) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<Job> Scheduler::SubmitJob(const tl::v1::JobSpec& spec, const std::string& owner,
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
  TL_ASSIGN_OR_RETURN(tl::v1::JobSpec validated, ValidateJobSpec(spec, context));
  PendingSubmit mine{std::move(validated), owner.empty() ? "anonymous" : owner, request_id,
                     spec.backbone().from_job()};
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
      absl::StatusOr<std::optional<JobRecord>> earlier =
          store_.FindByRequestId(pending->owner, pending->request_id);
      if (!earlier.ok()) {
        pending->result = earlier.status();
        continue;
      }
      if (earlier->has_value()) {
        const JobRecord& job = **earlier;
        // A job that has started holds what its worker sized from the data in
        // its spec: the repeat, sized alike, must match it.
        tl::v1::JobSpec repeated = pending->spec;
        if (job.result().has_data_sizing()) FillSizedFields(job.result().data_sizing(), repeated);
        if (!SameSubmission(job.spec(), repeated, pending->backbone_source)) {
          pending->result = absl::AlreadyExistsError(
              absl::StrCat("request_id \"", pending->request_id, "\" already created job ",
                           job.id(), " with a different spec"));
        } else {
          auto active = active_.find(job.id());
          pending->result = ToApiJob(active != active_.end() ? active->second.job : job);
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
    absl::StatusOr<std::vector<JobRecord>> created = store_.CreateJobs(to_create);
    for (size_t i = 0; i < creators.size(); ++i) {
      if (!created.ok()) {
        creators[i]->result = created.status();
        continue;
      }
      JobRecord& job = (*created)[i];
      metrics_.JobSubmitted();
      metrics_.SetJobsInState(Job::QUEUED, ++state_counts_[Job::QUEUED]);
      CountStateChange(job.owner(), Job::STATE_UNSPECIFIED, Job::QUEUED);
      ActiveJob active{job, next_queue_order_++};
      queue_.insert(KeyOf(active));
      active_.emplace(job.id(), std::move(active));
      LogInfo("job ", job.id(), " queued (", job.spec().name(), ", owner ", job.owner(), ")");
      creators[i]->result = ToApiJob(job);
    }
    if (created.ok()) Dispatch();
  }
  for (auto& [repeat, first] : repeats) {
    if (first->result.ok() &&
        !SameSubmission(first->spec, repeat->spec, repeat->backbone_source)) {
      repeat->result = absl::AlreadyExistsError(
          absl::StrCat("request_id \"", repeat->request_id, "\" already created job ",
                       first->result->id(), " with a different spec"));
    } else {
      repeat->result = first->result;
    }
  }
}

bool Scheduler::SameSubmission(const tl::v1::JobSpec& earlier, tl::v1::JobSpec repeat,
                               const std::string& repeat_source) {
  if (NamedTheEarlierSourcesSweep(earlier.backbone().from_job(), repeat.backbone().from_job(),
                                  repeat_source)) {
    repeat.mutable_backbone()->set_from_job(earlier.backbone().from_job());
  }
  if (!repeat.evaluate().from_job().empty() &&
      repeat.evaluate().from_job() == earlier.evaluate().from_job()) {
    repeat.mutable_evaluate()->set_model_path(earlier.evaluate().model_path());
  }
  return earlier.SerializeAsString() == repeat.SerializeAsString();
}

bool Scheduler::NamedTheEarlierSourcesSweep(const std::string& earlier_job,
                                            const std::string& repeat_job,
                                            const std::string& repeat_source) {
  // Only a sweep's id resolves to another job than the one named.
  if (repeat_job == earlier_job || repeat_source.empty() || repeat_source == repeat_job) {
    return false;
  }
  // The earlier one holds the sweep's id itself (stored before submit resolved it), or a trial.
  if (earlier_job == repeat_source) return true;
  absl::StatusOr<JobRecord> taken = store_.GetJob(earlier_job);
  return taken.ok() && taken->sweep_id() == repeat_source;
}

absl::StatusOr<JobRecord> Scheduler::UsableSourceJob(const std::string& job_id,
                                                     const Principal& caller) {
  absl::StatusOr<JobRecord> job = store_.GetJob(job_id);
  if (absl::IsNotFound(job.status())) {
    // A sweep stands for its result (SweepResultJobId), under that job's owner and sharing.
    absl::StatusOr<SweepRecord> sweep = store_.GetSweep(job_id);
    if (sweep.ok()) {
      const std::string result = SweepResultJobId(*sweep);
      if (!result.empty()) {
        job = store_.GetJob(result);
      } else if (caller.SeesEveryJob() || sweep->owner() == caller.name) {
        return absl::FailedPreconditionError(
            absl::StrCat("sweep ", job_id, " has no succeeded trial yet (it is ",
                         tl::v1::Sweep::State_Name(sweep->state()), ")"));
      }
    }
  }
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
    const ActiveJob& active = it->second;
    job = ToApiJob(active.job,
                   active.job.state() == Job::QUEUED ? PendingReason(active) : std::string());
  } else {
    TL_ASSIGN_OR_RETURN(JobRecord stored, store_.GetJob(job_id));
    job = ToApiJob(stored);
  }
  if (!caller.SeesEveryJob() && job.owner() != caller.name) return JobNotFound(job_id);
  ClipStoredText(job);
  return job;
}

absl::StatusOr<Scheduler::ActiveJob*> Scheduler::UnendedJob(const std::string& job_id,
                                                             const Principal& caller) {
  TL_ASSIGN_OR_RETURN(Job visible, VisibleJob(job_id, caller));
  auto it = active_.find(job_id);
  if (it == active_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " has already ended (", Job::State_Name(visible.state()), ")"));
  }
  return &it->second;
}

absl::StatusOr<Job> Scheduler::GetJob(const std::string& job_id, const Principal& caller) {
  std::lock_guard<std::mutex> lock(mutex_);
  return VisibleJob(job_id, caller);
}

absl::StatusOr<Scheduler::JobPage> Scheduler::ListJobs(const std::vector<Job::State>& states,
                                                   int page_size, const std::string& page_token,
                                                   const std::string& owner,
                                                   const Principal& caller,
                                                   const std::string& sweep_id) {
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
  TL_ASSIGN_OR_RETURN(JobStore::Page page,
                      store_.ListJobs(states, page_size, page_token, owner_filter,
                                      options_.max_list_reply_bytes, sweep_id));
  JobPage shown;
  shown.next_page_token = std::move(page.next_page_token);
  shown.jobs.reserve(page.jobs.size());
  for (const JobRecord& record : page.jobs) {
    ClipStoredText(shown.jobs.emplace_back(ToApiJob(record)));
  }
  return shown;
}

absl::StatusOr<Job> Scheduler::CancelJob(const std::string& job_id, const std::string& reason,
                                          const Principal& caller) {
  TL_RETURN_IF_ERROR(CheckCallerText("reason", reason, kMaxReasonCharacters));
  std::lock_guard<std::mutex> lock(mutex_);
  const ServeSweepsAtExit serve(*this);
  TL_ASSIGN_OR_RETURN(ActiveJob* found, UnendedJob(job_id, caller));
  return CancelActive(*found, reason.empty() ? "cancelled on request" : reason);
}

absl::StatusOr<Job> Scheduler::CancelActive(ActiveJob& active, const std::string& why) {
  const std::string job_id = active.job.id();
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
    TL_ASSIGN_OR_RETURN(JobRecord ended, store_.GetJob(job_id));
    return ToApiJob(ended);
  }
  TL_RETURN_IF_ERROR(Update(active, [&](ActiveJob& next) {
    next.job.set_cancel_requested(true);
    next.job.set_error(why);
  }));
  SchedulerMessage message;
  message.mutable_cancel()->set_job_id(job_id);
  message.mutable_cancel()->set_reason(why);
  workers_.at(active.session).connection->Send(message);
  SendToReplicas(active, message);
  LogInfo("job ", job_id, " cancel sent to worker ", active.job.worker_id());
  return ToApiJob(active.job);
}

absl::StatusOr<Job> Scheduler::PauseJob(const std::string& job_id, const Principal& caller) {
  std::lock_guard<std::mutex> lock(mutex_);
  const ServeSweepsAtExit serve(*this);
  TL_ASSIGN_OR_RETURN(ActiveJob* found, UnendedJob(job_id, caller));
  return PauseActive(*found);
}

absl::StatusOr<Job> Scheduler::PauseActive(ActiveJob& active) {
  const std::string job_id = active.job.id();
  if (active.job.state() == Job::PAUSED || active.job.pause_requested()) return ToApiJob(active.job);
  if (active.job.cancel_requested()) {
    return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " is being cancelled"));
  }
  if (active.job.state() == Job::QUEUED) {
    TL_RETURN_IF_ERROR(Update(active, [](ActiveJob& next) { next.job.set_state(Job::PAUSED); }));
    queue_.erase(KeyOf(active));
    LogInfo("job ", job_id, " paused while queued");
    return ToApiJob(active.job);
  }
  TL_RETURN_IF_ERROR(Update(active, [](ActiveJob& next) { next.job.set_pause_requested(true); }));
  // A job without a worker right now (its worker is reconnecting) gets the message when the
  // worker comes back, or pauses instead of requeuing when the lease runs out.
  if (active.session != 0) {
    SchedulerMessage message;
    message.mutable_pause()->set_job_id(job_id);
    workers_.at(active.session).connection->Send(message);
    SendToReplicas(active, message);
  }
  LogInfo("job ", job_id, " pause requested");
  return ToApiJob(active.job);
}

absl::StatusOr<Job> Scheduler::ResumeJob(const std::string& job_id, const Principal& caller) {
  std::lock_guard<std::mutex> lock(mutex_);
  const ServeSweepsAtExit serve(*this);
  TL_ASSIGN_OR_RETURN(Job visible, VisibleJob(job_id, caller));
  auto it = active_.find(job_id);
  if (it == active_.end() || it->second.job.state() != Job::PAUSED) {
    return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " is ",
                                                      Job::State_Name(visible.state()),
                                                      "; only a PAUSED job can be resumed"));
  }
  return ResumeActive(it->second);
}

absl::StatusOr<Job> Scheduler::ResumeActive(ActiveJob& active) {
  const std::string job_id = active.job.id();
  if (active.job.state() != Job::PAUSED) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job_id, " is ", Job::State_Name(active.job.state()),
                     "; only a PAUSED job can be resumed"));
  }
  TL_RETURN_IF_ERROR(Update(active, [](ActiveJob& next) { next.job.set_state(Job::QUEUED); }));
  // Its submission order is kept: a resumed job does not lose its place to later ones.
  queue_.insert(KeyOf(active));
  LogInfo("job ", job_id, " resumed");
  Dispatch();
  return ToApiJob(active.job);
}

absl::Status Scheduler::WatchJob(const std::string& job_id, std::shared_ptr<JobWatcher> watcher,
                                 int64_t after_sequence, const Principal& caller) {
  if (after_sequence < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("after_sequence is ", after_sequence, "; it must not be negative"));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  TL_ASSIGN_OR_RETURN(Job job, VisibleJob(job_id, caller));
  // Every stored event is committed before it is notified, and both happen under this lock:
  // reading and registering under it too means no event is missed or sent twice.
  TL_ASSIGN_OR_RETURN(std::vector<JobEvent> events, store_.GetEvents(job_id, after_sequence));
  watcher = std::make_shared<EventsAfter>(std::move(watcher), after_sequence);
  for (const JobEvent& event : events) {
    if (!watcher->Deliver(event)) return absl::OkStatus();  // gone already
  }
  if (IsTerminal(job.state())) {
    watcher->Finish();
  } else if (draining_) {
    // BeginDrain interrupted the watchers it found; one registered after it would wait, never
    // told, until the transport is torn down under it. It ends as they did: call again.
    watcher->Interrupt();
  } else {
    watchers_[job_id].push_back(std::move(watcher));
  }
  return absl::OkStatus();
}

absl::Status Scheduler::GetJobLogs(const std::string& job_id, int64_t after_sequence,
                                   bool follow, std::shared_ptr<LogFollower> follower,
                                   const Principal& caller) {
  std::lock_guard<std::mutex> lock(mutex_);
  TL_ASSIGN_OR_RETURN(Job job, VisibleJob(job_id, caller));
  TL_ASSIGN_OR_RETURN(std::vector<tl::v1::LogLine> lines,
                      store_.GetLogs(job_id, after_sequence, kMaxLogLinesReplayed));
  for (const tl::v1::LogLine& line : lines) follower->Deliver(line);
  if (!follow || IsTerminal(job.state())) {
    follower->Finish();
  } else if (draining_) {
    follower->Interrupt();  // as WatchJob's
  } else {
    log_followers_[job_id].push_back(std::move(follower));
  }
  return absl::OkStatus();
}

}  // namespace tl::server
