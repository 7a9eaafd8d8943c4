// Thin gRPC adapters over the Scheduler: each RPC authenticates the caller
// (when a TokenAuthenticator is given), translates messages and maps
// absl::Status through ToGrpcStatus, nothing more. Callback API throughout;
// streams keep one write in flight and queue the rest.
#pragma once

#include <atomic>

#include "server/api/auth.h"
#include "server/core/scheduler.h"
#include "tl/v1/service.grpc.pb.h"

namespace tl::server {

class JobServiceImpl final : public tl::v1::JobService::CallbackService {
 public:
  // `authenticator` null: no authentication, every caller acts as an admin.
  explicit JobServiceImpl(Scheduler& scheduler, const TokenAuthenticator* authenticator = nullptr)
      : scheduler_(scheduler), authenticator_(authenticator) {}

  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* context,
                                      const tl::v1::SubmitJobRequest* request,
                                      tl::v1::Job* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const tl::v1::GetJobRequest* request,
                                   tl::v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const tl::v1::ListJobsRequest* request,
                                     tl::v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context,
                                      const tl::v1::CancelJobRequest* request,
                                      tl::v1::Job* response) override;
  grpc::ServerWriteReactor<tl::v1::JobEvent>* WatchJob(
      grpc::CallbackServerContext* context, const tl::v1::WatchJobRequest* request) override;
  grpc::ServerUnaryReactor* PauseJob(grpc::CallbackServerContext* context,
                                     const tl::v1::PauseJobRequest* request,
                                     tl::v1::Job* response) override;
  grpc::ServerUnaryReactor* ResumeJob(grpc::CallbackServerContext* context,
                                      const tl::v1::ResumeJobRequest* request,
                                      tl::v1::Job* response) override;
  grpc::ServerWriteReactor<tl::v1::LogLine>* GetJobLogs(
      grpc::CallbackServerContext* context, const tl::v1::GetJobLogsRequest* request) override;

  grpc::ServerUnaryReactor* SubmitSweep(grpc::CallbackServerContext* context,
                                        const tl::v1::SubmitSweepRequest* request,
                                        tl::v1::Sweep* response) override;
  grpc::ServerUnaryReactor* GetSweep(grpc::CallbackServerContext* context,
                                     const tl::v1::GetSweepRequest* request,
                                     tl::v1::Sweep* response) override;
  grpc::ServerUnaryReactor* ListSweeps(grpc::CallbackServerContext* context,
                                       const tl::v1::ListSweepsRequest* request,
                                       tl::v1::ListSweepsResponse* response) override;
  grpc::ServerUnaryReactor* CancelSweep(grpc::CallbackServerContext* context,
                                        const tl::v1::CancelSweepRequest* request,
                                        tl::v1::Sweep* response) override;
  grpc::ServerUnaryReactor* PauseSweep(grpc::CallbackServerContext* context,
                                       const tl::v1::PauseSweepRequest* request,
                                       tl::v1::Sweep* response) override;
  grpc::ServerUnaryReactor* ResumeSweep(grpc::CallbackServerContext* context,
                                        const tl::v1::ResumeSweepRequest* request,
                                        tl::v1::Sweep* response) override;
  grpc::ServerWriteReactor<tl::v1::SweepEvent>* WatchSweep(
      grpc::CallbackServerContext* context, const tl::v1::WatchSweepRequest* request) override;

  // Unary calls being handled right now; a draining server waits for 0.
  int unary_calls_in_flight() const { return unary_calls_in_flight_.load(); }

 private:
  // The caller, if it may use JobService (users and admins).
  absl::StatusOr<Principal> Caller(grpc::CallbackServerContext* context) const;
  // The owner a submit names, as the caller may name it (SubmitJob and SubmitSweep alike).
  absl::StatusOr<std::string> SubmitOwner(const Principal& caller,
                                          const std::string& requested) const;

  Scheduler& scheduler_;
  const TokenAuthenticator* authenticator_;
  std::atomic<int> unary_calls_in_flight_{0};
};

class WorkerServiceImpl final : public tl::v1::WorkerService::CallbackService {
 public:
  // `authenticator` null: any caller may connect as a worker.
  explicit WorkerServiceImpl(Scheduler& scheduler,
                             const TokenAuthenticator* authenticator = nullptr)
      : scheduler_(scheduler), authenticator_(authenticator) {}

  grpc::ServerBidiReactor<tl::v1::WorkerMessage, tl::v1::SchedulerMessage>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  Scheduler& scheduler_;
  const TokenAuthenticator* authenticator_;
};

}  // namespace tl::server
