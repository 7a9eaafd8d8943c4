// Data-parallel jobs: the gang of workers one attempt runs on. Rank 0 holds
// the job as a single worker would (Scheduler::ActiveJob::session); ranks
// 1.. are kept in replica_sessions, train, log, and report only their end.
// Their process group ties them together: a rank that dies makes the others
// fail, and the attempt ends for all of them.
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "server/core/placement.h"
#include "server/core/scheduler.h"

namespace tl::server {

using ::tl::v1::Job;
using ::tl::v1::JobFinished;
using ::tl::v1::SchedulerMessage;

Scheduler::ActiveJob* Scheduler::ReplicaJob(int64_t session, const std::string& job_id,
                                            int attempt) {
  auto it = active_.find(job_id);
  if (it == active_.end() || it->second.job.attempt() != attempt ||
      it->second.replica_sessions.count(session) == 0) {
    return nullptr;
  }
  return &it->second;
}

void Scheduler::SendToReplicas(const ActiveJob& active, const SchedulerMessage& message) {
  for (int64_t session : active.replica_sessions) {
    auto worker = workers_.find(session);
    if (worker != workers_.end()) worker->second.connection->Send(message);
  }
}

void Scheduler::LetGo(int64_t session, const std::string& job_id, bool cancel,
                      const std::string& why) {
  auto worker = workers_.find(session);
  if (worker == workers_.end() || worker->second.job_id != job_id) return;
  if (cancel) {
    SchedulerMessage message;
    message.mutable_cancel()->set_job_id(job_id);
    message.mutable_cancel()->set_reason(why);
    worker->second.connection->Send(message);
  }
  worker->second.job_id.clear();
  worker->second.busy_elsewhere = true;
}

void Scheduler::ReleaseReplicas(ActiveJob& active, bool cancel, const std::string& why) {
  if (active.replica_sessions.empty()) return;
  for (int64_t session : active.replica_sessions) LetGo(session, active.job.id(), cancel, why);
  active.replica_sessions.clear();
  UpdateWorkerMetrics();
}

void Scheduler::StopRankZero(ActiveJob& active, const std::string& why) {
  if (active.session == 0) return;
  LetGo(active.session, active.job.id(), /*cancel=*/true, why);
  active.session = 0;
}

void Scheduler::OnReplicaFinished(int64_t session, ActiveJob& active,
                                  const JobFinished& finished) {
  WorkerState& worker = workers_.at(session);
  active.replica_sessions.erase(session);
  worker.job_id.clear();
  const JobFinished::Outcome outcome = finished.outcome();
  if (outcome == JobFinished::REFUSED) worker.busy_elsewhere = true;
  const bool ended_with_the_gang =
      outcome == JobFinished::SUCCEEDED || outcome == JobFinished::PAUSED ||
      (outcome == JobFinished::CANCELLED && active.job.cancel_requested());
  if (ended_with_the_gang) {
    UpdateWorkerMetrics();
    Dispatch();
    return;
  }
  // This rank's end breaks the attempt: the others wait on it in their collectives.
  const std::string why =
      absl::StrCat("replica on worker ", worker.hello.worker_id(), " ",
                   JobFinished::Outcome_Name(outcome),
                   finished.error().empty() ? "" : ": ", finished.error());
  LogWarning("job ", active.job.id(), " attempt ", active.job.attempt(), ": ", why);
  StopRankZero(active, why);
  const bool retry = outcome != JobFinished::FAILED || finished.retryable();
  if (retry) {
    // A refusal or a worker shutting down is not the job's fault; a crash or a lost peer
    // (a rank cancelled though no one asked stopped with one) counts against max_attempts.
    Requeue(active, why,
            /*counts_as_failure=*/outcome != JobFinished::REFUSED &&
                outcome != JobFinished::RELEASED);
  } else {
    EndJob(active, Job::FAILED, why);
  }
  UpdateWorkerMetrics();
  Dispatch();
}

bool Scheduler::RejoinGang(int64_t session, WorkerState& worker, ActiveJob& active) {
  const tl::v1::WorkerHello& hello = worker.hello;
  const JobRecord& job = active.job;
  if (job.attempt() != hello.held_attempt() || job.state() == Job::PAUSED ||
      job.state() == Job::QUEUED) {
    return false;  // the attempt is over; a new gang runs (or will run) the job
  }
  int rank = -1;
  for (int i = 0; i < job.replica_worker_ids_size(); ++i) {
    if (job.replica_worker_ids(i) == hello.worker_id()) rank = i;
  }
  if (rank < 0) return false;
  if (rank == 0) {
    if (active.session != 0 && workers_.count(active.session) != 0 &&
        workers_.at(active.session).hello.worker_id() != hello.worker_id()) {
      return false;
    }
    active.session = session;
    active.orphaned_since = absl::InfinitePast();
  } else {
    active.replica_sessions.insert(session);
  }
  worker.job_id = job.id();
  return true;
}

}  // namespace tl::server
