#include "server/api/grpc_services.h"

#include <atomic>
#include <deque>
#include <mutex>

#include "common/grpc_status.h"
#include "common/log.h"

namespace tl::server {
namespace {

using ::tl::v1::JobEvent;
using ::tl::v1::SchedulerMessage;
using ::tl::v1::WorkerMessage;

grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

template <typename Message>
grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context,
                                absl::StatusOr<Message> result, Message* response) {
  if (result.ok()) *response = *std::move(result);
  return Reply(context, result.status());
}

// Queue of outgoing messages for a stream with one write in flight. The
// reactor calls back into it; the scheduler pushes into it from any thread.
// After the reactor is gone (Detach), pushes are refused.
template <typename Message>
class Outbox {
 public:
  using StartWrite = std::function<void(const Message*)>;
  using Finish = std::function<void(const grpc::Status&)>;

  Outbox(StartWrite start_write, Finish finish, size_t droppable_limit)
      : start_write_(std::move(start_write)),
        finish_(std::move(finish)),
        droppable_limit_(droppable_limit) {}

  // `droppable` messages (progress) are dropped while the queue is long, so
  // that a slow reader cannot make the server hold unbounded memory.
  bool Push(const Message& message, bool droppable) {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    if (detached_ || finishing_) return false;
    if (droppable && pending_.size() >= droppable_limit_) return true;
    pending_.push_back(message);
    Pump();
    return true;
  }
  // Finishes the stream once every queued message is written.
  void FinishAfterDrain(const grpc::Status& status) {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    if (detached_ || finishing_) return;
    finish_status_ = status;
    drain_then_finish_ = true;
    Pump();
  }
  // Finishes now, dropping what is queued (cancellation, shutdown).
  void FinishNow(const grpc::Status& status) {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    if (detached_ || finishing_) return;
    finishing_ = true;
    pending_.clear();
    finish_(status);
  }
  void WriteDone(bool ok) {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    writing_ = false;
    if (!ok) {
      if (!finishing_ && !detached_) {
        finishing_ = true;
        pending_.clear();
        finish_(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the client went away"));
      }
      return;
    }
    Pump();
  }
  void Detach() {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    detached_ = true;
  }
  bool detached() {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    return detached_ || finishing_;
  }

 private:
  void Pump() {
    if (writing_ || finishing_ || detached_) return;
    if (!pending_.empty()) {
      in_flight_ = std::move(pending_.front());
      pending_.pop_front();
      writing_ = true;
      start_write_(&in_flight_);
      return;
    }
    if (drain_then_finish_) {
      finishing_ = true;
      finish_(finish_status_);
    }
  }

  StartWrite start_write_;
  Finish finish_;
  const size_t droppable_limit_;
  // Recursive: gRPC may run a reaction on the thread that started the
  // operation, and that reaction re-enters the outbox.
  std::recursive_mutex mutex_;
  std::deque<Message> pending_;
  Message in_flight_;
  bool writing_ = false;
  bool drain_then_finish_ = false;
  bool finishing_ = false;
  bool detached_ = false;
  grpc::Status finish_status_;
};

const grpc::Status kShuttingDown(grpc::StatusCode::UNAVAILABLE,
                                 "the server is shutting down; call again to continue");

// Counts a unary call from the start of its handler to its reply (handlers
// reply before they return).
class InFlight {
 public:
  explicit InFlight(std::atomic<int>& count) : count_(count) { ++count_; }
  ~InFlight() { --count_; }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  std::atomic<int>& count_;
};

// The "authorization" header, empty when absent.
std::string AuthorizationHeader(grpc::CallbackServerContext* context) {
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

class WatchReactor final : public grpc::ServerWriteReactor<JobEvent> {
 public:
  WatchReactor(Scheduler& scheduler, const absl::StatusOr<Principal>& caller,
               const tl::v1::WatchJobRequest& request) {
    outbox_ = std::make_shared<Outbox<JobEvent>>(
        [this](const JobEvent* event) { StartWrite(event); },
        [this](const grpc::Status& status) { Finish(status); }, /*droppable_limit=*/64);
    watcher_ = std::make_shared<Watcher>(outbox_);
    absl::Status status = caller.status();
    if (status.ok()) {
      status = scheduler.WatchJob(request.job_id(), watcher_, request.after_sequence(), *caller);
    }
    if (!status.ok()) outbox_->FinishNow(ToGrpcStatus(status));
  }

  void OnWriteDone(bool ok) override { outbox_->WriteDone(ok); }
  void OnCancel() override {
    outbox_->FinishNow(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
  }
  void OnDone() override {
    outbox_->Detach();
    delete this;
  }

 private:
  class Watcher final : public JobWatcher {
   public:
    explicit Watcher(std::shared_ptr<Outbox<JobEvent>> outbox) : outbox_(std::move(outbox)) {}
    bool Deliver(const JobEvent& event) override {
      return outbox_->Push(event, /*droppable=*/event.has_progress());
    }
    bool Gone() const override { return outbox_->detached(); }
    void Finish() override { outbox_->FinishAfterDrain(grpc::Status::OK); }
    void Interrupt() override { outbox_->FinishAfterDrain(kShuttingDown); }

   private:
    std::shared_ptr<Outbox<JobEvent>> outbox_;
  };

  std::shared_ptr<Outbox<JobEvent>> outbox_;
  std::shared_ptr<Watcher> watcher_;
};

class WatchSweepReactor final : public grpc::ServerWriteReactor<tl::v1::SweepEvent> {
 public:
  WatchSweepReactor(Scheduler& scheduler, const absl::StatusOr<Principal>& caller,
                    const tl::v1::WatchSweepRequest& request) {
    outbox_ = std::make_shared<Outbox<tl::v1::SweepEvent>>(
        [this](const tl::v1::SweepEvent* event) { StartWrite(event); },
        [this](const grpc::Status& status) { Finish(status); }, /*droppable_limit=*/64);
    watcher_ = std::make_shared<Watcher>(outbox_);
    absl::Status status = caller.status();
    if (status.ok()) status = scheduler.WatchSweep(request.sweep_id(), watcher_, *caller);
    if (!status.ok()) outbox_->FinishNow(ToGrpcStatus(status));
  }

  void OnWriteDone(bool ok) override { outbox_->WriteDone(ok); }
  void OnCancel() override {
    outbox_->FinishNow(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
  }
  void OnDone() override {
    outbox_->Detach();
    delete this;
  }

 private:
  class Watcher final : public SweepWatcher {
   public:
    explicit Watcher(std::shared_ptr<Outbox<tl::v1::SweepEvent>> outbox)
        : outbox_(std::move(outbox)) {}
    // Each event is the whole sweep: a slow reader may skip some, never the last.
    bool Deliver(const tl::v1::SweepEvent& event) override {
      return outbox_->Push(event, /*droppable=*/false);
    }
    bool Gone() const override { return outbox_->detached(); }
    void Finish() override { outbox_->FinishAfterDrain(grpc::Status::OK); }
    void Interrupt() override { outbox_->FinishAfterDrain(kShuttingDown); }

   private:
    std::shared_ptr<Outbox<tl::v1::SweepEvent>> outbox_;
  };

  std::shared_ptr<Outbox<tl::v1::SweepEvent>> outbox_;
  std::shared_ptr<Watcher> watcher_;
};

class LogsReactor final : public grpc::ServerWriteReactor<tl::v1::LogLine> {
 public:
  LogsReactor(Scheduler& scheduler, const absl::StatusOr<Principal>& caller,
              const tl::v1::GetJobLogsRequest& request) {
    outbox_ = std::make_shared<Outbox<tl::v1::LogLine>>(
        [this](const tl::v1::LogLine* line) { StartWrite(line); },
        [this](const grpc::Status& status) { Finish(status); }, /*droppable_limit=*/SIZE_MAX);
    follower_ = std::make_shared<Follower>(outbox_);
    absl::Status status = caller.status();
    if (status.ok()) {
      status = scheduler.GetJobLogs(request.job_id(), request.after_sequence(), request.follow(),
                                    follower_, *caller);
    }
    if (!status.ok()) outbox_->FinishNow(ToGrpcStatus(status));
  }

  void OnWriteDone(bool ok) override { outbox_->WriteDone(ok); }
  void OnCancel() override {
    outbox_->FinishNow(grpc::Status(grpc::StatusCode::CANCELLED, "logs cancelled"));
  }
  void OnDone() override {
    outbox_->Detach();
    delete this;
  }

 private:
  class Follower final : public LogFollower {
   public:
    explicit Follower(std::shared_ptr<Outbox<tl::v1::LogLine>> outbox)
        : outbox_(std::move(outbox)) {}
    bool Deliver(const tl::v1::LogLine& line) override {
      return outbox_->Push(line, /*droppable=*/false);
    }
    void Finish() override { outbox_->FinishAfterDrain(grpc::Status::OK); }
    void Interrupt() override { outbox_->FinishAfterDrain(kShuttingDown); }

   private:
    std::shared_ptr<Outbox<tl::v1::LogLine>> outbox_;
  };

  std::shared_ptr<Outbox<tl::v1::LogLine>> outbox_;
  std::shared_ptr<Follower> follower_;
};

class WorkerStreamReactor final
    : public grpc::ServerBidiReactor<WorkerMessage, SchedulerMessage> {
 public:
  // `credential` not OK: the stream ends at once with that status.
  WorkerStreamReactor(Scheduler& scheduler, const absl::StatusOr<Principal>& credential)
      : scheduler_(scheduler) {
    // Heartbeat answers are droppable: a worker that sends heartbeats and never reads must not
    // make the server queue answers without end (any queued message is contact anyway).
    outbox_ = std::make_shared<Outbox<SchedulerMessage>>(
        [this](const SchedulerMessage* message) { StartWrite(message); },
        [this](const grpc::Status& status) { Finish(status); },
        /*droppable_limit=*/16);
    connection_ = std::make_shared<Connection>(outbox_);
    if (!credential.ok()) {
      outbox_->FinishNow(ToGrpcStatus(credential.status()));
      return;
    }
    credential_ = *credential;
    StartRead(&incoming_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The worker closed its side or the connection broke.
      outbox_->FinishNow(grpc::Status::OK);
      return;
    }
    if (session_ == 0) {
      if (!incoming_.has_hello()) {
        outbox_->FinishNow(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                        "the first message on a worker stream must be hello"));
        return;
      }
      absl::StatusOr<int64_t> session =
          scheduler_.ConnectWorker(incoming_.hello(), connection_, credential_);
      if (!session.ok()) {
        outbox_->FinishNow(ToGrpcStatus(session.status()));
        return;
      }
      session_ = *session;
    } else {
      scheduler_.HandleWorkerMessage(session_, incoming_);
    }
    StartRead(&incoming_);
  }
  void OnWriteDone(bool ok) override { outbox_->WriteDone(ok); }
  void OnCancel() override {
    outbox_->FinishNow(grpc::Status(grpc::StatusCode::CANCELLED, "worker stream cancelled"));
  }
  void OnDone() override {
    outbox_->Detach();
    if (session_ != 0) scheduler_.DisconnectWorker(session_);
    delete this;
  }

 private:
  class Connection final : public WorkerConnection {
   public:
    explicit Connection(std::shared_ptr<Outbox<SchedulerMessage>> outbox)
        : outbox_(std::move(outbox)) {}
    void Send(const SchedulerMessage& message) override {
      outbox_->Push(message, /*droppable=*/message.has_heartbeat());
    }
    void Close(const std::string& why) override {
      outbox_->FinishNow(grpc::Status(grpc::StatusCode::UNAVAILABLE, why));
    }

   private:
    std::shared_ptr<Outbox<SchedulerMessage>> outbox_;
  };

  Scheduler& scheduler_;
  Principal credential_;
  std::shared_ptr<Outbox<SchedulerMessage>> outbox_;
  std::shared_ptr<Connection> connection_;
  WorkerMessage incoming_;
  int64_t session_ = 0;
};

}  // namespace

absl::StatusOr<Principal> JobServiceImpl::Caller(grpc::CallbackServerContext* context) const {
  if (authenticator_ == nullptr) return Principal::Unauthenticated();
  absl::StatusOr<Principal> caller = authenticator_->Authenticate(AuthorizationHeader(context));
  if (caller.ok() && caller->role == Role::kWorker) {
    return absl::PermissionDeniedError(
        absl::StrCat("principal ", caller->name, " is a worker; job calls need a user token"));
  }
  return caller;
}

grpc::ServerUnaryReactor* JobServiceImpl::SubmitJob(grpc::CallbackServerContext* context,
                                                    const tl::v1::SubmitJobRequest* request,
                                                    tl::v1::Job* response) {
  const InFlight in_flight(unary_calls_in_flight_);
  absl::StatusOr<Principal> caller = Caller(context);
  if (!caller.ok()) return Reply(context, caller.status());
  absl::StatusOr<std::string> owner = SubmitOwner(*caller, request->owner());
  if (!owner.ok()) return Reply(context, owner.status());
  return Reply(context,
               scheduler_.SubmitJob(request->spec(), *owner, request->request_id(), *caller),
               response);
}

absl::StatusOr<std::string> JobServiceImpl::SubmitOwner(const Principal& caller,
                                                        const std::string& requested) const {
  std::string owner = requested;
  if (authenticator_ != nullptr) {
    if (owner.empty()) owner = caller.name;
    if (owner != caller.name && !caller.SeesEveryJob()) {
      return absl::PermissionDeniedError(
          absl::StrCat("owner: ", caller.name, " may not submit jobs as ", owner));
    }
  }
  return owner;
}

grpc::ServerUnaryReactor* JobServiceImpl::GetJob(grpc::CallbackServerContext* context,
                                                 const tl::v1::GetJobRequest* request,
                                                 tl::v1::Job* response) {
  const InFlight in_flight(unary_calls_in_flight_);
  absl::StatusOr<Principal> caller = Caller(context);
  if (!caller.ok()) return Reply(context, caller.status());
  return Reply(context, scheduler_.GetJob(request->job_id(), *caller), response);
}

grpc::ServerUnaryReactor* JobServiceImpl::ListJobs(grpc::CallbackServerContext* context,
                                                   const tl::v1::ListJobsRequest* request,
                                                   tl::v1::ListJobsResponse* response) {
  const InFlight in_flight(unary_calls_in_flight_);
  absl::StatusOr<Principal> caller = Caller(context);
  if (!caller.ok()) return Reply(context, caller.status());
  std::vector<tl::v1::Job::State> states;
  for (int state : request->states()) states.push_back(static_cast<tl::v1::Job::State>(state));
  absl::StatusOr<Scheduler::JobPage> page =
      scheduler_.ListJobs(states, request->page_size(), request->page_token(), request->owner(),
                          *caller, request->sweep_id());
  if (page.ok()) {
    for (tl::v1::Job& job : page->jobs) *response->add_jobs() = std::move(job);
    response->set_next_page_token(page->next_page_token);
  }
  return Reply(context, page.status());
}

grpc::ServerUnaryReactor* JobServiceImpl::CancelJob(grpc::CallbackServerContext* context,
                                                    const tl::v1::CancelJobRequest* request,
                                                    tl::v1::Job* response) {
  const InFlight in_flight(unary_calls_in_flight_);
  absl::StatusOr<Principal> caller = Caller(context);
  if (!caller.ok()) return Reply(context, caller.status());
  return Reply(context, scheduler_.CancelJob(request->job_id(), request->reason(), *caller),
               response);
}

grpc::ServerUnaryReactor* JobServiceImpl::PauseJob(grpc::CallbackServerContext* context,
                                                   const tl::v1::PauseJobRequest* request,
                                                   tl::v1::Job* response) {
  const InFlight in_flight(unary_calls_in_flight_);
  absl::StatusOr<Principal> caller = Caller(context);
  if (!caller.ok()) return Reply(context, caller.status());
  return Reply(context, scheduler_.PauseJob(request->job_id(), *caller), response);
}

grpc::ServerUnaryReactor* JobServiceImpl::ResumeJob(grpc::CallbackServerContext* context,
                                                    const tl::v1::ResumeJobRequest* request,
                                                    tl::v1::Job* response) {
  const InFlight in_flight(unary_calls_in_flight_);
  absl::StatusOr<Principal> caller = Caller(context);
  if (!caller.ok()) return Reply(context, caller.status());
  return Reply(context, scheduler_.ResumeJob(request->job_id(), *caller), response);
}

grpc::ServerWriteReactor<JobEvent>* JobServiceImpl::WatchJob(
    grpc::CallbackServerContext* context, const tl::v1::WatchJobRequest* request) {
  return new WatchReactor(scheduler_, Caller(context), *request);
}

grpc::ServerWriteReactor<tl::v1::LogLine>* JobServiceImpl::GetJobLogs(
    grpc::CallbackServerContext* context, const tl::v1::GetJobLogsRequest* request) {
  return new LogsReactor(scheduler_, Caller(context), *request);
}

grpc::ServerUnaryReactor* JobServiceImpl::SubmitSweep(grpc::CallbackServerContext* context,
                                                      const tl::v1::SubmitSweepRequest* request,
                                                      tl::v1::Sweep* response) {
  const InFlight in_flight(unary_calls_in_flight_);
  absl::StatusOr<Principal> caller = Caller(context);
  if (!caller.ok()) return Reply(context, caller.status());
  absl::StatusOr<std::string> owner = SubmitOwner(*caller, request->owner());
  if (!owner.ok()) return Reply(context, owner.status());
  return Reply(context,
               scheduler_.SubmitSweep(request->spec(), *owner, request->request_id(), *caller),
               response);
}

grpc::ServerUnaryReactor* JobServiceImpl::GetSweep(grpc::CallbackServerContext* context,
                                                   const tl::v1::GetSweepRequest* request,
                                                   tl::v1::Sweep* response) {
  const InFlight in_flight(unary_calls_in_flight_);
  absl::StatusOr<Principal> caller = Caller(context);
  if (!caller.ok()) return Reply(context, caller.status());
  return Reply(context, scheduler_.GetSweep(request->sweep_id(), *caller), response);
}

grpc::ServerUnaryReactor* JobServiceImpl::ListSweeps(grpc::CallbackServerContext* context,
                                                     const tl::v1::ListSweepsRequest* request,
                                                     tl::v1::ListSweepsResponse* response) {
  const InFlight in_flight(unary_calls_in_flight_);
  absl::StatusOr<Principal> caller = Caller(context);
  if (!caller.ok()) return Reply(context, caller.status());
  std::vector<tl::v1::Sweep::State> states;
  for (int state : request->states()) states.push_back(static_cast<tl::v1::Sweep::State>(state));
  absl::StatusOr<Scheduler::SweepPage> page = scheduler_.ListSweeps(
      states, request->page_size(), request->page_token(), request->owner(), *caller);
  if (page.ok()) {
    for (tl::v1::Sweep& sweep : page->sweeps) *response->add_sweeps() = std::move(sweep);
    response->set_next_page_token(page->next_page_token);
  }
  return Reply(context, page.status());
}

grpc::ServerUnaryReactor* JobServiceImpl::CancelSweep(grpc::CallbackServerContext* context,
                                                      const tl::v1::CancelSweepRequest* request,
                                                      tl::v1::Sweep* response) {
  const InFlight in_flight(unary_calls_in_flight_);
  absl::StatusOr<Principal> caller = Caller(context);
  if (!caller.ok()) return Reply(context, caller.status());
  return Reply(context, scheduler_.CancelSweep(request->sweep_id(), request->reason(), *caller),
               response);
}

grpc::ServerUnaryReactor* JobServiceImpl::PauseSweep(grpc::CallbackServerContext* context,
                                                     const tl::v1::PauseSweepRequest* request,
                                                     tl::v1::Sweep* response) {
  const InFlight in_flight(unary_calls_in_flight_);
  absl::StatusOr<Principal> caller = Caller(context);
  if (!caller.ok()) return Reply(context, caller.status());
  return Reply(context, scheduler_.PauseSweep(request->sweep_id(), *caller), response);
}

grpc::ServerUnaryReactor* JobServiceImpl::ResumeSweep(grpc::CallbackServerContext* context,
                                                      const tl::v1::ResumeSweepRequest* request,
                                                      tl::v1::Sweep* response) {
  const InFlight in_flight(unary_calls_in_flight_);
  absl::StatusOr<Principal> caller = Caller(context);
  if (!caller.ok()) return Reply(context, caller.status());
  return Reply(context, scheduler_.ResumeSweep(request->sweep_id(), *caller), response);
}

grpc::ServerWriteReactor<tl::v1::SweepEvent>* JobServiceImpl::WatchSweep(
    grpc::CallbackServerContext* context, const tl::v1::WatchSweepRequest* request) {
  return new WatchSweepReactor(scheduler_, Caller(context), *request);
}

grpc::ServerBidiReactor<WorkerMessage, SchedulerMessage>* WorkerServiceImpl::Connect(
    grpc::CallbackServerContext* context) {
  absl::StatusOr<Principal> credential = Principal::Unauthenticated();
  if (authenticator_ != nullptr) {
    credential = authenticator_->Authenticate(AuthorizationHeader(context));
    if (credential.ok() && credential->role != Role::kWorker) {
      credential = absl::PermissionDeniedError(absl::StrCat(
          "principal ", credential->name, " is a ", RoleName(credential->role),
          "; only worker tokens may open the worker stream"));
    }
  }
  return new WorkerStreamReactor(scheduler_, credential);
}

}  // namespace tl::server
