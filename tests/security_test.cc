// Authentication, roles and TLS with real processes: a tokens file, a
// certificate made here with openssl, a worker with a worker token, and
// users who see only their own jobs.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "google/protobuf/util/json_util.h"
#include "tests/cluster.h"
#include "tests/process.h"
#include "tl/v1/service.grpc.pb.h"

namespace tl {
namespace {

namespace fs = std::filesystem;
using ::tl::testing::Cluster;
using ::tl::testing::ReadFile;
using ::tl::testing::RunToEnd;
using ::tl::testing::TinySpec;
using ::tl::v1::Job;
using namespace std::chrono_literals;

constexpr char kAliceToken[] = "alice-0123456789abcdef";
constexpr char kBobToken[] = "bob-0123456789abcdef00";
constexpr char kWorkerToken[] = "worker-0123456789abcdef";
constexpr char kAdminToken[] = "admin-0123456789abcdef";

class SecureCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(cluster_.path("tokens")) << "# token principal role\n"
                                           << kAliceToken << " alice user\n"
                                           << kBobToken << " bob user\n"
                                           << kWorkerToken << " gpu-box worker\n"
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

  // Bob may not see or cancel it; an admin may.
  const grpc::Status bob = GetAs(kBobToken, id, &job);
  EXPECT_EQ(bob.error_code(), grpc::StatusCode::PERMISSION_DENIED) << bob.error_message();
  std::vector<std::string> cancel = tlctl(kBobToken);
  cancel.insert(cancel.end(), {"cancel", id});
  auto [cancel_status, cancel_output] = RunToEnd(cancel, cluster_.path("cancel.log"));
  EXPECT_EQ(cancel_status, 1);
  EXPECT_NE(cancel_output.find("PERMISSION_DENIED"), std::string::npos) << cancel_output;
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

}  // namespace
}  // namespace tl
