// The scheduler's state machine: the queue, the connected workers, the jobs
// they hold, and who watches what. Transport-free: the gRPC services call it
// and hand it WorkerConnection and JobWatcher objects to talk back through.
//
// Every change of a job is written to the JobStore, with a numbered event,
// before anyone hears of it. Job states:
//   QUEUED -> ASSIGNED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED
//   QUEUED | ASSIGNED | RUNNING -> PAUSED (PauseJob) -> QUEUED (ResumeJob)
// A job whose worker goes silent past the lease, or whose trainer fails
// for a retryable cause, goes back to QUEUED (up to max_attempts failures);
// a worker that comes back holding its job keeps it.
//
// A data-parallel job (resources.replicas > 1) runs on a gang of workers
// assigned together (scheduler_gang.cc): rank 0 holds the job as any
// worker does, the other ranks only train. A rank that fails or is lost
// stops the whole gang and the job goes back to the queue.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/core/job_states.h"
#include "server/core/placement.h"
#include "server/core/principal.h"
#include "server/record/job_record.pb.h"
#include "server/store/job_store.h"
#include "server/metrics/server_metrics.h"
#include "server/record/job_view.h"
#include "server/record/sweep_record.pb.h"
#include "server/spec/spec_validation.h"
#include "server/sweep/search_space.h"
#include "tl/v1/service.pb.h"

namespace tl::server {

// The scheduler's handle on one worker's stream.
class WorkerConnection {
 public:
  virtual ~WorkerConnection() = default;
  // Queues a message; never blocks.
  virtual void Send(const tl::v1::SchedulerMessage& message) = 0;
  // Ends the stream, telling the worker `why`; the transport then calls
  // DisconnectWorker.
  virtual void Close(const std::string& why) = 0;
};

// The scheduler's handle on one WatchJob stream.
class JobWatcher {
 public:
  virtual ~JobWatcher() = default;
  // Queues an event; never blocks. False when the watcher has gone away.
  virtual bool Deliver(const tl::v1::JobEvent& event) = 0;
  // Whether the watcher has gone away (its client left), without handing it anything.
  virtual bool Gone() const { return false; }
  // The job has ended: no more events follow.
  virtual void Finish() = 0;
  // The server is going away while the job goes on: the client should watch
  // again (after the last sequence it saw) once the server is back.
  virtual void Interrupt() = 0;
};

// The scheduler's handle on one GetJobLogs stream.
class LogFollower {
 public:
  virtual ~LogFollower() = default;
  // Queues a line; never blocks. False when the follower has gone away.
  virtual bool Deliver(const tl::v1::LogLine& line) = 0;
  // No more lines follow.
  virtual void Finish() = 0;
  // The server is going away; the client may follow again later.
  virtual void Interrupt() = 0;
};

// The scheduler's handle on one WatchSweep stream.
class SweepWatcher {
 public:
  virtual ~SweepWatcher() = default;
  // Queues an event; never blocks. False when the watcher has gone away.
  virtual bool Deliver(const tl::v1::SweepEvent& event) = 0;
  virtual bool Gone() const { return false; }
  // The sweep has ended: no more events follow.
  virtual void Finish() = 0;
  // The server is going away: the client should watch again once it is back.
  virtual void Interrupt() = 0;
};

struct SchedulerOptions {
  std::string data_root;
  std::string artifact_root;
  // A worker silent this long loses its stream, and a job whose worker has
  // been gone this long goes back to the queue.
  absl::Duration lease_timeout = absl::Seconds(30);
  absl::Duration heartbeat_interval = absl::Seconds(5);
  // Failed attempts (lost worker, retryable trainer failure) after which a
  // job fails for good.
  int max_attempts = 3;
  // Jobs of one owner that may hold a worker at once; 0: no limit.
  int max_running_per_owner = 0;
  // Jobs of one owner that may wait (QUEUED or PAUSED) at once; 0: no limit.
  int max_queued_per_owner = 0;
  // Log lines kept per job; older ones are dropped.
  int64_t max_log_lines_per_job = 10000;
  // A ListJobs page ends early rather than grow past this many bytes, so that
  // it fits the message limit of clients (gRPC's default: 4 MiB).
  size_t max_list_reply_bytes = 2 << 20;
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

  // Stops dispatching (shutdown): queued jobs stay queued, running ones
  // keep running on their workers, new submissions are refused with
  // UNAVAILABLE. Worker streams, watches and log follows are ended at once
  // (they reconnect to the next server), so that only unary calls remain
  // for the transport to finish.
  void BeginDrain();

  // --- JobService ---
  // Each call acts for `caller`: a user sees and changes only its own jobs
  // (PERMISSION_DENIED otherwise). Without authentication the caller is
  // Principal::Unauthenticated().
  //
  // A non-empty request_id makes the submit idempotent per owner: a repeat
  // returns the job the first one created (ALREADY_EXISTS when its spec
  // differs). A spec may start from another job's outputs only when `caller`
  // owns that job, it is shared with the caller, or the caller is an admin.
  absl::StatusOr<tl::v1::Job> SubmitJob(const tl::v1::JobSpec& spec, const std::string& owner,
                                        const std::string& request_id = "",
                                        const Principal& caller = Principal::Unauthenticated());
  absl::StatusOr<tl::v1::Job> GetJob(const std::string& job_id,
                                     const Principal& caller = Principal::Unauthenticated());
  // `owner` non-empty: only that owner's jobs. A user's listing is always
  // limited to its own.
  struct JobPage {
    std::vector<tl::v1::Job> jobs;
    std::string next_page_token;  // empty on the last page
  };
  // `sweep_id` non-empty: only that sweep's trials.
  absl::StatusOr<JobPage> ListJobs(const std::vector<tl::v1::Job::State>& states,
                                          int page_size, const std::string& page_token,
                                          const std::string& owner = "",
                                          const Principal& caller = Principal::Unauthenticated(),
                                          const std::string& sweep_id = "");
  absl::StatusOr<tl::v1::Job> CancelJob(const std::string& job_id, const std::string& reason,
                                        const Principal& caller = Principal::Unauthenticated());
  absl::StatusOr<tl::v1::Job> PauseJob(const std::string& job_id,
                                       const Principal& caller = Principal::Unauthenticated());
  absl::StatusOr<tl::v1::Job> ResumeJob(const std::string& job_id,
                                        const Principal& caller = Principal::Unauthenticated());
  // Delivers the job's stored events after `after_sequence` to `watcher`,
  // then every later event; finishes it once the job has ended.
  absl::Status WatchJob(const std::string& job_id, std::shared_ptr<JobWatcher> watcher,
                        int64_t after_sequence = 0,
                        const Principal& caller = Principal::Unauthenticated());
  // Delivers the job's kept log lines after `after_sequence`; with `follow`,
  // then every new line until the job ends. Finishes the follower after.
  absl::Status GetJobLogs(const std::string& job_id, int64_t after_sequence, bool follow,
                          std::shared_ptr<LogFollower> follower,
                          const Principal& caller = Principal::Unauthenticated());

  // --- Sweeps (scheduler_sweeps.cc) ---
  // A sweep's trials are jobs of its owner, created while fewer than max_parallel_trials are
  // unended; a user acts on its own sweeps only (another owner's reads as a missing one).
  // request_id makes the submit idempotent per owner, as for jobs.
  absl::StatusOr<tl::v1::Sweep> SubmitSweep(const tl::v1::SweepSpec& spec,
                                            const std::string& owner,
                                            const std::string& request_id = "",
                                            const Principal& caller = Principal::Unauthenticated());
  absl::StatusOr<tl::v1::Sweep> GetSweep(const std::string& sweep_id,
                                         const Principal& caller = Principal::Unauthenticated());
  struct SweepPage {
    std::vector<tl::v1::Sweep> sweeps;  // without their trials
    std::string next_page_token;        // empty on the last page
  };
  absl::StatusOr<SweepPage> ListSweeps(const std::vector<tl::v1::Sweep::State>& states,
                                       int page_size, const std::string& page_token,
                                       const std::string& owner = "",
                                       const Principal& caller = Principal::Unauthenticated());
  // Ends the sweep CANCELLED; its unended trials are cancelled (queued ones at once).
  absl::StatusOr<tl::v1::Sweep> CancelSweep(const std::string& sweep_id, const std::string& reason,
                                            const Principal& caller = Principal::Unauthenticated());
  // No new trials; its trials pause (queued ones at once, running ones after their epoch).
  absl::StatusOr<tl::v1::Sweep> PauseSweep(const std::string& sweep_id,
                                           const Principal& caller = Principal::Unauthenticated());
  absl::StatusOr<tl::v1::Sweep> ResumeSweep(const std::string& sweep_id,
                                            const Principal& caller = Principal::Unauthenticated());
  // Delivers the sweep as it is, then the sweep whenever it changes; finishes the watcher
  // once the sweep has ended.
  absl::Status WatchSweep(const std::string& sweep_id, std::shared_ptr<SweepWatcher> watcher,
                          const Principal& caller = Principal::Unauthenticated());

  // --- WorkerService ---
  // Registers a worker from its hello; returns its session number. `credential` must allow
  // the hello's worker id (PERMISSION_DENIED otherwise). A live session of the same id from
  // another credential is not replaced: ALREADY_EXISTS until it ends or its lease runs out.
  absl::StatusOr<int64_t> ConnectWorker(
      const tl::v1::WorkerHello& hello, std::shared_ptr<WorkerConnection> connection,
      const Principal& credential = Principal::Unauthenticated());
  void HandleWorkerMessage(int64_t session, const tl::v1::WorkerMessage& message);
  void DisconnectWorker(int64_t session);

  // Expires silent workers and requeues jobs whose worker stayed away past
  // the lease. Runs on the scheduler's own thread; public for tests.
  void CheckLeases(absl::Time now);

 private:
  struct ActiveJob {
    JobRecord job;
    int64_t queue_order = 0;  // submission order, for FIFO within a priority
    int64_t session = 0;      // the worker session holding it; 0 when none
    // The worker id its current attempt was given to (rank 0's); kept while the job waits
    // for that worker to come back, and only that worker may claim the attempt.
    std::string leased_to;
    absl::Time orphaned_since = absl::InfinitePast();
    // Data-parallel jobs: the sessions of ranks 1.. still training (rank
    // 0's is `session`).
    std::set<int64_t> replica_sessions;
  };
  struct WorkerState {
    tl::v1::WorkerHello hello;
    // The principal the session authenticated as; empty without authentication.
    std::string credential;
    std::shared_ptr<WorkerConnection> connection;
    std::string job_id;  // empty when idle
    absl::Time last_seen;
    // Runs something that is no longer its job: an attempt it refused
    // because it was still busy, or a gang attempt that was stopped. No new
    // assignment until it reports the end of whatever it runs.
    bool busy_elsewhere = false;
    // Shutting down: it handed its job back (RELEASED) and takes no new one on this session.
    bool leaving = false;
  };
  // One SubmitJob waiting for its group commit.
  struct PendingSubmit {
    tl::v1::JobSpec spec;  // validated, defaults filled in
    std::string owner;
    std::string request_id;
    // backbone.from_job as the caller gave it: a sweep's id where `spec` holds the job that
    // sweep stood for at validation.
    std::string backbone_source;
    absl::StatusOr<tl::v1::Job> result = absl::UnknownError("not committed");
    bool done = false;  // guarded by submit_mutex_
  };
  // Jobs of one owner, for the per-owner limits.
  struct OwnerLoad {
    int64_t waiting = 0;  // QUEUED or PAUSED
    int64_t running = 0;  // ASSIGNED or RUNNING
  };
  using QueueKey = std::tuple<int, int64_t, std::string>;  // -priority, order, id

  static QueueKey KeyOf(const ActiveJob& active);
  // Writes the job (and `epoch`, when given) with their numbered events,
  // updates counts and tells its watchers. Requires mutex_.
  absl::Status Persist(ActiveJob& active, tl::v1::Job::State previous_state,
                       const tl::v1::EpochMetrics* epoch = nullptr);
  // The one way a job changes: `change` is made to a copy of the job, the copy is stored with
  // its events (and `epoch`) by Persist, and only then does it replace `active`. A state
  // change must be one the transition table (job_states.h) allows. A failed write leaves the
  // job exactly as it was, and nobody hears of it. Requires mutex_.
  absl::Status Update(ActiveJob& active, const std::function<void(ActiveJob&)>& change,
                      const tl::v1::EpochMetrics* epoch = nullptr);
  void Notify(const std::string& job_id, const tl::v1::JobEvent& event);
  void CountStateChange(const std::string& owner, tl::v1::Job::State from, tl::v1::Job::State to);
  // Ends the job in `state` (with `failures`, when not negative); a failed write leaves it
  // active as it was. `error` is taken by value: callers pass the job's own error, which the
  // update replaces.
  void EndJob(ActiveJob& active, tl::v1::Job::State state, std::string error,
              int failures = -1);
  // Back to the queue (or to PAUSED when a pause was asked for). A failure
  // counts against max_attempts; a refused assignment does not.
  void Requeue(ActiveJob& active, std::string why, bool counts_as_failure);
  void PauseStopped(ActiveJob& active);
  // Stores a batch of submits in one transaction and queues them; takes mutex_.
  void CommitSubmits(const std::vector<PendingSubmit*>& batch);
  void Dispatch();
  // The connected workers as placement sees them.
  std::vector<PlacementWorker> PlacementWorkers() const;
  // Sends each session its assignment; sessions[0] becomes rank 0.
  absl::Status Assign(ActiveJob& active, const std::vector<int64_t>& sessions);

  // --- Data-parallel gangs (scheduler_gang.cc) ---
  // The gang job a non-zero rank's session trains in, if it trains in this attempt.
  ActiveJob* ReplicaJob(int64_t session, const std::string& job_id, int attempt);
  // The worker on `session`, if it still runs `job_id`, runs it no longer as far as the
  // scheduler is concerned: told to stop when `cancel`, it takes no new job until it
  // reports its end.
  void LetGo(int64_t session, const std::string& job_id, bool cancel, const std::string& why);
  // The ranks > 0 still running are told to stop (cancel) or left to end
  // by themselves; either way they take no new job until they report
  // their end.
  void ReleaseReplicas(ActiveJob& active, bool cancel, const std::string& why);
  // Rank 0 likewise, when another rank ended the attempt.
  void StopRankZero(ActiveJob& active, const std::string& why);
  void SendToReplicas(const ActiveJob& active, const tl::v1::SchedulerMessage& message);
  void OnReplicaFinished(int64_t session, ActiveJob& active, const tl::v1::JobFinished& finished);
  // Whether a reconnecting worker claims its place in the job's gang.
  bool RejoinGang(int64_t session, WorkerState& worker, ActiveJob& active);
  bool OwnerAtRunningLimit(const std::string& owner) const;
  std::string PendingReason(const ActiveJob& active) const;
  // The stored job, if `caller` may use its outputs (see SubmitJob).
  absl::StatusOr<JobRecord> UsableSourceJob(const std::string& job_id, const Principal& caller);
  // Whether a repeat of a submit (same owner and request id) asks for what `earlier` holds.
  // Both specs are validated; `repeat_source` is the repeat's backbone.from_job as given. A
  // source named by a sweep's id resolves to whichever job is the sweep's result at the time,
  // and a model named by evaluate.from_job to that job's model path: a repeat that named the
  // same sweep or job is the same request even where its result has moved on since.
  bool SameSubmission(const tl::v1::JobSpec& earlier, tl::v1::JobSpec repeat,
                      const std::string& repeat_source);
  // The rule for backbone.from_job within it, for a job's spec and a sweep's base alike:
  // whether a repeat whose from_job is `repeat_job` (it named `repeat_source`) asks for another
  // id than `earlier_job` only because it named a sweep, and the earlier one holds that sweep's
  // id (stored before submit resolved it) or one of its trials.
  bool NamedTheEarlierSourcesSweep(const std::string& earlier_job, const std::string& repeat_job,
                                   const std::string& repeat_source);
  // The job as `caller` sees it, if it may act on it: an active one from memory (with why it
  // waits), else from the store.
  absl::StatusOr<tl::v1::Job> VisibleJob(const std::string& job_id, const Principal& caller);
  // VisibleJob's active job, to change; FAILED_PRECONDITION once it has ended.
  absl::StatusOr<ActiveJob*> UnendedJob(const std::string& job_id, const Principal& caller);
  void ReleaseWorker(int64_t session);
  // A worker session that ended (stream gone, silent, replaced) no longer runs `job_id`:
  // as rank 0 (or a single worker) the job is orphaned since `orphaned_since` and returned;
  // as another rank it leaves the gang.
  ActiveJob* DetachSession(int64_t session, const std::string& job_id, absl::Time orphaned_since);
  // The job a worker message is about, if this session holds that attempt.
  ActiveJob* HeldJob(int64_t session, const std::string& job_id, int attempt);
  void OnStarted(int64_t session, const tl::v1::JobStarted& started);
  void OnEpoch(int64_t session, const tl::v1::EpochReport& report);
  // Whether the store holds this epoch with exactly these figures.
  bool IsStoredEpoch(const tl::v1::EpochReport& report);
  void OnProgress(int64_t session, const tl::v1::ProgressReport& report);
  void OnFinished(int64_t session, const tl::v1::JobFinished& finished);
  void OnLog(int64_t session, const tl::v1::JobLog& log);
  // The worker is shutting down: no more assignments to this session.
  void OnLeaving(int64_t session);
  // Requeue, then the worker gauges and the next placement: the job's worker is free.
  void RequeueAndPlace(ActiveJob& active, std::string why, bool counts_as_failure);
  void AdoptHeldJob(int64_t session, WorkerState& worker);
  // A worker that comes back under the id an orphaned job's attempt was
  // given to, without that attempt in its hello (`held_job_id`,
  // `held_attempt`), does not run it: a new process (the old one died), an
  // assignment lost with the old stream, a copy it fenced. The job is queued
  // again now (a failure counted, as a lost lease counts) rather than after
  // the lease.
  void RequeueJobsLeftBehind(const std::string& worker_id, const std::string& held_job_id,
                             int held_attempt);
  // The same for the jobs of the hello's worker process leased to an id of it
  // that its slots no longer connect under: it came back with another number
  // of slots (common/worker_slots.h).
  void RequeueJobsOfAnotherLayout(const tl::v1::WorkerHello& hello);
  absl::StatusOr<int64_t> ConnectWorkerLocked(
      const tl::v1::WorkerHello& hello, std::shared_ptr<WorkerConnection> connection,
      const Principal& credential, std::vector<std::shared_ptr<WorkerConnection>>* replaced);
  void UpdateWorkerMetrics();
  absl::Time Now() const { return absl::Now(); }
  void LeaseLoop();

  // --- Sweeps (scheduler_sweeps.cc) ---
  struct ActiveTrial {
    std::string job_id;
    tl::v1::Job::State state = tl::v1::Job::QUEUED;
    int epoch = 0;
    int epochs = 0;  // the trial's training.epochs: where its ASHA rungs lie
    std::optional<double> objective;
    std::optional<double> tie_break_loss;  // once SUCCEEDED: TrialTieBreakLoss
    std::string error;  // the job's
    bool changed = false;  // since watchers last heard
  };
  // A sweep that has not ended, and what it knows of its trials.
  struct ActiveSweep {
    SweepRecord sweep;
    std::vector<SpaceParameter> space;
    std::map<int, ActiveTrial> trials;  // by index
    // ASHA: rung epoch -> trial index -> objective there.
    std::map<int, std::map<int, double>> rungs;
  };
  // A trial's job as Persist stored it, for the sweep to follow.
  struct TrialChange {
    JobRecord job;
    std::optional<tl::v1::EpochMetrics> epoch;
  };
  // Serves the sweeps whose trials changed when it goes out of scope; declared after the lock
  // in calls that change jobs, so that it runs while the lock is still held.
  class ServeSweepsAtExit {
   public:
    explicit ServeSweepsAtExit(Scheduler& scheduler) : scheduler_(scheduler) {}
    ~ServeSweepsAtExit();
    ServeSweepsAtExit(const ServeSweepsAtExit&) = delete;
    ServeSweepsAtExit& operator=(const ServeSweepsAtExit&) = delete;

   private:
    Scheduler& scheduler_;
  };
  // The calls below require mutex_.
  absl::Status LoadSweeps();
  void NoteTrialChange(const JobRecord& job, const tl::v1::EpochMetrics* epoch);
  void ServeSweeps();
  void ServeAllSweeps();
  void ApplyTrialChange(ActiveSweep& active, const TrialChange& change);
  // Why ASHA stops `job`, a trial of an ASHA sweep, at the rung `epoch` reaches (nullopt: it
  // goes on, or the epoch is no rung). OnEpoch asks before it stores the epoch, and stores the
  // stop (MarkStopEarly) in the same transaction.
  std::optional<std::string> AshaStopAtEpoch(const JobRecord& job,
                                             const tl::v1::EpochMetrics& epoch) const;
  // The stored side of an ASHA stop: the cancel path, which ends the trial STOPPED_EARLY.
  static void MarkStopEarly(ActiveJob& next, const std::string& why);
  // Its message to the worker holding the trial (and the gang's other ranks).
  void SendStopEarly(const ActiveJob& active, const std::string& why);
  // Assesses the sweep (sweep_states.h) and acts on it: creates trials, stores a new state,
  // stops unended trials of an ended sweep, tells watchers. True when it created a job (to
  // be placed).
  bool ServeSweep(ActiveSweep& active);
  // The next trial of the search.
  absl::Status CreateTrial(ActiveSweep& active);
  // The refit: the best trial's recipe on every training image (SweepSpec.refit).
  absl::Status CreateRefit(ActiveSweep& active, const std::string& best_job_id);
  // A trial with this spec, index trials_created, stored with the sweep's new counter.
  absl::Status InsertTrial(ActiveSweep& active, const tl::v1::JobSpec& spec,
                           const std::string& description);
  absl::Status StoreSweep(ActiveSweep& active, const SweepRecord& next);
  std::map<tl::v1::Job::State, int> TrialStates(const ActiveSweep& active) const;
  void NotifySweep(ActiveSweep& active);
  absl::StatusOr<SweepRecord> VisibleSweep(const std::string& sweep_id, const Principal& caller);
  absl::StatusOr<ActiveSweep*> UnendedSweep(const std::string& sweep_id, const Principal& caller);
  absl::StatusOr<tl::v1::Sweep> SweepView(const SweepRecord& record, bool with_trials);
  // CancelJob, PauseJob and ResumeJob on a job already found (trials of a sweep).
  absl::StatusOr<tl::v1::Job> CancelActive(ActiveJob& active, const std::string& why);
  absl::StatusOr<tl::v1::Job> PauseActive(ActiveJob& active);
  absl::StatusOr<tl::v1::Job> ResumeActive(ActiveJob& active);

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
  std::map<std::string, std::vector<std::shared_ptr<LogFollower>>> log_followers_;
  std::map<tl::v1::Job::State, int64_t> state_counts_;
  std::map<std::string, OwnerLoad> owner_loads_;  // owners with active jobs
  bool draining_ = false;
  std::map<std::string, ActiveSweep> sweeps_;  // RUNNING and PAUSED sweeps
  std::map<tl::v1::Sweep::State, int64_t> sweep_state_counts_;
  std::map<std::string, std::vector<std::shared_ptr<SweepWatcher>>> sweep_watchers_;
  std::vector<TrialChange> trial_changes_;

  // The group commit of submissions (SubmitJob): a queue and whether a caller is committing.
  std::mutex submit_mutex_;
  std::condition_variable submit_done_;
  std::vector<PendingSubmit*> submit_queue_;
  bool submit_leader_active_ = false;

  std::mutex lease_mutex_;
  std::condition_variable lease_wakeup_;
  bool stopping_ = false;
  std::thread lease_thread_;
};

}  // namespace tl::server
