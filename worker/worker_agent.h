// The worker's side of tl.v1.WorkerService.Connect: keeps one stream to the
// scheduler open (reconnecting with backoff), heartbeats, runs the jobs it
// is assigned one at a time (a worker with slots runs one agent per slot,
// worker/slot_options.h), and makes sure that a job's epochs and result
// reach the scheduler even across a reconnect.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "tl/v1/service.grpc.pb.h"
#include "worker/job_runner.h"

namespace tl::worker {

struct AgentOptions {
  std::string server_address;
  // Insecure when null.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Sent as "authorization: Bearer TOKEN" when not empty.
  std::string token;
  std::string worker_id;
  // One slot of a worker process that runs several jobs at once
  // (common/worker_slots.h): the process's worker id, this slot's number
  // (1 to slots) and how many it runs; worker_id is then the slot's own.
  // Unset for a worker of one slot.
  std::string slot_of;
  int slot = 0;
  int slots = 0;
  WorkerSettings settings;
  std::vector<tl::v1::Device> devices;
};

class WorkerAgent {
 public:
  explicit WorkerAgent(AgentOptions options);
  ~WorkerAgent();

  // Connects and serves until Stop(); returns then.
  void Run();
  // Safe from any thread (a signal-watching one included).
  void Stop();
  // The worker is shutting down: stops the running job before its next
  // batch, reports it RELEASED (the scheduler queues it again at once, to
  // resume from its checkpoint elsewhere), refuses new assignments, closes
  // the stream and stops, all within `grace`. Past it, it stops anyway, and
  // a job it could not report waits out its lease, as after a crash. True
  // when the scheduler has the job back (or there was none).
  bool Release(std::chrono::milliseconds grace);

  const AgentOptions& options() const { return options_; }

 private:
  using Stream = grpc::ClientReaderWriter<tl::v1::WorkerMessage, tl::v1::SchedulerMessage>;
  using Clock = std::chrono::steady_clock;

  // One connection's life; returns how the stream ended.
  grpc::StatusCode Serve(tl::v1::WorkerService::Stub& stub);
  tl::v1::WorkerMessage Hello();
  // Once the Welcome has come: reports go to `stream` from now on, starting with those that
  // may have been lost with the last stream.
  void StartReporting(Stream* stream, const tl::v1::WorkerHello& hello,
                      const tl::v1::Welcome& welcome);
  void HandleAssignment(const tl::v1::Assignment& assignment);
  // Answers an assignment with REFUSED: the job goes back to the queue without an attempt used.
  void Refuse(const tl::v1::Assignment& assignment, const std::string& why);
  void HandleCancel(const tl::v1::CancelAssignment& cancel);
  void HandlePause(const tl::v1::PauseAssignment& pause);
  // Called by the runner's thread for every report.
  void Report(const tl::v1::WorkerMessage& message);
  // Writes what waits in unsent_ while a stream is up. Needs write_mutex_.
  void FlushLocked();
  // Reaps a runner that has ended. Needs runner_mutex_.
  void ReapFinishedRunner();
  // Stops the running job without reporting it when the scheduler has been
  // out of reach for longer than a lease: by then the job belongs to
  // another worker, and two copies must not write one job's files.
  void FenceIfCutOff();
  // Whether nothing has come from the scheduler for longer than a lease.
  bool SilentForALease();

  const AgentOptions options_;
  std::atomic<bool> stopping_{false};
  // Release() has begun: assignments are refused. Set under runner_mutex_.
  std::atomic<bool> releasing_{false};

  std::mutex context_mutex_;  // guards context_ alone, so Stop() never waits on a write
  grpc::ClientContext* context_ = nullptr;

  std::mutex write_mutex_;  // one writer at a time on the stream; guards below
  Stream* stream_ = nullptr;
  // Reports that must not be lost (started, epochs, result), in order; sent
  // when a stream is up, kept across reconnects until written.
  std::deque<tl::v1::WorkerMessage> unsent_;
  // The last result written, kept until the scheduler shows it has it (a
  // new assignment, or a cancel of that job): a write can succeed locally
  // and still be lost with the connection.
  std::optional<tl::v1::WorkerMessage> last_result_;
  // A result passed Report(), or went to the stream.
  std::condition_variable result_written_;
  // The job and attempt of the last result that passed Report().
  std::pair<std::string, int> last_finished_;
  // The current job's epoch reports written so far, for the same reason:
  // sent again after a reconnect.
  std::vector<tl::v1::WorkerMessage> written_epochs_;
  // A fenced job: its reports are dropped.
  std::string fenced_job_id_;

  std::mutex runner_mutex_;
  std::unique_ptr<JobRunner> runner_;

  std::mutex timing_mutex_;  // guards the two below
  Clock::time_point last_contact_ = Clock::now();
  std::chrono::milliseconds lease_{30000};

  std::mutex stop_mutex_;
  std::condition_variable stop_wakeup_;
  bool stream_closed_ = true;  // guarded by stop_mutex_: no stream of Serve's is open

  // Touched only by Run()'s thread: since when no stream has been up (for
  // the reconnect time in the log), and whether this outage was logged.
  std::optional<Clock::time_point> disconnected_since_;
  bool unreachable_reported_ = false;
  // The last refusal logged, so that one repeated every few seconds is logged once.
  std::string last_refusal_;
};

}  // namespace tl::worker
