// The scheduler's state machine: the queue, the connected workers, the jobs
// they hold, and who watches what. Transport-free: the gRPC services call it
// and hand it WorkerConnection and JobWatcher objects to talk back through.
//
// Every change of a job is written to the JobStore before anyone hears of it.
// Job states: QUEUED -> ASSIGNED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED;
// a job whose worker goes silent past the lease goes back to QUEUED (up to
// max_attempts), and a worker that comes back holding its job keeps it.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/job_store.h"
#include "server/server_metrics.h"
#include "server/spec_validation.h"
#include "tl/v1/service.pb.h"

namespace tl::server {

// The scheduler's handle on one worker's stream.
class WorkerConnection {
 public:
  virtual ~WorkerConnection() = default;
  // Queues a message; never blocks.
  virtual void Send(const tl::v1::SchedulerMessage& message) = 0;
  // Ends the stream; the transport then calls DisconnectWorker.
  virtual void Close() = 0;
};

// The scheduler's handle on one WatchJob stream.
class JobWatcher {
 public:
  virtual ~JobWatcher() = default;
  // Queues an event; never blocks. False when the watcher has gone away.
  virtual bool Deliver(const tl::v1::JobEvent& event) = 0;
  // The job has ended: no more events follow.
  virtual void Finish() = 0;
};

struct SchedulerOptions {
  std::string data_root;
  std::string artifact_root;
  // A worker silent this long loses its stream, and a job whose worker has
  // been gone this long goes back to the queue.
  absl::Duration lease_timeout = absl::Seconds(30);
  absl::Duration heartbeat_interval = absl::Seconds(5);
  // Assignments a job gets before a lost worker fails it for good.
  int max_attempts = 3;
};

class Scheduler {
 public:
  Scheduler(JobStore& store, ServerMetrics& metrics, SchedulerOptions options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Loads queued and leased jobs from the store and starts the lease clock.
  absl::Status Start();
  void Stop();

  // --- JobService ---
  absl::StatusOr<tl::v1::Job> SubmitJob(const tl::v1::JobSpec& spec, const std::string& owner);
  absl::StatusOr<tl::v1::Job> GetJob(const std::string& job_id);
  absl::StatusOr<JobStore::Page> ListJobs(const std::vector<tl::v1::Job::State>& states,
                                          int page_size, const std::string& page_token);
  absl::StatusOr<tl::v1::Job> CancelJob(const std::string& job_id, const std::string& reason);
  // Delivers the job and its stored epochs to `watcher`, then every later
  // event; finishes it at once when the job has already ended.
  absl::Status WatchJob(const std::string& job_id, std::shared_ptr<JobWatcher> watcher);

  // --- WorkerService ---
  // Registers a worker from its hello; returns its session number.
  absl::StatusOr<int64_t> ConnectWorker(const tl::v1::WorkerHello& hello,
                                        std::shared_ptr<WorkerConnection> connection);
  void HandleWorkerMessage(int64_t session, const tl::v1::WorkerMessage& message);
  void DisconnectWorker(int64_t session);

  // Expires silent workers and requeues jobs whose worker stayed away past
  // the lease. Runs on the scheduler's own thread; public for tests.
  void CheckLeases(absl::Time now);

 private:
  struct ActiveJob {
    tl::v1::Job job;
    int64_t queue_order = 0;  // submission order, for FIFO within a priority
    int64_t session = 0;      // the worker session holding it; 0 when none
    absl::Time orphaned_since = absl::InfinitePast();
  };
  struct WorkerState {
    tl::v1::WorkerHello hello;
    std::shared_ptr<WorkerConnection> connection;
    std::string job_id;  // empty when idle
    absl::Time last_seen;
    // Refused an assignment because it was still busy: no new assignment
    // until it reports the end of whatever it runs.
    bool refusing = false;
  };
  using QueueKey = std::tuple<int, int64_t, std::string>;  // -priority, order, id

  static QueueKey KeyOf(const ActiveJob& active);
  // Writes the job, updates counts and tells its watchers. Requires mutex_.
  absl::Status Persist(ActiveJob& active, tl::v1::Job::State previous_state);
  void Notify(const std::string& job_id, const tl::v1::JobEvent& event);
  void FinishWatchers(const std::string& job_id);
  void EndJob(ActiveJob& active, tl::v1::Job::State state, const std::string& error);
  void Requeue(ActiveJob& active, const std::string& why);
  void Dispatch();
  bool WorkerFits(const WorkerState& worker, const tl::v1::Job& job) const;
  absl::Status Assign(ActiveJob& active, int64_t session, WorkerState& worker);
  void ReleaseWorker(int64_t session);
  // The job a worker message is about, if this session holds that attempt.
  ActiveJob* HeldJob(int64_t session, const std::string& job_id, int attempt);
  void OnStarted(int64_t session, const tl::v1::JobStarted& started);
  void OnEpoch(int64_t session, const tl::v1::EpochReport& report);
  void OnProgress(int64_t session, const tl::v1::ProgressReport& report);
  void OnFinished(int64_t session, const tl::v1::JobFinished& finished);
  void AdoptHeldJob(int64_t session, WorkerState& worker);
  absl::StatusOr<int64_t> ConnectWorkerLocked(
      const tl::v1::WorkerHello& hello, std::shared_ptr<WorkerConnection> connection,
      std::vector<std::shared_ptr<WorkerConnection>>* replaced);
  void UpdateWorkerMetrics();
  absl::Time Now() const { return absl::Now(); }
  void LeaseLoop();

  JobStore& store_;
  ServerMetrics& metrics_;
  const SchedulerOptions options_;
  SpecContext spec_context_;

  std::mutex mutex_;
  std::map<std::string, ActiveJob> active_;  // QUEUED, ASSIGNED and RUNNING jobs
  std::set<QueueKey> queue_;                 // QUEUED jobs in dispatch order
  int64_t next_queue_order_ = 1;
  std::map<int64_t, WorkerState> workers_;
  int64_t next_session_ = 1;
  std::map<std::string, std::vector<std::shared_ptr<JobWatcher>>> watchers_;
  std::map<tl::v1::Job::State, int64_t> state_counts_;

  std::mutex lease_mutex_;
  std::condition_variable lease_wakeup_;
  bool stopping_ = false;
  std::thread lease_thread_;
};

bool IsTerminal(tl::v1::Job::State state);

}  // namespace tl::server
