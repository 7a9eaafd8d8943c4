// The worker's side of tl.v1.WorkerService.Connect: keeps one stream to the
// scheduler open (reconnecting with backoff), heartbeats, runs the jobs it
// is assigned one at a time, and makes sure that a job's epochs and result
// reach the scheduler even across a reconnect.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "tl/v1/service.grpc.pb.h"
#include "worker/job_runner.h"

namespace tl::worker {

struct AgentOptions {
  std::string server_address;
  std::string worker_id;
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

 private:
  using Stream = grpc::ClientReaderWriter<tl::v1::WorkerMessage, tl::v1::SchedulerMessage>;

  // One connection's life; returns when the stream ends.
  void Serve(tl::v1::WorkerService::Stub& stub);
  void HandleAssignment(const tl::v1::Assignment& assignment);
  void HandleCancel(const tl::v1::CancelAssignment& cancel);
  // Called by the runner's thread for every report.
  void Report(const tl::v1::WorkerMessage& message);
  // Writes what waits in unsent_ while a stream is up. Needs write_mutex_.
  void FlushLocked();
  void HeartbeatLoop(int interval_ms);
  void ReapFinishedRunner();

  const AgentOptions options_;
  std::atomic<bool> stopping_{false};

  std::mutex write_mutex_;  // one writer at a time on the stream; guards below
  Stream* stream_ = nullptr;
  grpc::ClientContext* context_ = nullptr;
  // Reports that must not be lost (started, epochs, result), in order; sent
  // when a stream is up, kept across reconnects until written.
  std::deque<tl::v1::WorkerMessage> unsent_;

  std::mutex runner_mutex_;
  std::unique_ptr<JobRunner> runner_;
  // The job whose result is still in unsent_ (for the hello after a
  // reconnect), when the runner has already gone.
  std::string unreported_job_id_;
  int unreported_attempt_ = 0;

  std::mutex stop_mutex_;
  std::condition_variable stop_wakeup_;
};

}  // namespace tl::worker
