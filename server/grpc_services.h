// Thin gRPC adapters over the Scheduler: each RPC translates messages and
// maps absl::Status through ToGrpcStatus, nothing more. Callback API
// throughout; streams keep one write in flight and queue the rest.
#pragma once

#include "server/scheduler.h"
#include "tl/v1/service.grpc.pb.h"

namespace tl::server {

class JobServiceImpl final : public tl::v1::JobService::CallbackService {
 public:
  explicit JobServiceImpl(Scheduler& scheduler) : scheduler_(scheduler) {}

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

 private:
  Scheduler& scheduler_;
};

class WorkerServiceImpl final : public tl::v1::WorkerService::CallbackService {
 public:
  explicit WorkerServiceImpl(Scheduler& scheduler) : scheduler_(scheduler) {}

  grpc::ServerBidiReactor<tl::v1::WorkerMessage, tl::v1::SchedulerMessage>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  Scheduler& scheduler_;
};

}  // namespace tl::server
