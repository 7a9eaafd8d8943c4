// Authentication, roles and TLS with real processes: a tokens file, a
// certificate made here with openssl, a worker with a worker token, and
// users who see only their own jobs.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "google/protobuf/util/json_util.h"
#include "tests/cluster.h"
#include "tests/process.h"
#include "tl/v1/service.grpc.pb.h"

namespace tl {
namespace {

namespace fs = std::filesystem;
using ::tl::testing::Cluster;
using ::tl::testing::Ended;
using ::tl::testing::Process;
using ::tl::testing::ReadFile;
using ::tl::testing::RunToEnd;
using ::tl::testing::TinySpec;
using ::tl::v1::Job;
using namespace std::chrono_literals;

constexpr char kAliceToken[] = "alice-0123456789abcdef";
constexpr char kBobToken[] = "bob-0123456789abcdef00";
constexpr char kWorkerToken[] = "worker-0123456789abcdef";
constexpr char kAdminToken[] = "admin-0123456789abcdef";
// Another worker's token, and one for a pool of workers whose ids start with "gpu-".
constexpr char kOtherWorkerToken[] = "other-worker-0123456789";
constexpr char kPoolToken[] = "pool-0123456789abcdef00";

class SecureCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(cluster_.path("tokens")) << "# token principal role\n"
                                           << kAliceToken << " alice user\n"
                                           << kBobToken << " bob user\n"
                                           << kWorkerToken << " gpu-box worker\n"
                                           << kOtherWorkerToken << " cpu-box worker\n"
                                           << kPoolToken << " gpu-pool worker gpu-*\n"
                                           << kAdminToken << " ops admin\n";
    std::ofstream(cluster_.path("worker.token")) << kWorkerToken << "\n";
    // A self-signed certificate for 127.0.0.1, valid for a day.
    auto [status, output] = RunToEnd(
        {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=tl test", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
         cluster_.path("key.pem"), "-out", cluster_.path("cert.pem")},
        cluster_.path("openssl.log"));
    ASSERT_EQ(status, 0) << output;
    cluster_.StartServer({"--tokens_file=" + cluster_.path("tokens"),
                          "--tls_cert=" + cluster_.path("cert.pem"),
                          "--tls_key=" + cluster_.path("key.pem")});
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = ReadFile(cluster_.path("cert.pem"));
    channel_ = grpc::CreateChannel(cluster_.address(), grpc::SslCredentials(tls));
    jobs_ = tl::v1::JobService::NewStub(channel_);
  }

  grpc::Status SubmitAs(const std::string& token, Job* job, const std::string& owner = "") {
    tl::v1::SubmitJobRequest request;
    *request.mutable_spec() = TinySpec(1);
    request.set_owner(owner);
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    return jobs_->SubmitJob(&context, request, job);
  }
  grpc::Status SubmitSpecAs(const std::string& token, const tl::v1::JobSpec& spec, Job* job) {
    tl::v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    return jobs_->SubmitJob(&context, request, job);
  }
  // Polls the job (as `token`) until `done` holds or a minute passes; the last job seen.
  Job WaitAs(const std::string& token, const std::string& id,
             const std::function<bool(const Job&)>& done) {
    Job job;
    tl::testing::WaitFor([&] { return GetAs(token, id, &job).ok() && done(job); }, 60s);
    return job;
  }
  grpc::Status GetAs(const std::string& token, const std::string& id, Job* job) {
    tl::v1::GetJobRequest request;
    request.set_job_id(id);
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    return jobs_->GetJob(&context, request, job);
  }
  std::vector<std::string> tlctl(const std::string& token) const {
    return {TLCTL_PATH, "--server=" + cluster_.address(), "--tls-ca=" + cluster_.path("cert.pem"),
            "--token=" + std::string(token)};
  }

  Cluster cluster_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<tl::v1::JobService::Stub> jobs_;
};

TEST_F(SecureCluster, UsersWorkersAndAdminsEachDoWhatTheirRoleAllows) {
  cluster_.StartWorker("gpu-box", {"--token_file=" + cluster_.path("worker.token"),
                                   "--tls_ca=" + cluster_.path("cert.pem")});

  // Alice submits through tlctl over TLS; the worker (worker token, TLS) runs it.
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(TinySpec(2), &json).ok());
  std::ofstream(cluster_.path("job.json")) << json;
  std::vector<std::string> submit = tlctl(kAliceToken);
  submit.insert(submit.end(), {"submit", cluster_.path("job.json"), "--watch", "--id-file",
                               cluster_.path("job.id")});
  auto [status, output] = RunToEnd(submit, cluster_.path("submit.log"));
  ASSERT_EQ(status, 0) << output;
  std::string id = ReadFile(cluster_.path("job.id"));
  id = id.substr(0, id.find('\n'));
  Job job;
  ASSERT_TRUE(GetAs(kAliceToken, id, &job).ok());
  EXPECT_EQ(job.owner(), "alice");
  EXPECT_EQ(job.state(), Job::SUCCEEDED);

  // Bob may not see or cancel it (to him it does not exist); an admin may.
  const grpc::Status bob = GetAs(kBobToken, id, &job);
  EXPECT_EQ(bob.error_code(), grpc::StatusCode::NOT_FOUND) << bob.error_message();
  std::vector<std::string> cancel = tlctl(kBobToken);
  cancel.insert(cancel.end(), {"cancel", id});
  auto [cancel_status, cancel_output] = RunToEnd(cancel, cluster_.path("cancel.log"));
  EXPECT_EQ(cancel_status, 1);
  EXPECT_NE(cancel_output.find("NOT_FOUND"), std::string::npos) << cancel_output;
  EXPECT_TRUE(GetAs(kAdminToken, id, &job).ok());

  // Bob's listing holds only his jobs.
  Job bobs;
  ASSERT_TRUE(SubmitAs(kBobToken, &bobs).ok());
  EXPECT_EQ(bobs.owner(), "bob");
  std::vector<std::string> list = tlctl(kBobToken);
  list.push_back("list");
  auto [list_status, list_output] = RunToEnd(list, cluster_.path("list.log"));
  EXPECT_EQ(list_status, 0) << list_output;
  EXPECT_NE(list_output.find(bobs.id()), std::string::npos) << list_output;
  EXPECT_EQ(list_output.find(id), std::string::npos) << list_output;

  // A user may not submit in another's name; an admin may.
  Job forged;
  EXPECT_EQ(SubmitAs(kBobToken, &forged, "alice").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  Job on_behalf;
  ASSERT_TRUE(SubmitAs(kAdminToken, &on_behalf, "alice").ok());
  EXPECT_EQ(on_behalf.owner(), "alice");
}

TEST_F(SecureCluster, MissingWrongAndMisusedCredentialsAreRefused) {
  Job job;
  EXPECT_EQ(SubmitAs("", &job).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(SubmitAs("not-a-known-token-at-all", &job).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // A worker token is for the worker stream only.
  const grpc::Status as_worker = SubmitAs(kWorkerToken, &job);
  EXPECT_EQ(as_worker.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(as_worker.error_message().find("worker"), std::string::npos);

  // Only worker tokens open the worker stream.
  auto workers = tl::v1::WorkerService::NewStub(channel_);
  for (const std::string& token : {std::string(kAliceToken), std::string(kAdminToken)}) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    auto stream = workers->Connect(&context);
    tl::v1::WorkerMessage hello;
    hello.mutable_hello()->set_worker_id("impostor");
    stream->Write(hello);
    tl::v1::SchedulerMessage reply;
    EXPECT_FALSE(stream->Read(&reply));
    const grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  }

  // Plain text to a TLS port does not get through.
  auto plain = tl::v1::JobService::NewStub(
      grpc::CreateChannel(cluster_.address(), grpc::InsecureChannelCredentials()));
  tl::v1::GetJobRequest request;
  request.set_job_id("0123456789abcdef");
  grpc::ClientContext context;
  context.AddMetadata("authorization", std::string("Bearer ") + kAliceToken);
  context.set_deadline(std::chrono::system_clock::now() + 5s);
  EXPECT_EQ(plain->GetJob(&context, request, &job).error_code(), grpc::StatusCode::UNAVAILABLE);

  // tlctl without a token: exit 1 and the reason.
  auto [status, output] = RunToEnd({TLCTL_PATH, "--server=" + cluster_.address(),
                                    "--tls-ca=" + cluster_.path("cert.pem"), "list"},
                                   cluster_.path("anonymous.log"));
  EXPECT_EQ(status, 1);
  EXPECT_NE(output.find("UNAUTHENTICATED"), std::string::npos) << output;
  EXPECT_FALSE(cluster_.server().Exited());
}

// A worker stream opened by the test itself, as a process holding a worker token could.
class RawWorker {
 public:
  RawWorker(tl::v1::WorkerService::Stub& stub, const std::string& token, const std::string& id) {
    context_.AddMetadata("authorization", "Bearer " + token);
    stream_ = stub.Connect(&context_);
    tl::v1::WorkerMessage hello;
    hello.mutable_hello()->set_worker_id(id);
    hello.mutable_hello()->add_devices()->set_kind("cpu");
    stream_->Write(hello);
  }
  // The next message; nullopt once the server has ended the stream.
  std::optional<tl::v1::SchedulerMessage> Read() {
    tl::v1::SchedulerMessage message;
    if (!stream_->Read(&message)) return std::nullopt;
    return message;
  }
  bool Write(const tl::v1::WorkerMessage& message) { return stream_->Write(message); }
  grpc::Status Finish() {
    context_.TryCancel();
    return stream_->Finish();
  }
  grpc::Status Refusal() {
    while (Read().has_value()) {
    }
    return stream_->Finish();
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<tl::v1::WorkerMessage, tl::v1::SchedulerMessage>>
      stream_;
};

bool Succeeded(const Job& job) { return job.state() == Job::SUCCEEDED; }
bool HasEnded(const Job& job) { return Ended(job.state()); }

TEST_F(SecureCluster, AUserStartsOnlyFromItsOwnOrSharedModels) {
  cluster_.StartWorker("gpu-box", {"--token_file=" + cluster_.path("worker.token"),
                                   "--tls_ca=" + cluster_.path("cert.pem")});
  Job bobs, shared;
  ASSERT_TRUE(SubmitSpecAs(kBobToken, TinySpec(1), &bobs).ok());
  tl::v1::JobSpec sharing = TinySpec(1);
  sharing.add_share_with("alice");
  ASSERT_TRUE(SubmitSpecAs(kBobToken, sharing, &shared).ok());
  ASSERT_TRUE(Succeeded(WaitAs(kBobToken, bobs.id(), Succeeded)));
  ASSERT_TRUE(Succeeded(WaitAs(kBobToken, shared.id(), Succeeded)));

  auto from_job = [](const std::string& id) {
    tl::v1::JobSpec spec = TinySpec(1);
    spec.mutable_backbone()->set_from_job(id);
    return spec;
  };
  auto evaluate = [](const std::string& from_job, const std::string& model_path) {
    tl::v1::JobSpec spec = TinySpec(1);
    spec.clear_backbone();
    spec.mutable_dataset()->set_val_fraction(0);
    if (!from_job.empty()) spec.mutable_evaluate()->set_from_job(from_job);
    if (!model_path.empty()) spec.mutable_evaluate()->set_model_path(model_path);
    return spec;
  };
  Job job;
  const grpc::Status others = SubmitSpecAs(kAliceToken, from_job(bobs.id()), &job);
  const grpc::Status missing = SubmitSpecAs(kAliceToken, from_job("0123456789abcdef"), &job);
  EXPECT_EQ(others.error_code(), grpc::StatusCode::PERMISSION_DENIED) << others.error_message();
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  std::string others_message = others.error_message();
  others_message.replace(others_message.find(bobs.id()), bobs.id().size(), "0123456789abcdef");
  EXPECT_EQ(others_message, missing.error_message());
  EXPECT_EQ(SubmitSpecAs(kAliceToken, evaluate(bobs.id(), ""), &job).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(SubmitSpecAs(kAliceToken, evaluate("", bobs.id() + "/model.pt"), &job).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // GetJob answers alike for another's job and for none.
  const grpc::Status get_others = GetAs(kAliceToken, bobs.id(), &job);
  EXPECT_EQ(get_others.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(GetAs(kAliceToken, "0123456789abcdef", &job).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // What bob shared with alice she may start from and evaluate; an admin may use anything.
  Job fine_tuned, evaluated, by_admin;
  ASSERT_TRUE(SubmitSpecAs(kAliceToken, from_job(shared.id()), &fine_tuned).ok());
  ASSERT_TRUE(SubmitSpecAs(kAliceToken, evaluate(shared.id(), ""), &evaluated).ok());
  ASSERT_TRUE(SubmitSpecAs(kAdminToken, evaluate(bobs.id(), ""), &by_admin).ok());
  EXPECT_EQ(WaitAs(kAliceToken, fine_tuned.id(), HasEnded).state(), Job::SUCCEEDED);
  EXPECT_EQ(WaitAs(kAliceToken, evaluated.id(), HasEnded).state(), Job::SUCCEEDED);
  EXPECT_EQ(WaitAs(kAdminToken, by_admin.id(), HasEnded).state(), Job::SUCCEEDED);
}

TEST_F(SecureCluster, AWorkerTokenCannotTakeAnotherWorkersIdOrPointResultsElsewhere) {
  Process& real = cluster_.StartWorker("gpu-box", {"--token_file=" + cluster_.path("worker.token"),
                                                   "--tls_ca=" + cluster_.path("cert.pem")});
  Job job;
  ASSERT_TRUE(SubmitSpecAs(kAliceToken, TinySpec(60), &job).ok());
  ASSERT_EQ(WaitAs(kAliceToken, job.id(), [](const Job& j) { return j.epoch() >= 1; }).state(),
            Job::RUNNING);
  auto workers = tl::v1::WorkerService::NewStub(channel_);
  // Another worker's token may not use this id at all.
  RawWorker other(*workers, kOtherWorkerToken, "gpu-box");
  const grpc::Status refused = other.Refusal();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED) << refused.error_message();
  // A token allowed the id may not replace the live session that came with another token.
  RawWorker pool(*workers, kPoolToken, "gpu-box");
  const grpc::Status taken = pool.Refusal();
  EXPECT_EQ(taken.error_code(), grpc::StatusCode::ALREADY_EXISTS) << taken.error_message();
  // The real worker was not told to drop its job, and finishes it with every epoch.
  const Job finished = WaitAs(kAliceToken, job.id(), HasEnded);
  EXPECT_EQ(finished.state(), Job::SUCCEEDED) << finished.error();
  EXPECT_EQ(finished.attempt(), 1);
  EXPECT_EQ(finished.result().final_metrics().epoch(), 60);
  EXPECT_EQ(real.Log().find("cancel requested"), std::string::npos) << real.Log();

  // A worker that is assigned a job may not point its result outside the job's folder.
  real.Signal(SIGTERM);
  real.Wait();
  ASSERT_TRUE(tl::testing::WaitFor(
      [&] {
        return cluster_.server().Log().find("worker gpu-box disconnected") != std::string::npos;
      },
      30s));
  RawWorker rogue(*workers, kPoolToken, "gpu-rogue");
  Job target;
  ASSERT_TRUE(SubmitSpecAs(kAliceToken, TinySpec(60), &target).ok());
  std::optional<tl::v1::Assignment> assignment;
  for (int i = 0; i < 10 && !assignment; ++i) {
    std::optional<tl::v1::SchedulerMessage> message = rogue.Read();
    ASSERT_TRUE(message.has_value());
    if (message->has_assignment()) assignment = message->assignment();
  }
  ASSERT_TRUE(assignment.has_value());
  ASSERT_EQ(assignment->job_id(), target.id());
  tl::v1::WorkerMessage report;
  tl::v1::JobFinished& done = *report.mutable_finished();
  done.set_job_id(target.id());
  done.set_attempt(assignment->attempt());
  done.set_outcome(tl::v1::JobFinished::SUCCEEDED);
  done.mutable_result()->set_model_path("../../../etc/passwd");
  ASSERT_TRUE(rogue.Write(report));
  const Job after = WaitAs(kAliceToken, target.id(),
                           [](const Job& j) { return j.failures() == 1; });
  EXPECT_NE(after.state(), Job::SUCCEEDED);
  EXPECT_EQ(after.failures(), 1);
  EXPECT_EQ(after.result().model_path(), "");
  rogue.Finish();
}

TEST_F(SecureCluster, FreeTextIsBoundedAndListingStaysWithinTheMessageLimit) {
  // A name of 200 "é" is 400 bytes and allowed; control characters are not.
  tl::v1::JobSpec accents = TinySpec(1);
  std::string name;
  for (int i = 0; i < 200; ++i) name += "\xC3\xA9";
  accents.set_name(name);
  Job job;
  ASSERT_TRUE(SubmitSpecAs(kAliceToken, accents, &job).ok());
  tl::v1::JobSpec forged = TinySpec(1);
  forged.set_name("x\n2026-12-06T00:00:00.000Z I tlserver] job 0 SUCCEEDED\x1b[2J");
  const grpc::Status refused = SubmitSpecAs(kAliceToken, forged, &job);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.error_message().find("name"), std::string::npos) << refused.error_message();

  // A cancel reason of megabytes is refused; one of 1000 characters is kept.
  Job queued;
  ASSERT_TRUE(SubmitSpecAs(kAliceToken, TinySpec(1), &queued).ok());
  for (const size_t length : {size_t{3900000}, size_t{1000}}) {
    tl::v1::CancelJobRequest cancel;
    cancel.set_job_id(queued.id());
    cancel.set_reason(std::string(length, 'r'));
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kAliceToken);
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    Job cancelled;
    const grpc::Status status = jobs_->CancelJob(&context, cancel, &cancelled);
    EXPECT_EQ(status.error_code(), length > 1000 ? grpc::StatusCode::INVALID_ARGUMENT
                                                 : grpc::StatusCode::OK)
        << status.error_message();
  }
  // Listing works for the owner and for an admin, through tlctl too.
  for (const char* token : {kAliceToken, kAdminToken}) {
    std::vector<std::string> list = tlctl(token);
    list.push_back("list");
    auto [status, output] = RunToEnd(list, cluster_.path("list.log"));
    EXPECT_EQ(status, 0) << output;
    EXPECT_NE(output.find(queued.id()), std::string::npos) << output;
  }
}

// A watcher that asks for the events after a sequence the job has not reached gets none up to
// it, live ones included.
TEST_F(SecureCluster, WatchingFromAFutureSequenceSkipsEverythingUpToIt) {
  Job job;
  ASSERT_TRUE(SubmitSpecAs(kAliceToken, TinySpec(1), &job).ok());  // event 1; no worker here
  grpc::ClientContext context;
  context.AddMetadata("authorization", std::string("Bearer ") + kAliceToken);
  context.set_deadline(std::chrono::system_clock::now() + 30s);
  tl::v1::WatchJobRequest request;
  request.set_job_id(job.id());
  request.set_after_sequence(4);
  auto reader = jobs_->WatchJob(&context, request);
  auto change = [&](auto call, auto request_of) {
    grpc::ClientContext call_context;
    call_context.AddMetadata("authorization", std::string("Bearer ") + kAliceToken);
    call_context.set_deadline(std::chrono::system_clock::now() + 10s);
    Job changed;
    const grpc::Status status = ((*jobs_).*call)(&call_context, request_of, &changed);
    EXPECT_TRUE(status.ok()) << status.error_message();
  };
  tl::v1::PauseJobRequest pause;
  pause.set_job_id(job.id());
  tl::v1::ResumeJobRequest resume;
  resume.set_job_id(job.id());
  tl::v1::CancelJobRequest cancel;
  cancel.set_job_id(job.id());
  change(&tl::v1::JobService::Stub::PauseJob, pause);    // 2
  change(&tl::v1::JobService::Stub::ResumeJob, resume);  // 3
  change(&tl::v1::JobService::Stub::PauseJob, pause);    // 4
  change(&tl::v1::JobService::Stub::CancelJob, cancel);  // 5
  std::vector<int64_t> sequences;
  tl::v1::JobEvent event;
  while (reader->Read(&event)) sequences.push_back(event.sequence());
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(sequences, std::vector<int64_t>{5});
}

}  // namespace
}  // namespace tl
