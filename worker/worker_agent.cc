#include "worker/worker_agent.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include "common/log.h"

namespace tl::worker {
namespace {

using ::tl::v1::SchedulerMessage;
using ::tl::v1::WorkerMessage;

constexpr auto kFirstBackoff = std::chrono::milliseconds(100);
constexpr auto kMaxBackoff = std::chrono::milliseconds(5000);

}  // namespace

WorkerAgent::WorkerAgent(AgentOptions options) : options_(std::move(options)) {}

WorkerAgent::~WorkerAgent() {
  Stop();
  std::lock_guard<std::mutex> lock(runner_mutex_);
  runner_.reset();  // cancels and joins
}

void WorkerAgent::Stop() {
  stopping_ = true;
  {
    std::lock_guard<std::mutex> lock(write_mutex_);
    if (context_ != nullptr) context_->TryCancel();
  }
  stop_wakeup_.notify_all();
}

void WorkerAgent::Run() {
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(options_.server_address, grpc::InsecureChannelCredentials());
  std::unique_ptr<tl::v1::WorkerService::Stub> stub = tl::v1::WorkerService::NewStub(channel);
  auto backoff = kFirstBackoff;
  std::mt19937 jitter(std::random_device{}());
  while (!stopping_) {
    const auto started = std::chrono::steady_clock::now();
    Serve(*stub);
    if (stopping_) break;
    // A stream that lasted a while was healthy: start the backoff over.
    if (std::chrono::steady_clock::now() - started > std::chrono::seconds(10)) {
      backoff = kFirstBackoff;
    }
    const auto wait = backoff + std::chrono::milliseconds(jitter() % (backoff.count() / 2 + 1));
    std::unique_lock<std::mutex> lock(stop_mutex_);
    stop_wakeup_.wait_for(lock, wait, [this] { return stopping_.load(); });
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

void WorkerAgent::Serve(tl::v1::WorkerService::Stub& stub) {
  grpc::ClientContext context;
  std::unique_ptr<Stream> stream = stub.Connect(&context);

  WorkerMessage hello_message;
  tl::v1::WorkerHello& hello = *hello_message.mutable_hello();
  hello.set_worker_id(options_.worker_id);
  char hostname[256] = {};
  gethostname(hostname, sizeof(hostname) - 1);
  hello.set_hostname(hostname);
  for (const tl::v1::Device& device : options_.devices) *hello.add_devices() = device;
  {
    std::lock_guard<std::mutex> lock(runner_mutex_);
    ReapFinishedRunner();
    if (runner_ != nullptr) {
      hello.set_held_job_id(runner_->job_id());
      hello.set_held_attempt(runner_->attempt());
    } else if (!unreported_job_id_.empty()) {
      hello.set_held_job_id(unreported_job_id_);
      hello.set_held_attempt(unreported_attempt_);
    }
  }
  {
    std::lock_guard<std::mutex> lock(write_mutex_);
    if (stopping_) return;
    if (!stream->Write(hello_message)) {
      stream->Finish();
      return;
    }
    stream_ = stream.get();
    context_ = &context;
    FlushLocked();
  }

  std::thread heartbeat;
  std::mutex heartbeat_mutex;
  std::condition_variable heartbeat_wakeup;
  bool stream_over = false;
  SchedulerMessage message;
  while (stream->Read(&message)) {
    switch (message.message_case()) {
      case SchedulerMessage::kWelcome: {
        if (heartbeat.joinable()) break;
        const int interval_ms = std::max(50, message.welcome().heartbeat_interval_ms());
        LogInfo("connected to ", options_.server_address, " as ", options_.worker_id);
        heartbeat = std::thread([&, interval_ms] {
          std::unique_lock<std::mutex> lock(heartbeat_mutex);
          while (!heartbeat_wakeup.wait_for(lock, std::chrono::milliseconds(interval_ms),
                                            [&] { return stream_over; })) {
            WorkerMessage beat;
            beat.mutable_heartbeat();
            std::lock_guard<std::mutex> write_lock(write_mutex_);
            if (stream_ != nullptr) stream_->Write(beat);
          }
        });
        break;
      }
      case SchedulerMessage::kAssignment:
        HandleAssignment(message.assignment());
        break;
      case SchedulerMessage::kCancel:
        HandleCancel(message.cancel());
        break;
      case SchedulerMessage::MESSAGE_NOT_SET:
        break;
    }
  }
  {
    std::lock_guard<std::mutex> lock(heartbeat_mutex);
    stream_over = true;
  }
  heartbeat_wakeup.notify_all();
  if (heartbeat.joinable()) heartbeat.join();
  {
    std::lock_guard<std::mutex> lock(write_mutex_);
    stream_ = nullptr;
    context_ = nullptr;
  }
  const grpc::Status status = stream->Finish();
  if (!stopping_) {
    LogWarning("stream to ", options_.server_address, " ended: ", status.error_message(),
               " (code ", static_cast<int>(status.error_code()), "); reconnecting");
  }
}

void WorkerAgent::ReapFinishedRunner() {
  if (runner_ != nullptr && runner_->finished()) {
    runner_->Join();
    runner_.reset();
  }
}

void WorkerAgent::HandleAssignment(const tl::v1::Assignment& assignment) {
  std::lock_guard<std::mutex> lock(runner_mutex_);
  ReapFinishedRunner();
  if (runner_ != nullptr) {
    // The scheduler believes this worker idle while it is not: refuse by
    // reporting the assignment failed rather than running two jobs at once.
    LogWarning("assignment of job ", assignment.job_id(), " while job ", runner_->job_id(),
               " runs; refusing it");
    WorkerMessage refusal;
    tl::v1::JobFinished& finished = *refusal.mutable_finished();
    finished.set_job_id(assignment.job_id());
    finished.set_attempt(assignment.attempt());
    finished.set_outcome(tl::v1::JobFinished::FAILED);
    finished.set_error("worker " + options_.worker_id + " was busy with another job");
    Report(refusal);
    return;
  }
  runner_ = std::make_unique<JobRunner>(assignment, options_.settings,
                                        [this](const WorkerMessage& report) { Report(report); });
  runner_->Start();
}

void WorkerAgent::HandleCancel(const tl::v1::CancelAssignment& cancel) {
  std::lock_guard<std::mutex> lock(runner_mutex_);
  if (runner_ != nullptr && runner_->job_id() == cancel.job_id()) {
    LogInfo("job ", cancel.job_id(), " cancel requested: ", cancel.reason());
    runner_->Cancel();
    return;
  }
  // A result waiting for delivery of a job the scheduler gave up on.
  std::lock_guard<std::mutex> write_lock(write_mutex_);
  if (unreported_job_id_ == cancel.job_id()) {
    unsent_.erase(std::remove_if(unsent_.begin(), unsent_.end(),
                                 [&](const WorkerMessage& m) {
                                   return m.has_finished() &&
                                          m.finished().job_id() == cancel.job_id();
                                 }),
                  unsent_.end());
    unreported_job_id_.clear();
  }
}

void WorkerAgent::Report(const WorkerMessage& message) {
  std::lock_guard<std::mutex> lock(write_mutex_);
  if (message.has_progress()) {
    // Progress is only for people watching: dropped when not connected.
    if (stream_ != nullptr && unsent_.empty()) stream_->Write(message);
    return;
  }
  if (message.has_finished()) {
    unreported_job_id_ = message.finished().job_id();
    unreported_attempt_ = message.finished().attempt();
  }
  unsent_.push_back(message);
  FlushLocked();
}

void WorkerAgent::FlushLocked() {
  while (stream_ != nullptr && !unsent_.empty()) {
    if (!stream_->Write(unsent_.front())) return;  // the reader will see the break
    if (unsent_.front().has_finished() &&
        unsent_.front().finished().job_id() == unreported_job_id_) {
      unreported_job_id_.clear();
    }
    unsent_.pop_front();
  }
}

}  // namespace tl::worker
