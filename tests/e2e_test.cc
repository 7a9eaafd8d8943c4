// End to end, with real processes on 127.0.0.1: tlserver with its SQLite
// file, tlworker processes training a tiny TorchScript backbone on tiny
// generated images, tlctl as a user runs it, /metrics scraped over HTTP.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <opencv2/imgcodecs.hpp>
#include <regex>

#include "google/protobuf/util/json_util.h"
#include "tests/cluster.h"
#include "tests/http_get.h"
#include "tests/process.h"
#include "tl/v1/service.grpc.pb.h"

namespace tl {
namespace {

namespace fs = std::filesystem;
using ::tl::testing::Cancel;
using ::tl::testing::Cluster;
using ::tl::testing::EpochsOf;
using ::tl::testing::Get;
using ::tl::testing::HttpGet;
using ::tl::testing::StatesOf;
using ::tl::testing::Submit;
using ::tl::testing::TinySpec;
using ::tl::testing::WatchToEnd;
using ::tl::testing::Process;
using ::tl::testing::ReadFile;
using ::tl::testing::RunToEnd;
using ::tl::testing::WaitFor;
using ::tl::v1::Job;
using ::tl::v1::JobEvent;
using ::tl::v1::JobSpec;
using namespace std::chrono_literals;

TEST(EndToEndTest, JobRunsToSuccessWithEpochsArtifactsAndMetrics) {
  Cluster cluster;
  cluster.StartServer();
  cluster.StartWorker("w1");
  // Enough epochs that the job is still running when the first epoch's
  // event arrives and /metrics is scraped.
  constexpr int kEpochs = 30;
  const Job submitted = Submit(cluster, TinySpec(kEpochs));
  ASSERT_EQ(submitted.state(), Job::QUEUED);

  std::string scrape_while_running;
  const std::vector<JobEvent> events =
      WatchToEnd(cluster, submitted.id(), [&](const JobEvent& event) {
        // The gauges are set before the epoch event goes out.
        if (event.has_epoch() && scrape_while_running.empty()) {
          scrape_while_running = HttpGet(cluster.metrics_port(), "/metrics");
        }
      });

  const std::vector<Job::State> states = StatesOf(events);
  ASSERT_FALSE(states.empty());
  EXPECT_EQ(states.back(), Job::SUCCEEDED);
  EXPECT_NE(std::find(states.begin(), states.end(), Job::RUNNING), states.end());
  std::vector<int> all_epochs(kEpochs);
  std::iota(all_epochs.begin(), all_epochs.end(), 1);
  EXPECT_EQ(EpochsOf(events), all_epochs);
  EXPECT_TRUE(std::regex_search(
      scrape_while_running,
      std::regex("tl_job_epoch\\{job_id=\"" + submitted.id() + "\"\\} [1-9][0-9]*\n")))
      << scrape_while_running;

  const Job job = Get(cluster, submitted.id());
  EXPECT_EQ(job.state(), Job::SUCCEEDED);
  EXPECT_EQ(job.attempt(), 1);
  EXPECT_EQ(job.epoch(), kEpochs);
  EXPECT_EQ(job.result().dataset().class_names_size(), 3);
  EXPECT_EQ(job.result().dataset().train_images() + job.result().dataset().val_images(), 18);
  for (const std::string& artifact :
       {job.result().model_path(), job.result().backbone_path(), job.result().metrics_path(),
        job.result().model_info_path()}) {
    EXPECT_TRUE(fs::is_regular_file(cluster.artifact_root() + "/" + artifact)) << artifact;
  }

  // Stored epochs come back to a watcher who arrives after the end.
  EXPECT_EQ(EpochsOf(WatchToEnd(cluster, submitted.id())), all_epochs);

  const std::string scrape = HttpGet(cluster.metrics_port(), "/metrics");
  EXPECT_NE(scrape.find("tl_jobs_submitted_total 1"), std::string::npos) << scrape;
  EXPECT_NE(scrape.find("tl_jobs_finished_total{outcome=\"succeeded\"} 1"), std::string::npos);
  EXPECT_NE(scrape.find("tl_workers_connected 1"), std::string::npos);
  // Per-job series end with the job.
  EXPECT_EQ(scrape.find("job_id=\"" + submitted.id() + "\""), std::string::npos);
}

TEST(EndToEndTest, CancelStopsARunningJob) {
  Cluster cluster;
  cluster.StartServer();
  cluster.StartWorker("w1");
  const Job submitted = Submit(cluster, TinySpec(500));
  bool cancel_sent = false;
  const std::vector<JobEvent> events =
      WatchToEnd(cluster, submitted.id(), [&](const JobEvent& event) {
        if (event.has_epoch() && !cancel_sent) {
          cancel_sent = true;
          Job reply;
          EXPECT_TRUE(Cancel(cluster, submitted.id(), "enough", &reply).ok());
          EXPECT_TRUE(reply.cancel_requested());
        }
      });
  ASSERT_TRUE(cancel_sent);
  const Job job = Get(cluster, submitted.id());
  EXPECT_EQ(job.state(), Job::CANCELLED);
  EXPECT_EQ(job.error(), "enough");
  EXPECT_LT(job.epoch(), 500);

  // The worker is free again: the next job runs.
  const Job next = Submit(cluster, TinySpec(1));
  WatchToEnd(cluster, next.id());
  EXPECT_EQ(Get(cluster, next.id()).state(), Job::SUCCEEDED);
}

TEST(EndToEndTest, QueuedJobsSurviveAServerRestartAndThenRun) {
  Cluster cluster;
  cluster.StartServer();
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Submit(cluster, TinySpec(1)).id());
  ASSERT_EQ(cluster.StopServer(SIGTERM), 0);

  cluster.StartServer();
  for (const std::string& id : ids) EXPECT_EQ(Get(cluster, id).state(), Job::QUEUED);
  cluster.StartWorker("w1");
  for (const std::string& id : ids) {
    WatchToEnd(cluster, id);
    EXPECT_EQ(Get(cluster, id).state(), Job::SUCCEEDED) << id;
  }
}

TEST(EndToEndTest, AKilledWorkersJobResumesOnAnotherWorker) {
  Cluster cluster;
  cluster.StartServer({"--lease_seconds=1", "--heartbeat_seconds=0.2"});
  Process& first = cluster.StartWorker("doomed");
  // Long enough that the job cannot finish between the second epoch's event
  // and the kill.
  constexpr int kEpochs = 100;
  const Job submitted = Submit(cluster, TinySpec(kEpochs));
  bool killed = false;
  std::vector<JobEvent> events = WatchToEnd(cluster, submitted.id(), [&](const JobEvent& event) {
    if (event.has_epoch() && event.epoch().epoch() == 2 && !killed) {
      killed = true;
      first.Signal(SIGKILL);
      first.Wait();
      cluster.StartWorker("survivor");
    }
  });
  ASSERT_TRUE(killed);
  const Job job = Get(cluster, submitted.id());
  EXPECT_EQ(job.state(), Job::SUCCEEDED) << job.error();
  EXPECT_EQ(job.attempt(), 2);
  EXPECT_EQ(job.worker_id(), "survivor");
  // Every epoch is reported once, live and on replay. The second attempt resumed from a
  // checkpoint instead of starting over: an attempt that started over would have reported
  // epoch 1 again with other figures (its own timings), which would show here twice.
  std::vector<int> expected(kEpochs);
  std::iota(expected.begin(), expected.end(), 1);
  EXPECT_EQ(EpochsOf(events), expected);
  const std::vector<JobEvent> replay = WatchToEnd(cluster, submitted.id());
  EXPECT_EQ(EpochsOf(replay), expected);
  for (const JobEvent& event : replay) {
    if (event.has_epoch() && event.epoch().epoch() <= 2) EXPECT_EQ(event.epoch().attempt(), 1);
    if (event.has_epoch() && event.epoch().epoch() == kEpochs) {
      EXPECT_EQ(event.epoch().attempt(), 2);
    }
  }
}

TEST(EndToEndTest, FailedJobShowsItsReasonAndTheServerStaysUp) {
  Cluster cluster;
  // A backbone file that passes the server's checks but does not load.
  std::ofstream(cluster.data_root() + "/backbones/broken.pt") << "not torchscript";
  fs::copy_file(cluster.data_root() + "/backbones/tiny.json",
                cluster.data_root() + "/backbones/broken.json");
  cluster.StartServer();
  cluster.StartWorker("w1");
  JobSpec spec = TinySpec(1);
  spec.mutable_backbone()->set_path("backbones/broken.pt");
  const Job submitted = Submit(cluster, spec);
  WatchToEnd(cluster, submitted.id());
  const Job job = Get(cluster, submitted.id());
  EXPECT_EQ(job.state(), Job::FAILED);
  EXPECT_NE(job.error().find("broken.pt"), std::string::npos) << job.error();

  // tlctl get shows the reason, and exits 0 (the call worked).
  auto [status, output] = RunToEnd({TLCTL_PATH, "--server=" + cluster.address(), "get",
                                    submitted.id()},
                                   cluster.path("tlctl.log"));
  EXPECT_EQ(status, 0) << output;
  EXPECT_NE(output.find("FAILED"), std::string::npos) << output;
  EXPECT_NE(output.find("broken.pt"), std::string::npos) << output;

  // A spec the server refuses: INVALID_ARGUMENT naming the field; server up.
  JobSpec bad = TinySpec(0);
  tl::v1::SubmitJobRequest request;
  *request.mutable_spec() = bad;
  Job reply;
  grpc::ClientContext context;
  const grpc::Status refused = cluster.stub().SubmitJob(&context, request, &reply);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.error_message().find("training.epochs"), std::string::npos);
  EXPECT_FALSE(cluster.server().Exited());
  EXPECT_EQ(Get(cluster, submitted.id()).state(), Job::FAILED);
}

TEST(EndToEndTest, TlctlSubmitWatchPrintsEpochsAndExitStatusFollowsTheJob) {
  Cluster cluster;
  cluster.StartServer();
  cluster.StartWorker("w1");
  std::string json;
  google::protobuf::util::MessageToJsonString(TinySpec(2), &json);
  std::ofstream(cluster.path("job.json")) << json;

  auto [status, output] =
      RunToEnd({TLCTL_PATH, "--server=" + cluster.address(), "submit", cluster.path("job.json"),
                "--watch", "--id-file", cluster.path("job.id")},
               cluster.path("tlctl.log"));
  EXPECT_EQ(status, 0) << output;
  std::string job_id = ReadFile(cluster.path("job.id"));
  job_id = job_id.substr(0, job_id.find('\n'));
  EXPECT_NE(output.find("submitted job " + job_id), std::string::npos) << output;
  EXPECT_EQ(Get(cluster, job_id).state(), Job::SUCCEEDED);
  EXPECT_NE(output.find("train_loss"), std::string::npos) << output;
  EXPECT_NE(output.find("SUCCEEDED"), std::string::npos);

  // A typo in job.json: exit 2, and the message names the field.
  std::ofstream(cluster.path("typo.json")) << R"({"trainig": {"epochs": 1}})";
  auto [typo_status, typo_output] =
      RunToEnd({TLCTL_PATH, "--server=" + cluster.address(), "submit", cluster.path("typo.json")},
               cluster.path("tlctl2.log"));
  EXPECT_EQ(typo_status, 2);
  EXPECT_NE(typo_output.find("trainig"), std::string::npos) << typo_output;

  // An unknown job: the call fails, exit 1.
  auto [missing_status, missing_output] =
      RunToEnd({TLCTL_PATH, "--server=" + cluster.address(), "get", "nosuchjob"},
               cluster.path("tlctl3.log"));
  EXPECT_EQ(missing_status, 1);
  EXPECT_NE(missing_output.find("NOT_FOUND"), std::string::npos) << missing_output;

  // The list shows the job.
  auto [list_status, list_output] =
      RunToEnd({TLCTL_PATH, "--server=" + cluster.address(), "list", "--state", "succeeded"},
               cluster.path("tlctl4.log"));
  EXPECT_EQ(list_status, 0);
  EXPECT_NE(list_output.find("SUCCEEDED"), std::string::npos) << list_output;
}

TEST(EndToEndTest, ReportsReachTlctlAndAnEvaluationJobRerunsTheModel) {
  Cluster cluster;
  cluster.StartServer();
  cluster.StartWorker("w1");
  cluster.WriteImages("exam", {{"red", {0, 0, 255}}, {"green", {0, 255, 0}}, {"blue", {255, 0, 0}}});
  JobSpec training = TinySpec(2);
  training.mutable_dataset()->set_test_dir("exam");
  const Job trained = Submit(cluster, training);
  WatchToEnd(cluster, trained.id());
  const Job finished = Get(cluster, trained.id());
  ASSERT_EQ(finished.state(), Job::SUCCEEDED) << finished.error();
  ASSERT_TRUE(finished.result().has_test_report());
  EXPECT_EQ(finished.result().test_report().images(), 18);

  // tlctl reads the report from the job record.
  auto [status, output] = RunToEnd(
      {TLCTL_PATH, "--server=" + cluster.address(), "report", trained.id()},
      cluster.path("report.log"));
  EXPECT_EQ(status, 0) << output;
  EXPECT_NE(output.find("validation: "), std::string::npos) << output;
  EXPECT_NE(output.find("test: 18 images"), std::string::npos) << output;
  EXPECT_NE(output.find("confusion matrix"), std::string::npos) << output;
  EXPECT_NE(output.find("green"), std::string::npos) << output;

  // The same model on the same images as an evaluation job: same figures.
  JobSpec evaluation;
  evaluation.mutable_evaluate()->set_from_job(trained.id());
  evaluation.mutable_dataset()->set_test_dir("exam");
  evaluation.mutable_training()->set_threads(1);
  const Job evaluating = Submit(cluster, evaluation);
  EXPECT_EQ(evaluating.spec().evaluate().model_path(), finished.result().model_path());
  WatchToEnd(cluster, evaluating.id());
  const Job evaluated = Get(cluster, evaluating.id());
  ASSERT_EQ(evaluated.state(), Job::SUCCEEDED) << evaluated.error();
  EXPECT_TRUE(evaluated.result().model_path().empty());
  EXPECT_EQ(evaluated.result().test_report().images(), 18);
  EXPECT_DOUBLE_EQ(evaluated.result().test_report().accuracy(),
                   finished.result().test_report().accuracy());
  EXPECT_TRUE(fs::is_regular_file(cluster.artifact_root() + "/" +
                                  evaluated.result().confusion_matrix_path()));
}

}  // namespace
}  // namespace tl
