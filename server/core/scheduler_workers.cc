// The WorkerService side of the scheduler: worker sessions (who may connect
// as which worker, a session replaced by a newer one), jobs a reconnecting
// worker holds, leases, and every report a worker sends.
#include <algorithm>
#include <filesystem>
#include <iterator>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "common/worker_slots.h"
#include "server/core/job_states.h"
#include "server/core/placement.h"
#include "server/core/scheduler.h"
#include "server/core/scheduler_internal.h"
#include "server/core/subscriptions.h"
#include "server/spec/caller_text.h"
#include "server/spec/spec_defaults.h"

namespace tl::server {
namespace {

using ::tl::v1::Job;
using ::tl::v1::JobEvent;
using ::tl::v1::SchedulerMessage;
using scheduler_internal::HoldsWorker;
using scheduler_internal::ToTimestamp;

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

// Why a job goes back to the queue when its worker shuts down.
std::string ShutDown(const tl::v1::WorkerHello& hello) {
  return absl::StrCat("worker ", hello.worker_id(), " shut down");
}

}  // namespace

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
  TL_RETURN_IF_ERROR(CheckCallerText("hello.worker_id", hello.worker_id(), kMaxOwnerCharacters));
  TL_RETURN_IF_ERROR(CheckWorkerSlots(hello));
  // A slot connects under its process's worker id, the one its token names.
  const std::string& identity = WorkerProcessOf(hello);
  if (!credential.MayConnectAsWorker(identity)) {
    LogWarning("refused worker id ", identity, " to principal ", credential.name);
    return absl::PermissionDeniedError(absl::StrCat(
        hello.slot_of().empty() ? "hello.worker_id" : "hello.slot_of", ": principal ",
        credential.name, " may not connect as worker ", identity,
        "; its token names the worker ids it may use"));
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
  // A job that a restarted worker left behind may end (its last attempt).
  const ServeSweepsAtExit serve(*this);
  // Only the credential a live session came with may replace it: another one (a leaked token
  // whose worker ids overlap) would take over that worker's job and report for it.
  // The same holds for a session of another slot of the same worker process: a token whose
  // worker ids overlap must not add slots beside a live worker's, nor pose as it.
  for (const auto& [session, worker] : workers_) {
    if (WorkerProcessOf(worker.hello) == WorkerProcessOf(hello) &&
        worker.credential != credential.name) {
      LogWarning("refused a session of worker ", hello.worker_id(), " from principal ",
                 credential.name, "; the live session of ", worker.hello.worker_id(),
                 " came from ", worker.credential);
      return absl::AlreadyExistsError(absl::StrCat(
          "worker ", WorkerProcessOf(hello), " is connected with another credential (as ",
          worker.hello.worker_id(), "); try again once that session has ended"));
    }
  }
  // Two sessions of one worker cannot both be live: the older one is a
  // stream that broke without the scheduler noticing yet. Left registered it
  // would look idle and take assignments into a dead stream. The same holds
  // for the sessions of the same worker process (and credential) started
  // with another number of slots: they are of a process that has ended, and
  // a second holder of the token cannot add slots beside a live worker's
  // unnoticed.
  const auto slots_of = [](const tl::v1::WorkerHello& of) { return std::max(1, of.slots()); };
  for (auto it = workers_.begin(); it != workers_.end();) {
    const tl::v1::WorkerHello& old = it->second.hello;
    const bool same_worker = old.worker_id() == hello.worker_id();
    const bool older_layout = WorkerProcessOf(old) == WorkerProcessOf(hello) &&
                              it->second.credential == credential.name &&
                              slots_of(old) != slots_of(hello);
    if (!same_worker && !older_layout) {
      ++it;
      continue;
    }
    if (!same_worker) {
      // Its series would otherwise stay on /metrics, its lease age growing (DisconnectWorker
      // will not see this session again).
      metrics_.WorkerGone(old.worker_id());
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
  RequeueJobsLeftBehind(hello.worker_id(), hello.held_job_id(), hello.held_attempt());
  RequeueJobsOfAnotherLayout(hello);
  if (!hello.held_job_id().empty()) AdoptHeldJob(session, worker);
  UpdateWorkerMetrics();
  Dispatch();
  return session;
}

void Scheduler::RequeueJobsLeftBehind(const std::string& worker_id,
                                      const std::string& held_job_id, int held_attempt) {
  std::vector<std::string> left;
  for (const auto& [id, active] : active_) {
    const bool held = id == held_job_id && active.job.attempt() == held_attempt;
    // A gang's rank 0 rejoins through RejoinGang, which knows its peers.
    if (!held && active.session == 0 && HoldsWorker(active.job.state()) &&
        active.leased_to == worker_id && Replicas(active.job) == 1) {
      left.push_back(id);
    }
  }
  for (const std::string& id : left) {
    ActiveJob& active = active_.at(id);
    const std::string why = absl::StrCat("worker ", worker_id, " came back without the job ",
                                         "during attempt ", active.job.attempt());
    LogWarning("job ", id, " queued again: ", why);
    Requeue(active, why, /*counts_as_failure=*/true);
  }
}

void Scheduler::RequeueJobsOfAnotherLayout(const tl::v1::WorkerHello& hello) {
  const std::string& process = WorkerProcessOf(hello);
  const int slots = std::max(1, hello.slots());
  // The ids this process's slots connect under now; a job leased to another id of the process
  // (its own or a slot's) was left by the process before it came back with another number of
  // slots: no session will claim it back, whether or not the old ones were seen to end.
  const auto in_this_layout = [&](const std::string& id) {
    if (hello.slot_of().empty()) return id == process;
    for (int slot = 1; slot <= slots; ++slot) {
      if (id == SlotWorkerId(process, slot)) return true;
    }
    return false;
  };
  std::vector<std::string> left;
  for (const auto& [id, active] : active_) {
    const bool of_this_process =
        active.leased_to == process || SlotProcessOf(active.leased_to) == process;
    // A gang's rank 0 rejoins through RejoinGang, which knows its peers.
    if (active.session == 0 && HoldsWorker(active.job.state()) && of_this_process &&
        !in_this_layout(active.leased_to) && Replicas(active.job) == 1) {
      left.push_back(id);
    }
  }
  for (const std::string& id : left) {
    ActiveJob& active = active_.at(id);
    const std::string why = absl::StrCat(
        "worker ", process, " came back with ", slots, " slot(s), without ", active.leased_to,
        ", which held the job during attempt ", active.job.attempt());
    LogWarning("job ", id, " queued again: ", why);
    Requeue(active, why, /*counts_as_failure=*/true);
  }
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
  const ServeSweepsAtExit serve(*this);
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
    // Sweeps too: a trial that a store error or an owner's full queue kept back is created now.
    ServeAllSweeps();
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
  const ServeSweepsAtExit serve(*this);
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
    case tl::v1::WorkerMessage::kLeaving:
      OnLeaving(session);
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
    if (started.has_dataset()) *next.job.mutable_result()->mutable_dataset() = started.dataset();
    if (started.has_data_sizing()) {
      FillSizedFields(started.data_sizing(), *next.job.mutable_spec());
      *next.job.mutable_result()->mutable_data_sizing() = started.data_sizing();
    }
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
  // ASHA's stop of a trial at this rung, decided before the epoch is stored so that both go
  // into one transaction: a tlserver that dies after storing the epoch cannot forget the stop
  // (the rungs are rebuilt from stored epochs, and no decision is made for them again).
  const std::optional<std::string> stop_early = AshaStopAtEpoch(active->job, report.metrics());
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
          const tl::v1::JobResult& result = next.job.result();
          metrics_.EpochFinished(report.job_id(), report.metrics(),
                                 !result.has_dataset() || result.dataset().val_images() > 0);
        }
        if (stop_early.has_value()) MarkStopEarly(next, *stop_early);
      },
      &report.metrics());
  if (!status.ok()) {
    LogError("cannot store epoch ", report.metrics().epoch(), " of job ", report.job_id());
    return;
  }
  if (stop_early.has_value()) SendStopEarly(*active, *stop_early);
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

void Scheduler::RequeueAndPlace(ActiveJob& active, std::string why, bool counts_as_failure) {
  Requeue(active, std::move(why), counts_as_failure);
  UpdateWorkerMetrics();
  Dispatch();
}

void Scheduler::OnLeaving(int64_t session) {
  WorkerState& worker = workers_.at(session);
  worker.leaving = true;
  LogInfo("worker ", worker.hello.worker_id(), " is shutting down (session ", session, ")");
  auto it = worker.job_id.empty() ? active_.end() : active_.find(worker.job_id);
  // An assignment still on its way when the worker said so (it says so only once its own job
  // is reported): it refuses it, or reads it only after its side of the stream is closed. It
  // never ran.
  if (it == active_.end() || it->second.job.state() != Job::ASSIGNED) return;
  if (it->second.replica_sessions.count(session) > 0) {
    // A gang's rank: as if it had refused.
    tl::v1::JobFinished refused;
    refused.set_job_id(it->second.job.id());
    refused.set_attempt(it->second.job.attempt());
    refused.set_outcome(tl::v1::JobFinished::REFUSED);
    refused.set_error(ShutDown(worker.hello));
    OnReplicaFinished(session, it->second, refused);
    return;
  }
  if (it->second.session != session) return;
  it->second.job.set_attempt(it->second.job.attempt() - 1);
  RequeueAndPlace(it->second, ShutDown(worker.hello), /*counts_as_failure=*/false);
}

void Scheduler::OnFinished(int64_t session, const tl::v1::JobFinished& finished) {
  WorkerState& worker = workers_.at(session);
  // Before anything below places a job: a gang's rank that was let go reports too.
  if (finished.outcome() == tl::v1::JobFinished::RELEASED) worker.leaving = true;
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
    RequeueAndPlace(*active, finished.error(), /*counts_as_failure=*/false);
    return;
  }
  if (finished.outcome() == tl::v1::JobFinished::PAUSED) {
    PauseStopped(*active);
    return;
  }
  if (finished.outcome() == tl::v1::JobFinished::RELEASED) {
    // The worker is shutting down: the job goes back to the queue now, not after a lease, and
    // resumes from its checkpoint elsewhere. Not the job's fault.
    RequeueAndPlace(*active, ShutDown(worker.hello), /*counts_as_failure=*/false);
    return;
  }
  if (finished.outcome() == tl::v1::JobFinished::CANCELLED && !active->job.cancel_requested()) {
    // Stopped though nobody asked: a gang's rank stopped with a peer that was lost, fenced or
    // shutting down (whose own report may come later). Retried, and counted, so that a gang
    // that keeps losing a rank ends at max_attempts.
    RequeueAndPlace(*active,
                    absl::StrCat("worker ", worker.hello.worker_id(),
                                 " stopped it without a cancel request (a replica of its gang "
                                 "stopped)"),
                    /*counts_as_failure=*/true);
    return;
  }
  if (finished.outcome() == tl::v1::JobFinished::FAILED && finished.retryable()) {
    RequeueAndPlace(*active,
                    finished.error().empty() ? "the trainer failed"
                                             : ClipUtf8(finished.error(), kMaxWorkerErrorBytes),
                    /*counts_as_failure=*/true);
    return;
  }
  if (const std::string outside = PathOutsideJobFolder(finished.result(), finished.job_id());
      !outside.empty()) {
    // Not the spec's fault and maybe not every worker's: another attempt may go elsewhere.
    LogWarning("worker ", worker.hello.worker_id(), " reported ", outside, " for job ",
               finished.job_id(), ", outside the job's folder; its result is refused");
    RequeueAndPlace(*active,
                    absl::StrCat("worker ", worker.hello.worker_id(), " reported ", outside,
                                 ", outside the job's folder ", finished.job_id(), "/"),
                    /*counts_as_failure=*/true);
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
