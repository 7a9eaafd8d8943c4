#include "worker/worker_agent.h"

#include <unistd.h>

#include <algorithm>
#include <random>
#include <thread>

#include "common/log.h"
#include "common/proto_text.h"

namespace tl::worker {
namespace {

using ::tl::v1::SchedulerMessage;
using ::tl::v1::WorkerMessage;

// Between attempts to reach the scheduler (plus up to half again, at random).
// The ceiling is low because a worker should be back within about a second
// of a restarted scheduler, well inside a lease of a few seconds; an attempt
// is one cheap connect.
constexpr auto kFirstBackoff = std::chrono::milliseconds(100);
constexpr auto kMaxBackoff = std::chrono::milliseconds(500);
// After the scheduler refused this worker (its token, its id, or a live session of the same id
// from another credential): that changes slowly, and every try costs the scheduler a log line.
constexpr auto kRefusedBackoff = std::chrono::seconds(5);

// Answers that say the scheduler is there and turned this worker away.
bool IsRefusal(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAUTHENTICATED ||
         code == grpc::StatusCode::PERMISSION_DENIED ||
         code == grpc::StatusCode::INVALID_ARGUMENT || code == grpc::StatusCode::ALREADY_EXISTS;
}

const std::string& JobIdOf(const WorkerMessage& message) {
  static const std::string kNone;
  switch (message.message_case()) {
    case WorkerMessage::kStarted:
      return message.started().job_id();
    case WorkerMessage::kEpoch:
      return message.epoch().job_id();
    case WorkerMessage::kProgress:
      return message.progress().job_id();
    case WorkerMessage::kFinished:
      return message.finished().job_id();
    case WorkerMessage::kLog:
      return message.log().job_id();
    default:
      return kNone;
  }
}

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
    std::lock_guard<std::mutex> lock(context_mutex_);
    if (context_ != nullptr) context_->TryCancel();
  }
  std::lock_guard<std::mutex> lock(stop_mutex_);
  stop_wakeup_.notify_all();
}

bool WorkerAgent::Release(std::chrono::milliseconds grace) {
  const auto deadline = Clock::now() + grace;
  std::string job_id;
  int attempt = 0;
  {
    // Under the runner's lock, so that no assignment starts a job after this looked.
    std::lock_guard<std::mutex> lock(runner_mutex_);
    releasing_ = true;
    if (runner_ != nullptr) {
      std::lock_guard<std::mutex> write_lock(write_mutex_);
      // A fenced job is no longer this worker's to report. Otherwise also a runner that has
      // just finished: its report may not have passed yet.
      if (runner_->job_id() != fenced_job_id_) {
        job_id = runner_->job_id();
        attempt = runner_->attempt();
      }
    }
    if (!job_id.empty() && !runner_->finished()) {
      LogInfo("job ", job_id, " stops to be handed back to the scheduler");
      runner_->Release();
    }
  }
  bool released = true;
  {
    std::unique_lock<std::mutex> lock(write_mutex_);
    // The job's final report (RELEASED, or whatever it ended with first) has passed, and no
    // result waits unwritten: written to a stream up now, or to one a reconnect within the
    // grace brings.
    const auto reported = [&] {
      const bool result_waits = std::any_of(unsent_.begin(), unsent_.end(),
                                            [](const WorkerMessage& m) { return m.has_finished(); });
      return !result_waits &&
             (job_id.empty() || (last_finished_.first == job_id && last_finished_.second == attempt));
    };
    released = result_written_.wait_until(lock, deadline, reported);
    // No reconnect after this stream.
    stopping_ = true;
    if (stream_ != nullptr) {
      // Leaving only once the job is reported: the scheduler takes an ASSIGNED job of a leaving
      // worker for an assignment that never ran. The half-close then lets it read all that was
      // written before it ends the stream, which a cancel could discard.
      if (released) {
        WorkerMessage leaving;
        leaving.mutable_leaving();
        stream_->Write(leaving);
      }
      stream_->WritesDone();
      stream_ = nullptr;
    } else {
      lock.unlock();
      Stop();  // a stream still being set up, if any, has nothing to drain
    }
  }
  {
    std::unique_lock<std::mutex> lock(stop_mutex_);
    stop_wakeup_.wait_until(lock, deadline, [this] { return stream_closed_; });
  }
  if (!released) {
    LogWarning("job ", job_id, " could not be handed back within ",
               std::chrono::duration_cast<std::chrono::seconds>(grace).count(),
               " s; the scheduler requeues it after its lease");
  }
  Stop();
  return released;
}

void WorkerAgent::Run() {
  // gRPC's own reconnect backoff grows to two minutes, and a call made while the channel
  // waits fails at once: after a scheduler restart the worker would stay away for many
  // seconds whatever the agent's own backoff. The channel retries as often as the agent.
  // (GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is left alone: it is the time one connection attempt
  // may take, 20 s, which a slow link or a busy scheduler after a restart may need.)
  grpc::ChannelArguments channel_arguments;
  channel_arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                           static_cast<int>(kFirstBackoff.count()));
  channel_arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                           static_cast<int>(kMaxBackoff.count()));
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
      options_.server_address,
      options_.credentials != nullptr ? options_.credentials
                                      : grpc::InsecureChannelCredentials(),
      channel_arguments);
  std::unique_ptr<tl::v1::WorkerService::Stub> stub = tl::v1::WorkerService::NewStub(channel);
  auto backoff = kFirstBackoff;
  std::mt19937 jitter(std::random_device{}());
  while (!stopping_) {
    const auto started = Clock::now();
    const grpc::StatusCode ended = Serve(*stub);
    if (stopping_) break;
    // A stream that lasted a while was healthy: start the backoff over.
    if (Clock::now() - started > std::chrono::seconds(10)) backoff = kFirstBackoff;
    FenceIfCutOff();
    const bool refused = IsRefusal(ended);
    const auto wait =
        refused ? std::chrono::duration_cast<std::chrono::milliseconds>(kRefusedBackoff)
                : backoff + std::chrono::milliseconds(jitter() % (backoff.count() / 2 + 1));
    const auto next_attempt = Clock::now() + wait;
    // The backoff is spent waiting on the channel, not asleep: gRPC learns that a connection
    // attempt made in the background has finished only while some thread polls the channel,
    // and with every call failing fast nobody does but its backup poller, every 5 s. A
    // scheduler back within a second was found 5 to 10 s later, past a short lease.
    if (!refused) {
      channel->WaitForConnected(std::chrono::system_clock::now() + wait);
    }
    std::unique_lock<std::mutex> lock(stop_mutex_);
    stop_wakeup_.wait_until(lock, next_attempt, [this] { return stopping_.load(); });
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

WorkerMessage WorkerAgent::Hello() {
  WorkerMessage message;
  tl::v1::WorkerHello& hello = *message.mutable_hello();
  hello.set_worker_id(options_.worker_id);
  char hostname[256] = {};
  gethostname(hostname, sizeof(hostname) - 1);
  hello.set_hostname(hostname);
  for (const tl::v1::Device& device : options_.devices) *hello.add_devices() = device;
  hello.set_replica_address(options_.settings.replica_address);
  hello.set_rendezvous_port(options_.settings.rendezvous_port);
  hello.set_slot_of(options_.slot_of);
  hello.set_slot(options_.slot);
  hello.set_slots(options_.slots);
  // The job this worker holds: one still running, else one whose result the
  // scheduler may not have yet.
  std::lock_guard<std::mutex> runner_lock(runner_mutex_);
  ReapFinishedRunner();
  std::lock_guard<std::mutex> write_lock(write_mutex_);
  if (runner_ != nullptr && runner_->job_id() != fenced_job_id_) {
    hello.set_held_job_id(runner_->job_id());
    hello.set_held_attempt(runner_->attempt());
    return message;
  }
  for (auto it = unsent_.rbegin(); it != unsent_.rend(); ++it) {
    if (it->has_finished()) {
      hello.set_held_job_id(it->finished().job_id());
      hello.set_held_attempt(it->finished().attempt());
      return message;
    }
  }
  if (last_result_) {
    hello.set_held_job_id(last_result_->finished().job_id());
    hello.set_held_attempt(last_result_->finished().attempt());
  }
  return message;
}

grpc::StatusCode WorkerAgent::Serve(tl::v1::WorkerService::Stub& stub) {
  grpc::ClientContext context;
  if (!options_.token.empty()) context.AddMetadata("authorization", "Bearer " + options_.token);
  {
    std::lock_guard<std::mutex> lock(context_mutex_);
    if (stopping_) return grpc::StatusCode::CANCELLED;
    context_ = &context;
  }
  {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    stream_closed_ = false;
  }
  std::unique_ptr<Stream> stream = stub.Connect(&context);
  const WorkerMessage hello = Hello();
  bool hello_sent = false;
  {
    std::lock_guard<std::mutex> lock(write_mutex_);
    hello_sent = stream->Write(hello);
  }

  std::thread heartbeat;
  std::mutex heartbeat_mutex;
  std::condition_variable heartbeat_wakeup;
  bool stream_over = false;
  bool welcomed = false;
  SchedulerMessage message;
  while (hello_sent && stream->Read(&message)) {
    {
      std::lock_guard<std::mutex> lock(timing_mutex_);
      last_contact_ = Clock::now();
    }
    switch (message.message_case()) {
      case SchedulerMessage::kWelcome: {
        {
          std::lock_guard<std::mutex> lock(timing_mutex_);
          if (message.welcome().lease_timeout_ms() > 0) {
            lease_ = std::chrono::milliseconds(message.welcome().lease_timeout_ms());
          }
        }
        if (!welcomed) StartReporting(stream.get(), hello.hello(), message.welcome());
        welcomed = true;
        if (heartbeat.joinable()) break;
        const int interval_ms = std::max(50, message.welcome().heartbeat_interval_ms());
        const bool answered = message.welcome().answers_heartbeats();
        if (disconnected_since_) {
          const auto away = std::chrono::duration_cast<std::chrono::milliseconds>(
              Clock::now() - *disconnected_since_);
          LogInfo("connected to ", options_.server_address, " as ", options_.worker_id,
                  " after ", away.count(), " ms without a stream");
          disconnected_since_.reset();
        } else {
          LogInfo("connected to ", options_.server_address, " as ", options_.worker_id);
        }
        heartbeat = std::thread([&, interval_ms, answered] {
          std::unique_lock<std::mutex> lock(heartbeat_mutex);
          while (!heartbeat_wakeup.wait_for(lock, std::chrono::milliseconds(interval_ms),
                                            [&] { return stream_over; })) {
            // A stream can stay open with nobody at the other end (a hung scheduler, a
            // connection cut without a reset); with heartbeats answered, a lease of silence
            // means that, and the stream is ended so that the job is fenced.
            if (answered && SilentForALease()) {
              LogWarning("no answer from the scheduler for longer than the lease; "
                         "ending the stream");
              std::lock_guard<std::mutex> context_lock(context_mutex_);
              if (context_ != nullptr) context_->TryCancel();
              break;
            }
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
      case SchedulerMessage::kPause:
        HandlePause(message.pause());
        break;
      case SchedulerMessage::kHeartbeat:
        break;  // contact, counted above
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
  }
  {
    std::lock_guard<std::mutex> lock(context_mutex_);
    context_ = nullptr;
  }
  const grpc::Status status = stream->Finish();
  {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    stream_closed_ = true;
  }
  stop_wakeup_.notify_all();
  if (stopping_) return status.error_code();
  if (welcomed) {
    disconnected_since_ = Clock::now();
    unreachable_reported_ = false;
    LogWarning(options_.worker_id, ": stream to ", options_.server_address,
               " ended: ", status.error_message(),
               " (code ", static_cast<int>(status.error_code()), "); reconnecting");
  } else if (IsRefusal(status.error_code())) {
    if (status.error_message() != last_refusal_) {
      last_refusal_ = status.error_message();
      LogError("the scheduler at ", options_.server_address, " refused worker ",
               options_.worker_id, ": ",
               status.error_message(), " (code ", static_cast<int>(status.error_code()),
               "); trying again every ", kRefusedBackoff.count(), " s");
    }
  } else if (!unreachable_reported_) {
    // Said once per outage: the agent retries about every half second until it is back.
    unreachable_reported_ = true;
    LogWarning(options_.worker_id, ": cannot reach the scheduler at ", options_.server_address,
               ": ",
               status.error_message(), " (code ", static_cast<int>(status.error_code()),
               "); retrying");
  }
  if (welcomed) last_refusal_.clear();
  return status.error_code();
}

void WorkerAgent::StartReporting(Stream* stream, const tl::v1::WorkerHello& hello,
                                 const tl::v1::Welcome& welcome) {
  std::lock_guard<std::mutex> lock(write_mutex_);
  stream_ = stream;
  // Epochs and a result written before the last stream broke may never have arrived: they are
  // sent again, in their order and before anything newer (the scheduler stores each epoch once
  // and ignores a duplicate result), but not those the Welcome says are stored already: a long
  // job would otherwise send all its epochs again after every reconnect.
  written_epochs_.erase(
      std::remove_if(written_epochs_.begin(), written_epochs_.end(),
                     [&](const WorkerMessage& m) {
                       return m.epoch().job_id() == hello.held_job_id() &&
                              m.epoch().metrics().epoch() <= welcome.held_job_epoch();
                     }),
      written_epochs_.end());
  unsent_.insert(unsent_.begin(), written_epochs_.begin(), written_epochs_.end());
  const bool queued = std::any_of(unsent_.begin(), unsent_.end(),
                                  [](const WorkerMessage& m) { return m.has_finished(); });
  if (last_result_ && !queued) unsent_.push_back(*last_result_);
  FlushLocked();
}

void WorkerAgent::ReapFinishedRunner() {
  if (runner_ != nullptr && runner_->finished()) {
    runner_->Join();
    runner_.reset();
  }
}

void WorkerAgent::Refuse(const tl::v1::Assignment& assignment, const std::string& why) {
  LogWarning("assignment of job ", assignment.job_id(), " refused: ", why);
  WorkerMessage refusal;
  tl::v1::JobFinished& finished = *refusal.mutable_finished();
  finished.set_job_id(assignment.job_id());
  finished.set_attempt(assignment.attempt());
  finished.set_outcome(tl::v1::JobFinished::REFUSED);
  finished.set_error(why);
  std::lock_guard<std::mutex> write_lock(write_mutex_);
  if (stream_ != nullptr) stream_->Write(refusal);
}

void WorkerAgent::HandleAssignment(const tl::v1::Assignment& assignment) {
  std::lock_guard<std::mutex> lock(runner_mutex_);
  if (releasing_) {
    // Before anything else: the last result must stay until the stream ends, and the runner
    // being released must not be joined for this.
    Refuse(assignment, "worker " + options_.worker_id + " is shutting down");
    return;
  }
  {
    // Being given new work means the scheduler has this worker's last result.
    std::lock_guard<std::mutex> write_lock(write_mutex_);
    last_result_.reset();
    written_epochs_.clear();
  }
  ReapFinishedRunner();
  if (runner_ != nullptr && runner_->cancel_requested()) {
    // A cancelled job stops before its next batch; wait for it rather than
    // turn the new job away.
    runner_->Join();
    runner_.reset();
  }
  if (runner_ != nullptr) {
    Refuse(assignment,
           "worker " + options_.worker_id + " was still busy with job " + runner_->job_id());
    return;
  }
  {
    std::lock_guard<std::mutex> write_lock(write_mutex_);
    fenced_job_id_.clear();  // the fenced runner is gone; this job reports normally
  }
  runner_ = std::make_unique<JobRunner>(assignment, options_.settings,
                                        [this](const WorkerMessage& report) { Report(report); });
  runner_->Start();
}

void WorkerAgent::HandleCancel(const tl::v1::CancelAssignment& cancel) {
  std::lock_guard<std::mutex> lock(runner_mutex_);
  if (runner_ != nullptr && runner_->job_id() == cancel.job_id() && !runner_->finished()) {
    LogInfo("job ", cancel.job_id(), " cancel requested: ", cancel.reason());
    runner_->Cancel();
    return;
  }
  // A result the scheduler no longer wants: the job ended or moved on.
  std::lock_guard<std::mutex> write_lock(write_mutex_);
  unsent_.erase(std::remove_if(unsent_.begin(), unsent_.end(),
                               [&](const WorkerMessage& m) {
                                 return m.has_finished() &&
                                        m.finished().job_id() == cancel.job_id();
                               }),
                unsent_.end());
  if (last_result_ && last_result_->finished().job_id() == cancel.job_id()) last_result_.reset();
}

void WorkerAgent::HandlePause(const tl::v1::PauseAssignment& pause) {
  std::lock_guard<std::mutex> lock(runner_mutex_);
  if (runner_ != nullptr && runner_->job_id() == pause.job_id() && !runner_->finished()) {
    LogInfo("job ", pause.job_id(), " pause requested; it stops after this epoch");
    runner_->Pause();
  }
}

void WorkerAgent::Report(const WorkerMessage& report) {
  // File and folder names from disk, and exception texts, need not be UTF-8.
  WorkerMessage message = report;
  EscapeMalformedUtf8In(message);
  std::lock_guard<std::mutex> lock(write_mutex_);
  if (message.has_finished()) {
    // Passed, whether it is written, waits for a stream or is dropped below.
    last_finished_ = {message.finished().job_id(), message.finished().attempt()};
    result_written_.notify_all();
  }
  if (!fenced_job_id_.empty() && JobIdOf(message) == fenced_job_id_) return;
  if (message.has_progress()) {
    // Progress is only for people watching: dropped when not connected.
    if (stream_ != nullptr && unsent_.empty()) stream_->Write(message);
    return;
  }
  unsent_.push_back(message);
  FlushLocked();
}

void WorkerAgent::FlushLocked() {
  while (stream_ != nullptr && !unsent_.empty()) {
    if (!stream_->Write(unsent_.front())) return;  // the reader will see the break
    if (unsent_.front().has_finished()) {
      last_result_ = unsent_.front();
      result_written_.notify_all();
    }
    if (unsent_.front().has_epoch()) written_epochs_.push_back(unsent_.front());
    unsent_.pop_front();
  }
}

bool WorkerAgent::SilentForALease() {
  std::lock_guard<std::mutex> lock(timing_mutex_);
  return Clock::now() - last_contact_ > lease_;
}

void WorkerAgent::FenceIfCutOff() {
  if (!SilentForALease()) return;
  std::lock_guard<std::mutex> lock(runner_mutex_);
  if (runner_ == nullptr || runner_->finished() || runner_->cancel_requested()) return;
  LogWarning("no contact with the scheduler for longer than the lease; stopping job ",
             runner_->job_id(), ", which the scheduler has given back to the queue");
  {
    std::lock_guard<std::mutex> write_lock(write_mutex_);
    fenced_job_id_ = runner_->job_id();
    unsent_.erase(std::remove_if(unsent_.begin(), unsent_.end(),
                                 [&](const WorkerMessage& m) {
                                   return JobIdOf(m) == fenced_job_id_;
                                 }),
                  unsent_.end());
  }
  runner_->Cancel();
}

}  // namespace tl::worker
