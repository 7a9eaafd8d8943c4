#include "server/api/grpc_services.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <stdlib.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "google/protobuf/wrappers.pb.h"
#include "gtest/gtest.h"
#include "prometheus/metric_type.h"
#include "server/store/sqlite_job_store.h"

namespace tl::server {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::tl::testing::IsOk;
using ::tl::testing::WriteFile;
using ::tl::v1::Job;
using ::tl::v1::JobEvent;
using ::tl::v1::JobFinished;
using ::tl::v1::JobSpec;
using ::tl::v1::SchedulerMessage;
using ::tl::v1::WorkerMessage;

// Every call gets a deadline, so that a server that never answers fails the test instead of
// hanging it.
constexpr std::chrono::seconds kCallDeadline(20);

void SetDeadline(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
}

std::string Describe(const JobEvent& event) {
  switch (event.event_case()) {
    case JobEvent::kJob:
      return absl::StrCat("job ", Job::State_Name(event.job().state()));
    case JobEvent::kEpoch:
      return absl::StrCat("epoch ", event.epoch().epoch());
    case JobEvent::kProgress:
      return absl::StrCat("progress ", event.progress().batch(), "/", event.progress().batches());
    case JobEvent::EVENT_NOT_SET:
      break;
  }
  return "empty";
}

// A worker process, played by the test over a real WorkerService.Connect stream.
class StreamWorker {
 public:
  explicit StreamWorker(tl::v1::WorkerService::Stub& stub) {
    SetDeadline(context_);
    stream_ = stub.Connect(&context_);
  }

  bool Send(const WorkerMessage& message) { return stream_->Write(message); }
  bool Hello(const std::string& worker_id) {
    WorkerMessage message;
    message.mutable_hello()->set_worker_id(worker_id);
    message.mutable_hello()->add_devices()->set_kind("cpu");
    return Send(message);
  }
  bool Started(const std::string& job_id, int attempt) {
    WorkerMessage message;
    message.mutable_started()->set_job_id(job_id);
    message.mutable_started()->set_attempt(attempt);
    return Send(message);
  }
  bool Epoch(const std::string& job_id, int attempt, int epoch) {
    WorkerMessage message;
    message.mutable_epoch()->set_job_id(job_id);
    message.mutable_epoch()->mutable_metrics()->set_epoch(epoch);
    message.mutable_epoch()->mutable_metrics()->set_attempt(attempt);
    message.mutable_epoch()->mutable_metrics()->set_val_accuracy(0.75);
    return Send(message);
  }
  bool Progress(const std::string& job_id, int attempt, int batch, int batches) {
    WorkerMessage message;
    message.mutable_progress()->set_job_id(job_id);
    message.mutable_progress()->set_attempt(attempt);
    message.mutable_progress()->mutable_progress()->set_batch(batch);
    message.mutable_progress()->mutable_progress()->set_batches(batches);
    return Send(message);
  }
  bool Finished(const std::string& job_id, int attempt, JobFinished::Outcome outcome) {
    WorkerMessage message;
    message.mutable_finished()->set_job_id(job_id);
    message.mutable_finished()->set_attempt(attempt);
    message.mutable_finished()->set_outcome(outcome);
    message.mutable_finished()->mutable_result()->set_model_path(job_id + "/model.pt");
    return Send(message);
  }

  // The next message from the scheduler; nullopt when the stream has ended.
  std::optional<SchedulerMessage> Read() {
    SchedulerMessage message;
    if (!stream_->Read(&message)) return std::nullopt;
    return message;
  }
  // Closes the worker's side and returns how the server ended the stream.
  grpc::Status Close() {
    stream_->WritesDone();
    return stream_->Finish();
  }
  // For a stream the server has ended already.
  grpc::Status Finish() { return stream_->Finish(); }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<WorkerMessage, SchedulerMessage>> stream_;
};

// A real Scheduler (temp SQLite file, temp data root) behind JobServiceImpl and
// WorkerServiceImpl on an in-process gRPC server, with stubs for both services.
class GrpcServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = temp_dir_.path();
    WriteFile(base_ / "data/backbones/resnet.pt", "torchscript");
    WriteFile(base_ / "data/backbones/resnet.json", R"({"format": "tl.backbone.v1"})");
    WriteFile(base_ / "data/flowers/daisy/1.png", "");
    WriteFile(base_ / "data/flowers/rose/1.png", "");
    fs::create_directories(base_ / "artifacts");
    // Long enough that no lease expires during a test unless the test asks for a short one.
    StartServer(absl::Minutes(10));
  }

  void TearDown() override {
    StopServer();
  }

  void StartServer(absl::Duration lease) {
    ASSERT_OK_AND_ASSIGN(store_, SqliteJobStore::Open((base_ / "jobs.db").string()));
    metrics_ = std::make_unique<ServerMetrics>();
    SchedulerOptions options;
    options.data_root = (base_ / "data").string();
    options.artifact_root = (base_ / "artifacts").string();
    options.lease_timeout = lease;
    options.heartbeat_interval = absl::Milliseconds(100);
    scheduler_ = std::make_unique<Scheduler>(*store_, *metrics_, options);
    ASSERT_THAT(scheduler_->Start(), IsOk());
    job_service_ = std::make_unique<JobServiceImpl>(*scheduler_);
    worker_service_ = std::make_unique<WorkerServiceImpl>(*scheduler_);

    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;  // no listening port: in-process channels only
    builder.RegisterService(job_service_.get());
    builder.RegisterService(worker_service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
    jobs_ = tl::v1::JobService::NewStub(channel_);
    workers_ = tl::v1::WorkerService::NewStub(channel_);
  }

  void StopServer() {
    // Streams still open are cancelled at the deadline; their teardown calls the scheduler,
    // so it goes after the server.
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    }
    jobs_.reset();
    workers_.reset();
    channel_.reset();
    server_.reset();
    worker_service_.reset();
    job_service_.reset();
    scheduler_.reset();
    metrics_.reset();
    store_.reset();
  }

  static JobSpec Spec(const std::string& name) {
    JobSpec spec;
    spec.set_name(name);
    spec.mutable_backbone()->set_path("backbones/resnet.pt");
    spec.mutable_dataset()->set_train_dir("flowers");
    return spec;
  }

  grpc::Status Submit(const JobSpec& spec, Job* job) {
    grpc::ClientContext context;
    SetDeadline(context);
    tl::v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    request.set_owner("alice");
    return jobs_->SubmitJob(&context, request, job);
  }
  // Submits a valid job; "" after a failure, which is reported.
  std::string SubmitOk(const std::string& name) {
    Job job;
    const grpc::Status status = Submit(Spec(name), &job);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return job.id();
  }

  grpc::Status GetJob(const std::string& id, Job* job) {
    grpc::ClientContext context;
    SetDeadline(context);
    tl::v1::GetJobRequest request;
    request.set_job_id(id);
    return jobs_->GetJob(&context, request, job);
  }
  Job::State StateOf(const std::string& id) {
    Job job;
    const grpc::Status status = GetJob(id, &job);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return job.state();
  }

  grpc::Status Cancel(const std::string& id, Job* job) {
    grpc::ClientContext context;
    SetDeadline(context);
    tl::v1::CancelJobRequest request;
    request.set_job_id(id);
    request.set_reason("test");
    return jobs_->CancelJob(&context, request, job);
  }

  grpc::Status List(const std::vector<Job::State>& states, int page_size, const std::string& token,
                    tl::v1::ListJobsResponse* response) {
    grpc::ClientContext context;
    SetDeadline(context);
    tl::v1::ListJobsRequest request;
    for (Job::State state : states) request.add_states(state);
    request.set_page_size(page_size);
    request.set_page_token(token);
    return jobs_->ListJobs(&context, request, response);
  }

  // Polls `condition` until it holds or `timeout` passes; returns whether it held.
  static bool WaitFor(const std::function<bool()>& condition,
                      absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!condition()) {
      if (absl::Now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  double ConnectedWorkers() {
    for (const prometheus::MetricFamily& family : metrics_->registry()->Collect()) {
      if (family.name == "tl_workers_connected" && !family.metric.empty()) {
        return family.metric[0].gauge.value;
      }
    }
    return -1;
  }

  ::tl::testing::TempDir temp_dir_;  // removed with the fixture, after TearDown
  fs::path base_;
  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<JobServiceImpl> job_service_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<tl::v1::JobService::Stub> jobs_;
  std::unique_ptr<tl::v1::WorkerService::Stub> workers_;
};

TEST_F(GrpcServicesTest, SubmitJobQueuesAndStoresTheJob) {
  Job job;
  ASSERT_TRUE(Submit(Spec("flowers"), &job).ok());
  EXPECT_EQ(job.state(), Job::QUEUED);
  EXPECT_EQ(job.owner(), "alice");
  EXPECT_EQ(job.spec().name(), "flowers");
  EXPECT_DOUBLE_EQ(job.spec().training().momentum(), 0.9);  // defaults filled in
  ASSERT_OK_AND_ASSIGN(JobRecord stored, store_->GetJob(job.id()));
  EXPECT_EQ(stored.state(), Job::QUEUED);
}

TEST_F(GrpcServicesTest, SubmitJobRefusesABadSpecNamingTheField) {
  JobSpec spec = Spec("bad");
  spec.mutable_training()->set_batch_size(0);
  Job job;
  const grpc::Status status = Submit(spec, &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("training.batch_size"));

  spec = Spec("bad");
  spec.mutable_dataset()->set_train_dir("../etc");
  const grpc::Status escape = Submit(spec, &job);
  EXPECT_EQ(escape.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(escape.error_message(), HasSubstr("dataset.train_dir"));
  ASSERT_OK_AND_ASSIGN(auto counts, store_->CountByState());
  EXPECT_THAT(counts, IsEmpty());
}

TEST_F(GrpcServicesTest, GetJobReturnsTheJobOrNotFound) {
  const std::string id = SubmitOk("flowers");
  Job job;
  ASSERT_TRUE(GetJob(id, &job).ok());
  EXPECT_EQ(job.id(), id);
  EXPECT_EQ(job.spec().name(), "flowers");

  const grpc::Status missing = GetJob("0123456789abcdef", &job);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(missing.error_message(), HasSubstr("0123456789abcdef"));
}

TEST_F(GrpcServicesTest, ListJobsPagesNewestFirstWithoutDuplicates) {
  std::vector<std::string> submitted;
  for (int i = 0; i < 5; ++i) submitted.push_back(SubmitOk(absl::StrCat("job", i)));

  std::vector<std::string> listed;
  std::vector<int> page_sizes;
  std::string token;
  do {
    tl::v1::ListJobsResponse response;
    ASSERT_TRUE(List({}, 2, token, &response).ok());
    page_sizes.push_back(response.jobs_size());
    for (const Job& job : response.jobs()) listed.push_back(job.id());
    token = response.next_page_token();
  } while (!token.empty() && page_sizes.size() < 10);  // the bound stops a token loop

  EXPECT_THAT(page_sizes, ElementsAre(2, 2, 1));
  EXPECT_THAT(listed, ElementsAreArray(submitted.rbegin(), submitted.rend()));
  EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()).size(), 5u);
}

TEST_F(GrpcServicesTest, ListJobsFiltersByState) {
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(SubmitOk(absl::StrCat("job", i)));
  Job job;
  ASSERT_TRUE(Cancel(ids[1], &job).ok());
  ASSERT_TRUE(Cancel(ids[3], &job).ok());

  tl::v1::ListJobsResponse cancelled;
  ASSERT_TRUE(List({Job::CANCELLED}, 10, "", &cancelled).ok());
  ASSERT_THAT(cancelled.jobs(), SizeIs(2));
  EXPECT_EQ(cancelled.jobs(0).id(), ids[3]);
  EXPECT_EQ(cancelled.jobs(1).id(), ids[1]);
  EXPECT_EQ(cancelled.next_page_token(), "");

  tl::v1::ListJobsResponse queued_or_cancelled;
  ASSERT_TRUE(List({Job::QUEUED, Job::CANCELLED}, 10, "", &queued_or_cancelled).ok());
  EXPECT_THAT(queued_or_cancelled.jobs(), SizeIs(4));

  tl::v1::ListJobsResponse running;
  ASSERT_TRUE(List({Job::RUNNING}, 10, "", &running).ok());
  EXPECT_THAT(running.jobs(), IsEmpty());
}

TEST_F(GrpcServicesTest, ListJobsRefusesAnOversizedPage) {
  tl::v1::ListJobsResponse response;
  const grpc::Status status = List({}, 5000, "", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("page_size"));
  const grpc::Status token = List({}, 10, "not a token", &response);
  EXPECT_EQ(token.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(GrpcServicesTest, CancelJobEndsAQueuedJobOnce) {
  const std::string id = SubmitOk("flowers");
  Job job;
  ASSERT_TRUE(Cancel(id, &job).ok());
  EXPECT_EQ(job.state(), Job::CANCELLED);
  EXPECT_EQ(job.error(), "test");
  EXPECT_EQ(StateOf(id), Job::CANCELLED);

  EXPECT_EQ(Cancel(id, &job).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Cancel("0123456789abcdef", &job).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(GrpcServicesTest, WatchJobFollowsAJobDrivenByAWorkerStream) {
  const std::string id = SubmitOk("flowers");
  grpc::ClientContext watch_context;
  SetDeadline(watch_context);
  tl::v1::WatchJobRequest request;
  request.set_job_id(id);
  std::unique_ptr<grpc::ClientReader<JobEvent>> watch = jobs_->WatchJob(&watch_context, request);
  JobEvent first;
  ASSERT_TRUE(watch->Read(&first));
  ASSERT_TRUE(first.has_job());
  EXPECT_EQ(first.job().id(), id);
  EXPECT_EQ(first.job().state(), Job::QUEUED);

  StreamWorker worker(*workers_);
  ASSERT_TRUE(worker.Hello("w1"));
  std::optional<SchedulerMessage> welcome = worker.Read();
  ASSERT_TRUE(welcome.has_value() && welcome->has_welcome());
  EXPECT_EQ(welcome->welcome().heartbeat_interval_ms(), 100);
  std::optional<SchedulerMessage> assignment = worker.Read();
  ASSERT_TRUE(assignment.has_value() && assignment->has_assignment());
  EXPECT_EQ(assignment->assignment().job_id(), id);
  EXPECT_EQ(assignment->assignment().attempt(), 1);
  EXPECT_EQ(assignment->assignment().backbone_path(), "backbones/resnet.pt");

  ASSERT_TRUE(worker.Started(id, 1));
  ASSERT_TRUE(worker.Epoch(id, 1, 1));
  ASSERT_TRUE(worker.Progress(id, 1, 2, 5));
  ASSERT_TRUE(worker.Finished(id, 1, JobFinished::SUCCEEDED));

  std::vector<JobEvent> events;
  JobEvent event;
  while (watch->Read(&event)) events.push_back(event);
  const grpc::Status watch_status = watch->Finish();
  EXPECT_TRUE(watch_status.ok()) << watch_status.error_message();

  std::vector<std::string> described;
  for (const JobEvent& e : events) described.push_back(Describe(e));
  EXPECT_THAT(described, ElementsAre("job ASSIGNED", "job RUNNING", "epoch 1", "job RUNNING",
                                     "progress 2/5", "job SUCCEEDED"));
  ASSERT_THAT(events, SizeIs(6));
  EXPECT_DOUBLE_EQ(events[2].epoch().val_accuracy(), 0.75);
  EXPECT_EQ(events[5].job().result().model_path(), id + "/model.pt");

  // The worker stays connected and idle until it closes its side.
  const grpc::Status worker_status = worker.Close();
  EXPECT_TRUE(worker_status.ok()) << worker_status.error_message();
  EXPECT_EQ(StateOf(id), Job::SUCCEEDED);
}

TEST_F(GrpcServicesTest, WatchJobOfAnEndedJobReplaysItAndEnds) {
  const std::string id = SubmitOk("flowers");
  Job job;
  ASSERT_TRUE(Cancel(id, &job).ok());

  grpc::ClientContext context;
  SetDeadline(context);
  tl::v1::WatchJobRequest request;
  request.set_job_id(id);
  std::unique_ptr<grpc::ClientReader<JobEvent>> watch = jobs_->WatchJob(&context, request);
  std::vector<std::string> described;
  JobEvent event;
  while (watch->Read(&event)) described.push_back(Describe(event));
  EXPECT_TRUE(watch->Finish().ok());
  EXPECT_THAT(described, ElementsAre("job QUEUED", "job CANCELLED"));
}

TEST_F(GrpcServicesTest, WatchJobOfUnknownJobIsNotFound) {
  grpc::ClientContext context;
  SetDeadline(context);
  tl::v1::WatchJobRequest request;
  request.set_job_id("0123456789abcdef");
  std::unique_ptr<grpc::ClientReader<JobEvent>> watch = jobs_->WatchJob(&context, request);
  JobEvent event;
  EXPECT_FALSE(watch->Read(&event));
  const grpc::Status status = watch->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("0123456789abcdef"));
}

TEST_F(GrpcServicesTest, WatcherThatHangsUpIsForgotten) {
  const std::string id = SubmitOk("flowers");
  {
    grpc::ClientContext context;
    SetDeadline(context);
    tl::v1::WatchJobRequest request;
    request.set_job_id(id);
    std::unique_ptr<grpc::ClientReader<JobEvent>> watch = jobs_->WatchJob(&context, request);
    JobEvent event;
    ASSERT_TRUE(watch->Read(&event));
    context.TryCancel();
    EXPECT_EQ(watch->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // Events for the departed watcher must go nowhere, harmlessly.
  Job job;
  ASSERT_TRUE(Cancel(id, &job).ok());
  EXPECT_EQ(StateOf(id), Job::CANCELLED);
}

TEST_F(GrpcServicesTest, CancelOfARunningJobReachesItsWorkerStream) {
  const std::string id = SubmitOk("flowers");
  StreamWorker worker(*workers_);
  ASSERT_TRUE(worker.Hello("w1"));
  ASSERT_TRUE(worker.Read().has_value());  // welcome
  ASSERT_TRUE(worker.Read().has_value());  // assignment
  ASSERT_TRUE(worker.Started(id, 1));
  ASSERT_TRUE(WaitFor([&] { return StateOf(id) == Job::RUNNING; }));

  Job job;
  ASSERT_TRUE(Cancel(id, &job).ok());
  EXPECT_TRUE(job.cancel_requested());
  std::optional<SchedulerMessage> cancel = worker.Read();
  ASSERT_TRUE(cancel.has_value() && cancel->has_cancel());
  EXPECT_EQ(cancel->cancel().job_id(), id);
  EXPECT_EQ(cancel->cancel().reason(), "test");

  ASSERT_TRUE(worker.Finished(id, 1, JobFinished::CANCELLED));
  ASSERT_TRUE(WaitFor([&] { return StateOf(id) == Job::CANCELLED; }));
  EXPECT_TRUE(worker.Close().ok());
}

TEST_F(GrpcServicesTest, WorkerStreamMustStartWithHello) {
  StreamWorker worker(*workers_);
  WorkerMessage heartbeat;
  heartbeat.mutable_heartbeat();
  worker.Send(heartbeat);  // may fail if the server has ended the stream already
  EXPECT_FALSE(worker.Read().has_value());
  const grpc::Status status = worker.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("hello"));
}

TEST_F(GrpcServicesTest, WorkerStreamWithoutWorkerIdIsRefused) {
  StreamWorker worker(*workers_);
  ASSERT_TRUE(worker.Hello(""));
  EXPECT_FALSE(worker.Read().has_value());
  const grpc::Status status = worker.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("worker_id"));
}

TEST_F(GrpcServicesTest, WorkerStreamClosedMidJobOrphansTheJobUntilTheLease) {
  StopServer();
  const absl::Duration lease = absl::Seconds(1);
  StartServer(lease);
  const std::string id = SubmitOk("flowers");
  {
    StreamWorker worker(*workers_);
    ASSERT_TRUE(worker.Hello("w1"));
    ASSERT_TRUE(worker.Read().has_value());  // welcome
    std::optional<SchedulerMessage> assignment = worker.Read();
    ASSERT_TRUE(assignment.has_value() && assignment->has_assignment());
    ASSERT_TRUE(worker.Started(id, 1));
    ASSERT_TRUE(WaitFor([&] { return StateOf(id) == Job::RUNNING; }));
    EXPECT_TRUE(worker.Close().ok());
  }
  // Once the server has seen the stream end, the job is still RUNNING: its worker gets a lease
  // to come back.
  const absl::Time closed_by = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return ConnectedWorkers() == 0; }));
  Job job;
  ASSERT_TRUE(GetJob(id, &job).ok());
  EXPECT_EQ(job.state(), Job::RUNNING);
  EXPECT_EQ(job.worker_id(), "w1");

  // The scheduler's own lease thread puts it back in the queue.
  ASSERT_TRUE(WaitFor([&] { return StateOf(id) == Job::QUEUED; }));
  EXPECT_GE(absl::Now() - closed_by, lease / 2);
  ASSERT_TRUE(GetJob(id, &job).ok());
  EXPECT_EQ(job.attempt(), 1);
  EXPECT_THAT(job.error(), HasSubstr("w1"));
}

TEST_F(GrpcServicesTest, SilentWorkerStreamIsEndedUnavailable) {
  StreamWorker worker(*workers_);
  ASSERT_TRUE(worker.Hello("w1"));
  ASSERT_TRUE(worker.Read().has_value());  // welcome
  ASSERT_TRUE(WaitFor([&] { return ConnectedWorkers() == 1; }));

  // Far past the lease: the scheduler closes the stream so that the worker reconnects.
  scheduler_->CheckLeases(absl::Now() + absl::Hours(1));
  EXPECT_FALSE(worker.Read().has_value());
  const grpc::Status status = worker.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("heartbeat"));
  EXPECT_EQ(ConnectedWorkers(), 0);
}

TEST_F(GrpcServicesTest, WatcherThatDoesNotReadLosesOnlyProgress) {
  const std::string id = SubmitOk("flowers");
  grpc::ClientContext watch_context;
  SetDeadline(watch_context);
  tl::v1::WatchJobRequest request;
  request.set_job_id(id);
  std::unique_ptr<grpc::ClientReader<JobEvent>> watch = jobs_->WatchJob(&watch_context, request);
  // The snapshot proves the watch is registered before the job moves on.
  JobEvent event;
  ASSERT_TRUE(watch->Read(&event));
  EXPECT_EQ(Describe(event), "job QUEUED");

  // Everything else happens while the watcher reads nothing.
  constexpr int kProgressReports = 300;
  StreamWorker worker(*workers_);
  ASSERT_TRUE(worker.Hello("w1"));
  ASSERT_TRUE(worker.Read().has_value());  // welcome
  ASSERT_TRUE(worker.Read().has_value());  // assignment
  ASSERT_TRUE(worker.Started(id, 1));
  for (int batch = 1; batch <= kProgressReports; ++batch) {
    ASSERT_TRUE(worker.Progress(id, 1, batch, kProgressReports));
  }
  ASSERT_TRUE(worker.Epoch(id, 1, 1));
  ASSERT_TRUE(worker.Finished(id, 1, JobFinished::SUCCEEDED));
  ASSERT_TRUE(WaitFor([&] { return StateOf(id) == Job::SUCCEEDED; }));

  std::vector<std::string> kept;  // every event but progress
  int progress = 0;
  int last_batch = 0;
  while (watch->Read(&event)) {
    if (event.has_progress()) {
      ++progress;
      EXPECT_GT(event.progress().batch(), last_batch);  // in order, whatever was dropped
      last_batch = event.progress().batch();
    } else {
      kept.push_back(Describe(event));
    }
  }
  EXPECT_TRUE(watch->Finish().ok());
  EXPECT_THAT(
      kept, ElementsAre("job ASSIGNED", "job RUNNING", "epoch 1", "job RUNNING", "job SUCCEEDED"));
  // The in-process transport holds few unread messages, so the outbox had to drop progress to
  // stay bounded (about 64 of the 300 get through).
  EXPECT_LT(progress, kProgressReports);
  EXPECT_GT(progress, 0);
  EXPECT_TRUE(worker.Close().ok());
}

TEST_F(GrpcServicesTest, ShutdownEndsOpenStreams) {
  const std::string id = SubmitOk("flowers");
  grpc::ClientContext watch_context;
  SetDeadline(watch_context);
  tl::v1::WatchJobRequest request;
  request.set_job_id(id);
  std::unique_ptr<grpc::ClientReader<JobEvent>> watch = jobs_->WatchJob(&watch_context, request);
  JobEvent event;
  ASSERT_TRUE(watch->Read(&event));
  StreamWorker worker(*workers_);
  ASSERT_TRUE(worker.Hello("w1"));
  ASSERT_TRUE(worker.Read().has_value());  // welcome
  ASSERT_TRUE(worker.Read().has_value());  // assignment

  StopServer();  // must not wait for the clients to hang up
  while (watch->Read(&event)) {
  }
  EXPECT_FALSE(watch->Finish().ok());
  EXPECT_FALSE(worker.Read().has_value());
  EXPECT_FALSE(worker.Finish().ok());
}

// grpc.health.v1.Health/Check through a generic stub, since no generated health stubs are
// available. HealthCheckRequest {string service = 1} has the wire form of
// google.protobuf.StringValue, and HealthCheckResponse {ServingStatus status = 1} that of
// google.protobuf.Int32Value, so those stand in for the health messages.
TEST_F(GrpcServicesTest, HealthCheckAnswersServing) {
  grpc::TemplatedGenericStub<google::protobuf::StringValue, google::protobuf::Int32Value> stub(
      channel_);
  auto check = [&](const std::string& service, int* serving_status) {
    grpc::ClientContext context;
    SetDeadline(context);
    google::protobuf::StringValue request;
    request.set_value(service);
    google::protobuf::Int32Value response;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                   &response, [&](grpc::Status status) { done.set_value(std::move(status)); });
    grpc::Status status = done.get_future().get();  // the call's deadline bounds the wait
    *serving_status = response.value();
    return status;
  };
  constexpr int kServing = 1;
  constexpr int kNotServing = 2;

  int serving_status = 0;
  const grpc::Status status = check("", &serving_status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(serving_status, kServing);
  EXPECT_EQ(check("no.such.Service", &serving_status).error_code(), grpc::StatusCode::NOT_FOUND);

  // The answer follows the server's state rather than being a constant.
  server_->GetHealthCheckService()->SetServingStatus(false);
  ASSERT_TRUE(check("", &serving_status).ok());
  EXPECT_EQ(serving_status, kNotServing);
}

}  // namespace
}  // namespace tl::server
