// What a worker reads and writes, with real tlserver and tlworker processes:
// files that lead out of the data or artifact root are refused when the
// worker opens them, even when swapped in while the job waited in the queue;
// images above the worker's pixel limit are skipped undecoded; a damaged
// checkpoint makes the job start over instead of failing every attempt.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "tests/cluster.h"
#include "tests/http_get.h"
#include "tl/v1/service.grpc.pb.h"

namespace tl {
namespace {

namespace fs = std::filesystem;
using ::tl::testing::Cluster;
using ::tl::testing::Ended;
using ::tl::testing::Get;
using ::tl::testing::HttpGet;
using ::tl::testing::Process;
using ::tl::testing::Submit;
using ::tl::testing::TinySpec;
using ::tl::testing::WaitFor;
using ::tl::testing::WaitForJob;
using ::tl::v1::Job;
using ::tl::v1::JobSpec;
using namespace std::chrono_literals;

// Six 12 x 12 images named as the cluster's class folders name theirs
// (0.png .. 5.png), in `dir`, outside the data root.
void WriteOutsideImages(const std::string& dir) {
  fs::create_directories(dir);
  for (int i = 0; i < 6; ++i) {
    cv::imwrite(dir + "/" + std::to_string(i) + ".png",
                cv::Mat(12, 12, CV_8UC3, cv::Scalar(200, 200, 40 * i)));
  }
}

// Replaces data/images/<name> with a symbolic link to `target`.
void SwapClassFolderForLink(Cluster& cluster, const std::string& name, const std::string& target) {
  const fs::path folder = cluster.data_root() + "/images/" + name;
  fs::rename(folder, cluster.path(name + ".moved"));
  fs::create_symlink(target, folder);
}

std::vector<std::string> Examples(const Job& job) {
  const auto& examples = job.result().dataset().unreadable_examples();
  return {examples.begin(), examples.end()};
}

bool Contains(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

std::string Logs(Cluster& cluster, const std::string& id) {
  tl::v1::GetJobLogsRequest request;
  request.set_job_id(id);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  auto reader = cluster.stub().GetJobLogs(&context, request);
  std::string text;
  tl::v1::LogLine line;
  while (reader->Read(&line)) text += line.text() + "\n";
  reader->Finish();
  return text;
}

// Issue 12, item 4: a job is checked at submit; by the time a worker runs
// it, an image file has become a link to a file outside the data root and a
// class folder a link to an outside folder. The worker refuses both where it
// opens them, counts and names them, and trains on the rest.
TEST(WorkerFilesTest, ImagesLinkedOutsideTheDataRootWhileQueuedAreRefusedAndNamed) {
  Cluster cluster;
  cluster.StartServer();
  const Job submitted = Submit(cluster, TinySpec(1));
  ASSERT_EQ(submitted.state(), Job::QUEUED);

  WriteOutsideImages(cluster.path("outside/blue"));
  fs::create_symlink(cluster.path("outside/blue/0.png"),
                     cluster.data_root() + "/images/red/escape.png");
  SwapClassFolderForLink(cluster, "blue", cluster.path("outside/blue"));
  cluster.StartWorker("w1");

  const Job job = WaitForJob(cluster, submitted.id(), [](const Job& j) { return Ended(j.state()); });
  ASSERT_EQ(job.state(), Job::SUCCEEDED) << job.error();
  const tl::v1::DatasetSummary& dataset = job.result().dataset();
  EXPECT_EQ(dataset.train_images() + dataset.val_images(), 19);
  EXPECT_EQ(dataset.skipped_images(), 7);
  const std::vector<std::string> examples = Examples(job);
  EXPECT_TRUE(Contains(examples, "images/red/escape.png (outside the data root)"))
      << ::testing::PrintToString(examples);
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(Contains(examples, "images/blue/" + std::to_string(i) + ".png (outside the data root)"))
        << ::testing::PrintToString(examples);
  }
}

// Too many refused images fail the job at once: another attempt would find
// the same links.
TEST(WorkerFilesTest, ADatasetMostlyOutsideTheDataRootFailsWithoutRetrying) {
  Cluster cluster;
  cluster.StartServer();
  const Job submitted = Submit(cluster, TinySpec(1));
  WriteOutsideImages(cluster.path("outside/green"));
  WriteOutsideImages(cluster.path("outside/blue"));
  SwapClassFolderForLink(cluster, "green", cluster.path("outside/green"));
  SwapClassFolderForLink(cluster, "blue", cluster.path("outside/blue"));
  cluster.StartWorker("w1");

  const Job job = WaitForJob(cluster, submitted.id(), [](const Job& j) { return Ended(j.state()); });
  EXPECT_EQ(job.state(), Job::FAILED);
  EXPECT_EQ(job.attempt(), 1);
  EXPECT_NE(job.error().find("images could not be read"), std::string::npos) << job.error();
  EXPECT_NE(job.error().find("outside the data root"), std::string::npos) << job.error();
}

// The same rule for the artifact root: a job that starts from an earlier
// job's exported backbone refuses it when it has become a link out of the
// artifact root while the job waited.
TEST(WorkerFilesTest, ABackboneFromAnEarlierJobLinkedOutsideTheArtifactRootIsRefused) {
  Cluster cluster;
  cluster.StartServer();
  Process& first_worker = cluster.StartWorker("w1");
  const Job earlier = Submit(cluster, TinySpec(1));
  ASSERT_EQ(WaitForJob(cluster, earlier.id(), [](const Job& j) { return Ended(j.state()); }).state(),
            Job::SUCCEEDED);
  // The next job must wait in the queue: no worker until the scheduler has
  // seen this one go (else it could be handed to the closing session).
  first_worker.Signal(SIGTERM);
  first_worker.Wait();
  ASSERT_TRUE(WaitFor(
      [&] {
        return HttpGet(cluster.metrics_port(), "/metrics").find("tl_workers_connected 0\n") !=
               std::string::npos;
      },
      20s));

  JobSpec spec = TinySpec(1);
  spec.mutable_backbone()->set_from_job(earlier.id());
  const Job submitted = Submit(cluster, spec);
  ASSERT_EQ(submitted.state(), Job::QUEUED);
  const fs::path backbone = cluster.artifact_root() + "/" + earlier.id() + "/backbone.pt";
  fs::create_directories(cluster.path("outside"));
  fs::rename(backbone, cluster.path("outside/backbone.pt"));
  fs::create_symlink(cluster.path("outside/backbone.pt"), backbone);
  cluster.StartWorker("w2");

  const Job job = WaitForJob(cluster, submitted.id(), [](const Job& j) { return Ended(j.state()); });
  EXPECT_EQ(job.state(), Job::FAILED);
  EXPECT_EQ(job.attempt(), 1);
  EXPECT_NE(job.error().find("backbone"), std::string::npos) << job.error();
  EXPECT_NE(job.error().find("leads outside its root " +
                             fs::canonical(cluster.artifact_root()).string()),
            std::string::npos)
      << job.error();
}

// Item 7: the worker's --max_image_pixels reaches every decode; an image
// above it is skipped undecoded and named with its size.
TEST(WorkerFilesTest, ImagesAboveTheWorkersPixelLimitAreSkippedAndNamed) {
  Cluster cluster;
  cv::imwrite(cluster.data_root() + "/images/red/big.png",
              cv::Mat(40, 40, CV_8UC3, cv::Scalar(0, 0, 200)));
  cluster.StartServer();
  cluster.StartWorker("w1", {"--max_image_pixels=1000"});
  const Job submitted = Submit(cluster, TinySpec(1));
  const Job job = WaitForJob(cluster, submitted.id(), [](const Job& j) { return Ended(j.state()); });
  ASSERT_EQ(job.state(), Job::SUCCEEDED) << job.error();
  EXPECT_EQ(job.result().dataset().skipped_images(), 1);
  EXPECT_EQ(Examples(job), std::vector<std::string>{
                               "images/red/big.png (PNG of 40 x 40 pixels, above the limit of "
                               "1000 pixels)"});
}

// Item 8: a checkpoint cut short (a crash or a full disk mid-write) used to
// throw on every attempt until the job failed; now it is noticed, logged,
// and the attempt starts over. A paused job leaves a real checkpoint.
TEST(WorkerFilesTest, APausedJobWhoseCheckpointWasCutShortStartsOverWhenResumed) {
  Cluster cluster;
  cluster.StartServer();
  cluster.StartWorker("w1");
  constexpr int kEpochs = 40;
  const Job submitted = Submit(cluster, TinySpec(kEpochs));
  ASSERT_EQ(WaitForJob(cluster, submitted.id(), [](const Job& j) { return j.epoch() >= 1; })
                .state(),
            Job::RUNNING);
  {
    tl::v1::PauseJobRequest pause;
    pause.set_job_id(submitted.id());
    Job reply;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    ASSERT_TRUE(cluster.stub().PauseJob(&context, pause, &reply).ok());
  }
  const Job paused = WaitForJob(cluster, submitted.id(),
                                [](const Job& j) { return j.state() == Job::PAUSED || Ended(j.state()); });
  ASSERT_EQ(paused.state(), Job::PAUSED) << paused.error();

  const fs::path epochs_file =
      cluster.artifact_root() + "/" + submitted.id() + "/checkpoint/epochs.json";
  ASSERT_TRUE(fs::exists(epochs_file));
  fs::resize_file(epochs_file, fs::file_size(epochs_file) / 2);
  {
    tl::v1::ResumeJobRequest resume;
    resume.set_job_id(submitted.id());
    Job reply;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    ASSERT_TRUE(cluster.stub().ResumeJob(&context, resume, &reply).ok());
  }
  const Job job = WaitForJob(cluster, submitted.id(), [](const Job& j) { return Ended(j.state()); },
                             120s);
  ASSERT_EQ(job.state(), Job::SUCCEEDED) << job.error();
  EXPECT_EQ(job.failures(), 0);
  EXPECT_EQ(job.epoch(), kEpochs);
  const std::string logs = Logs(cluster, submitted.id());
  EXPECT_NE(logs.find("is damaged (epochs.json holds"), std::string::npos)
      << logs;
  EXPECT_NE(logs.find("the attempt starts over from epoch 1"), std::string::npos) << logs;
}

}  // namespace
}  // namespace tl
