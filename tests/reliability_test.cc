// What the scheduler must never lose, shown with real processes on
// 127.0.0.1: killed workers and a killed scheduler, a submission storm, many
// workers on one queue, a worker running two jobs at once in two slots,
// pause and resume, cancel, draining on SIGTERM, and job logs. Each test prints the figures it measured.
#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <numeric>
#include <regex>
#include <set>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/cluster.h"
#include "tests/process.h"
#include "tl/v1/service.grpc.pb.h"

namespace tl {
namespace {

namespace fs = std::filesystem;
using ::tl::testing::Cancel;
using ::tl::testing::Cluster;
using ::tl::testing::EpochsOf;
using ::tl::testing::Get;
using ::tl::testing::Process;
using ::tl::testing::RunToEnd;
using ::tl::testing::Submit;
using ::tl::testing::TinySpec;
using ::tl::testing::WaitFor;
using ::tl::testing::WaitForJob;
using ::tl::testing::WatchToEnd;
using ::testing::HasSubstr;
using ::tl::v1::Job;
using ::tl::v1::JobEvent;
using ::tl::v1::JobSpec;
using namespace std::chrono_literals;

bool Ended(const Job& job) {
  return job.state() == Job::SUCCEEDED || job.state() == Job::FAILED ||
         job.state() == Job::CANCELLED;
}

// Every job on the server, through ListJobs pages.
std::vector<Job> ListAll(tl::v1::JobService::Stub& stub) {
  std::vector<Job> jobs;
  std::string token;
  for (int page = 0; page < 1000; ++page) {
    tl::v1::ListJobsRequest request;
    request.set_page_size(1000);
    request.set_page_token(token);
    tl::v1::ListJobsResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    const grpc::Status status = stub.ListJobs(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    if (!status.ok()) break;
    jobs.insert(jobs.end(), response.jobs().begin(), response.jobs().end());
    token = response.next_page_token();
    if (token.empty()) break;
  }
  return jobs;
}

std::vector<tl::v1::LogLine> Logs(tl::v1::JobService::Stub& stub, const std::string& id) {
  tl::v1::GetJobLogsRequest request;
  request.set_job_id(id);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  auto reader = stub.GetJobLogs(&context, request);
  std::vector<tl::v1::LogLine> lines;
  tl::v1::LogLine line;
  while (reader->Read(&line)) lines.push_back(line);
  const grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  return lines;
}

grpc::Status Pause(Cluster& cluster, const std::string& id, Job* job) {
  tl::v1::PauseJobRequest request;
  request.set_job_id(id);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  return cluster.stub().PauseJob(&context, request, job);
}

grpc::Status Resume(Cluster& cluster, const std::string& id, Job* job) {
  tl::v1::ResumeJobRequest request;
  request.set_job_id(id);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  return cluster.stub().ResumeJob(&context, request, job);
}


std::vector<int> OneTo(int n) {
  std::vector<int> numbers(n);
  std::iota(numbers.begin(), numbers.end(), 1);
  return numbers;
}

// A job that no worker here can run (none offers CUDA): it stays queued.
JobSpec NeverRunsHere(const std::string& name) {
  JobSpec spec = TinySpec(1);
  spec.set_name(name);
  spec.mutable_resources()->set_device("cuda");
  return spec;
}

TEST(ReliabilityTest, SchedulerKilledDuringASubmitStormLosesNoAcknowledgedJob) {
  Cluster cluster;
  // A lease long enough that a scheduler busy with the storm on a loaded machine still answers
  // its worker within it (a worker that hears nothing for a lease stops its job).
  const std::vector<std::string> flags = {"--lease_seconds=10", "--heartbeat_seconds=0.2"};
  cluster.StartServer(flags);
  cluster.StartWorker("w1");
  // A job that runs across the kill: its worker claims it again after the restart.
  const Job running = Submit(cluster, TinySpec(150));
  ASSERT_EQ(WaitForJob(cluster, running.id(), [](const Job& j) { return j.epoch() >= 1; })
                .state(),
            Job::RUNNING);
  const int port = cluster.grpc_port();
  const std::string address = cluster.address();

  constexpr int kClients = 4;
  constexpr int kJobsPerClient = 40;
  std::mutex mutex;
  std::map<std::string, std::string> acknowledged;  // request id -> job id
  std::atomic<int> acknowledged_count{0};
  std::atomic<int> failed_calls{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto stub = tl::v1::JobService::NewStub(
          grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
      const auto give_up = std::chrono::steady_clock::now() + 90s;
      for (int i = 0; i < kJobsPerClient; ++i) {
        tl::v1::SubmitJobRequest request;
        *request.mutable_spec() = NeverRunsHere("storm");
        request.set_owner("client-" + std::to_string(c));
        request.set_request_id("c" + std::to_string(c) + "-" + std::to_string(i));
        // A call that fails (the scheduler is down) is repeated with the same request id until
        // it is acknowledged.
        while (std::chrono::steady_clock::now() < give_up) {
          Job job;
          grpc::ClientContext context;
          context.set_deadline(std::chrono::system_clock::now() + 2s);
          context.set_wait_for_ready(true);
          const grpc::Status status = stub->SubmitJob(&context, request, &job);
          if (status.ok()) {
            std::lock_guard<std::mutex> lock(mutex);
            acknowledged[request.request_id()] = job.id();
            ++acknowledged_count;
            break;
          }
          ++failed_calls;
        }
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return acknowledged_count >= kClients * kJobsPerClient / 4; }, 60s));
  const int acknowledged_before_kill = acknowledged_count;
  cluster.StopServer(SIGKILL);
  cluster.StartServer(flags, port);
  for (std::thread& client : clients) client.join();

  std::map<std::string, std::string> found;  // request id -> job id
  int storm_jobs = 0;
  for (const Job& job : ListAll(cluster.stub())) {
    if (job.spec().name() != "storm") continue;
    ++storm_jobs;
    EXPECT_TRUE(found.emplace(job.request_id(), job.id()).second)
        << "request id " << job.request_id() << " made two jobs";
  }
  ASSERT_EQ(acknowledged.size(), size_t{kClients * kJobsPerClient});
  int missing = 0;
  for (const auto& [request_id, job_id] : acknowledged) {
    auto it = found.find(request_id);
    if (it == found.end() || it->second != job_id) ++missing;
  }
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(storm_jobs, kClients * kJobsPerClient);
  std::cout << "[ figures ] acknowledged " << acknowledged.size() << " submissions ("
            << acknowledged_before_kill << " before the kill -9), found " << storm_jobs
            << " jobs after the restart, " << missing << " missing, " << failed_calls
            << " calls failed and were repeated\n";

  // The job that ran across the kill was claimed again by its worker and finished.
  const Job finished = WaitForJob(cluster, running.id(), Ended, 120s);
  EXPECT_EQ(finished.state(), Job::SUCCEEDED) << finished.error();
  EXPECT_EQ(finished.attempt(), 1) << "the worker kept its job across the restart";
  EXPECT_EQ(EpochsOf(WatchToEnd(cluster, running.id())), OneTo(150));
}

TEST(ReliabilityTest, EightWorkersShareOneQueueAndNoJobRunsTwice) {
  Cluster cluster;
  cluster.StartServer();
  constexpr int kWorkers = 8;
  constexpr int kJobs = 24;
  for (int w = 0; w < kWorkers; ++w) cluster.StartWorker("w" + std::to_string(w));
  std::vector<std::string> ids;
  for (int j = 0; j < kJobs; ++j) ids.push_back(Submit(cluster, TinySpec(2)).id());

  std::set<std::string> workers_used;
  for (const std::string& id : ids) {
    const Job job = WaitForJob(cluster, id, Ended, 180s);
    EXPECT_EQ(job.state(), Job::SUCCEEDED) << id << ": " << job.error();
    EXPECT_EQ(job.attempt(), 1) << id;
    EXPECT_EQ(job.failures(), 0) << id;
    EXPECT_EQ(EpochsOf(WatchToEnd(cluster, id)), OneTo(2)) << id;
    // One worker ran it, once: its log has one start, all from that worker.
    std::set<std::string> log_workers;
    int starts = 0;
    for (const tl::v1::LogLine& line : Logs(cluster.stub(), id)) {
      log_workers.insert(line.worker_id());
      starts += line.text().find("starting") != std::string::npos;
    }
    EXPECT_EQ(starts, 1) << id;
    EXPECT_EQ(log_workers, std::set<std::string>{job.worker_id()}) << id;
    workers_used.insert(job.worker_id());
  }
  EXPECT_GE(workers_used.size(), 2u);
  std::cout << "[ figures ] " << kJobs << " jobs on " << kWorkers << " workers: all succeeded once, "
            << workers_used.size() << " workers took jobs\n";
}

TEST(ReliabilityTest, PausedJobFreesItsWorkerAndResumesFromItsCheckpoint) {
  Cluster cluster;
  cluster.StartServer();
  cluster.StartWorker("w1");
  constexpr int kEpochs = 60;
  const Job submitted = Submit(cluster, TinySpec(kEpochs));
  ASSERT_EQ(WaitForJob(cluster, submitted.id(), [](const Job& j) { return j.epoch() >= 1; })
                .state(),
            Job::RUNNING);
  Job reply;
  ASSERT_TRUE(Pause(cluster, submitted.id(), &reply).ok());
  EXPECT_TRUE(reply.pause_requested() || reply.state() == Job::PAUSED);
  const Job paused = WaitForJob(cluster, submitted.id(),
                                [](const Job& j) { return j.state() == Job::PAUSED || Ended(j); });
  ASSERT_EQ(paused.state(), Job::PAUSED) << paused.error();
  ASSERT_LT(paused.epoch(), kEpochs);
  EXPECT_EQ(paused.failures(), 0);

  // The worker is free: another job runs meanwhile.
  const Job other = Submit(cluster, TinySpec(1));
  EXPECT_EQ(WaitForJob(cluster, other.id(), Ended).state(), Job::SUCCEEDED);
  EXPECT_EQ(Get(cluster, submitted.id()).state(), Job::PAUSED);

  Job resumed;
  ASSERT_TRUE(Resume(cluster, submitted.id(), &resumed).ok());
  const Job done = WaitForJob(cluster, submitted.id(), Ended, 120s);
  EXPECT_EQ(done.state(), Job::SUCCEEDED) << done.error();
  EXPECT_EQ(done.attempt(), 2);
  EXPECT_EQ(EpochsOf(WatchToEnd(cluster, submitted.id())), OneTo(kEpochs));
  std::cout << "[ figures ] paused after epoch " << paused.epoch() << " of " << kEpochs
            << ", resumed and finished\n";

  // tlctl logs shows both attempts' lines, the pause among them.
  auto [status, output] = RunToEnd(
      {TLCTL_PATH, "--server=" + cluster.address(), "logs", submitted.id()}, cluster.path("logs.out"));
  EXPECT_EQ(status, 0) << output;
  EXPECT_NE(output.find("w1#1"), std::string::npos) << output;
  EXPECT_NE(output.find("PAUSED: paused after epoch"), std::string::npos) << output;
  EXPECT_NE(output.find("w1#2"), std::string::npos) << output;
  EXPECT_NE(output.find("SUCCEEDED"), std::string::npos) << output;
}

TEST(ReliabilityTest, TlctlLogsFollowsARunningJobToItsEnd) {
  Cluster cluster;
  cluster.StartServer();
  cluster.StartWorker("w1");
  const Job submitted = Submit(cluster, TinySpec(20));
  Process follower({TLCTL_PATH, "--server=" + cluster.address(), "logs", "--follow",
                    submitted.id()},
                   cluster.path("follow.out"));
  ASSERT_TRUE(WaitFor([&] { return follower.Exited(); }, 120s));
  EXPECT_EQ(follower.Wait(), 0);
  const std::string output = follower.Log();
  EXPECT_EQ(Get(cluster, submitted.id()).state(), Job::SUCCEEDED);
  EXPECT_NE(output.find("epoch 20:"), std::string::npos) << output;
  EXPECT_NE(output.find("SUCCEEDED"), std::string::npos) << output;
}

TEST(ReliabilityTest, CancelWorksQueuedRunningAndWhenTheWorkerDiesMeanwhile) {
  Cluster cluster;
  cluster.StartServer({"--lease_seconds=2", "--heartbeat_seconds=0.2"});
  // Queued, no worker anywhere: cancelled at once.
  const Job queued = Submit(cluster, TinySpec(1));
  Job reply;
  ASSERT_TRUE(Cancel(cluster, queued.id(), "test cancel", &reply).ok());
  EXPECT_EQ(reply.state(), Job::CANCELLED);

  // Running, and its worker is frozen, so the cancel cannot reach the trainer; then it dies.
  Process& worker = cluster.StartWorker("frozen");
  const Job running = Submit(cluster, TinySpec(500));
  ASSERT_EQ(WaitForJob(cluster, running.id(), [](const Job& j) { return j.epoch() >= 1; })
                .state(),
            Job::RUNNING);
  worker.Signal(SIGSTOP);
  ASSERT_TRUE(Cancel(cluster, running.id(), "test cancel", &reply).ok());
  EXPECT_TRUE(reply.cancel_requested());
  worker.Signal(SIGKILL);
  worker.Wait();
  const Job cancelled = WaitForJob(cluster, running.id(), Ended);
  EXPECT_EQ(cancelled.state(), Job::CANCELLED);
  EXPECT_EQ(cancelled.error(), "test cancel");

  // Running on a live worker: stopped within a batch, the worker free again.
  cluster.StartWorker("live");
  const Job live = Submit(cluster, TinySpec(500));
  ASSERT_EQ(WaitForJob(cluster, live.id(), [](const Job& j) { return j.epoch() >= 1; }).state(),
            Job::RUNNING);
  ASSERT_TRUE(Cancel(cluster, live.id(), "test cancel", &reply).ok());
  const Job stopped = WaitForJob(cluster, live.id(), Ended);
  EXPECT_EQ(stopped.state(), Job::CANCELLED);
  EXPECT_LT(stopped.epoch(), 500);
  const Job next = Submit(cluster, TinySpec(1));
  EXPECT_EQ(WaitForJob(cluster, next.id(), Ended).state(), Job::SUCCEEDED);
}

TEST(ReliabilityTest, ATwoSlotWorkerRunsTwoJobsAtOnceAndItsDeathRequeuesBoth) {
  Cluster cluster;
  cluster.StartServer({"--lease_seconds=1", "--heartbeat_seconds=0.2"});
  const Job first = Submit(cluster, TinySpec(400));
  const Job second = Submit(cluster, TinySpec(400));
  const Job third = Submit(cluster, TinySpec(400));
  Process& worker = cluster.StartWorker("pair", {"--slots=2"});
  // Both slots train at once: one job each, both past their first epoch together.
  const auto training = [&](const std::string& id) {
    const Job job = Get(cluster, id);
    return job.state() == Job::RUNNING && job.epoch() >= 1;
  };
  ASSERT_TRUE(WaitFor([&] { return training(first.id()) && training(second.id()); }, 60s))
      << worker.Log();
  EXPECT_EQ(Get(cluster, third.id()).state(), Job::QUEUED);
  const std::set<std::string> slots = {Get(cluster, first.id()).worker_id(),
                                       Get(cluster, second.id()).worker_id()};
  EXPECT_EQ(slots, (std::set<std::string>{"pair/slot1", "pair/slot2"}));

  // A cancel stops one slot's job; the other trains on, and the freed slot takes the third.
  Job reply;
  ASSERT_TRUE(Cancel(cluster, second.id(), "test cancel", &reply).ok());
  EXPECT_EQ(WaitForJob(cluster, second.id(), Ended).state(), Job::CANCELLED);
  ASSERT_TRUE(WaitFor([&] { return training(third.id()); }, 60s)) << worker.Log();
  const Job still = Get(cluster, first.id());
  EXPECT_EQ(still.state(), Job::RUNNING);
  EXPECT_EQ(still.attempt(), 1);

  // kill -9 takes both slots' jobs down; after the lease both run again on a new worker,
  // resumed from their checkpoints.
  worker.Signal(SIGKILL);
  worker.Wait();
  const Job at_kill = Get(cluster, first.id());
  ASSERT_EQ(at_kill.state(), Job::RUNNING) << "400 epochs outlast the cancel";
  std::cout << "first job at the kill: epoch " << at_kill.epoch() << " of 400\n";
  cluster.StartWorker("after", {"--slots=2"});
  for (const std::string& id : {first.id(), third.id()}) {
    const Job done = WaitForJob(cluster, id, Ended, 180s);
    EXPECT_EQ(done.state(), Job::SUCCEEDED) << done.error();
    EXPECT_EQ(done.attempt(), 2) << id;
    EXPECT_EQ(done.worker_id().rfind("after/slot", 0), 0u) << done.worker_id();
    const std::vector<JobEvent> replay = WatchToEnd(cluster, id);
    std::vector<int> expected(400);
    std::iota(expected.begin(), expected.end(), 1);
    EXPECT_EQ(EpochsOf(replay), expected) << "every epoch once: the second attempt resumed";
  }
}

TEST(ReliabilityTest, AUserErrorFailsAtOnceWithoutRetry) {
  Cluster cluster;
  // A backbone file that passes the server's checks but is no TorchScript: every worker would
  // fail it the same way.
  std::ofstream(cluster.data_root() + "/backbones/broken.pt") << "not torchscript";
  fs::copy_file(cluster.data_root() + "/backbones/tiny.json",
                cluster.data_root() + "/backbones/broken.json");
  cluster.StartServer({"--max_attempts=3"});
  cluster.StartWorker("w1");
  JobSpec spec = TinySpec(5);
  spec.mutable_backbone()->set_path("backbones/broken.pt");
  const Job submitted = Submit(cluster, spec);
  const Job job = WaitForJob(cluster, submitted.id(), Ended);
  EXPECT_EQ(job.state(), Job::FAILED);
  EXPECT_NE(job.error().find("broken.pt"), std::string::npos) << job.error();
  EXPECT_EQ(job.attempt(), 1);
  EXPECT_EQ(job.failures(), 0);
}

TEST(ReliabilityTest, AJobNoWorkerCanRunWaitsAndSaysWhy) {
  Cluster cluster;
  cluster.StartServer();
  cluster.StartWorker("cpu-only");
  const Job gpu_job = Submit(cluster, NeverRunsHere("needs a gpu"));
  // A job behind it that the worker can run is not held up.
  const Job cpu_job = Submit(cluster, TinySpec(1));
  EXPECT_EQ(WaitForJob(cluster, cpu_job.id(), Ended).state(), Job::SUCCEEDED);
  auto [status, output] = RunToEnd(
      {TLCTL_PATH, "--server=" + cluster.address(), "get", gpu_job.id()}, cluster.path("get.out"));
  EXPECT_EQ(status, 0) << output;
  EXPECT_NE(output.find("QUEUED"), std::string::npos) << output;
  EXPECT_NE(output.find("no connected worker offers 1 CUDA device(s)"), std::string::npos)
      << output;
}

TEST(ReliabilityTest, SigtermDrainsAndARestartCarriesOn) {
  Cluster cluster;
  const std::vector<std::string> flags = {"--lease_seconds=3", "--heartbeat_seconds=0.2",
                                          "--drain_seconds=1"};
  cluster.StartServer(flags);
  cluster.StartWorker("w1");
  const Job running = Submit(cluster, TinySpec(100));
  const Job waiting = Submit(cluster, TinySpec(1));
  ASSERT_EQ(WaitForJob(cluster, running.id(), [](const Job& j) { return j.epoch() >= 1; })
                .state(),
            Job::RUNNING);
  const int port = cluster.grpc_port();
  EXPECT_EQ(cluster.StopServer(SIGTERM), 0);

  cluster.StartServer(flags, port);
  EXPECT_EQ(Get(cluster, waiting.id()).state(), Job::QUEUED);
  const Job first = WaitForJob(cluster, running.id(), Ended, 120s);
  EXPECT_EQ(first.state(), Job::SUCCEEDED) << first.error();
  EXPECT_EQ(first.attempt(), 1);
  EXPECT_EQ(EpochsOf(WatchToEnd(cluster, running.id())), OneTo(100));
  EXPECT_EQ(WaitForJob(cluster, waiting.id(), Ended).state(), Job::SUCCEEDED);
}

// `docker stop` and Kubernetes stop a worker with SIGTERM: each slot stops its job before the next
// batch and hands it back to the scheduler, which queues it again at once (not after a lease,
// here a minute), and the worker exits 0; another worker resumes the jobs from their
// checkpoints, no failure counted and every epoch stored once. (LibTorch starts threads before
// main() blocks the signals; one of them used to take SIGTERM and end the process without a
// word, and as a container's PID 1 the worker ignored it until docker killed it 10 s later.)
TEST(ReliabilityTest, AWorkerStoppedWithSigtermHandsItsJobsBackAndExits) {
  Cluster cluster;
  cluster.StartServer({"--heartbeat_seconds=0.2", "--lease_seconds=60"});
  // Two slots, a job on each: both slots hand theirs back at once.
  Process& worker = cluster.StartWorker("w1", {"--slots=2"});
  const std::vector<Job> jobs = {Submit(cluster, TinySpec(60)), Submit(cluster, TinySpec(60))};
  for (const Job& job : jobs) {
    ASSERT_EQ(WaitForJob(cluster, job.id(), [](const Job& j) { return j.epoch() >= 1; }).state(),
              Job::RUNNING);
  }
  const absl::Time signalled = absl::Now();
  worker.Signal(SIGTERM);
  ASSERT_TRUE(WaitFor([&] { return worker.Exited(); }, 20s)) << worker.Log();
  std::cout << "[ figures ] SIGTERM to the exit of a 2-slot worker, its jobs handed back: "
            << absl::ToDoubleSeconds(absl::Now() - signalled) << " s\n";
  EXPECT_EQ(worker.Wait(), 0) << worker.Log();
  EXPECT_THAT(worker.Log(), HasSubstr("signal 15 received; handing running jobs back"));
  for (const Job& job : jobs) {
    const Job handed_back = Get(cluster, job.id());
    EXPECT_EQ(handed_back.state(), Job::QUEUED) << handed_back.error() << "\n" << worker.Log();
    EXPECT_EQ(handed_back.failures(), 0);
    EXPECT_THAT(handed_back.error(), HasSubstr("shut down"));
  }

  cluster.StartWorker("w2");
  for (const Job& job : jobs) {
    const Job finished = WaitForJob(cluster, job.id(), Ended, 120s);
    EXPECT_EQ(finished.state(), Job::SUCCEEDED) << finished.error();
    EXPECT_EQ(finished.attempt(), 2);
    EXPECT_EQ(finished.failures(), 0);
    EXPECT_EQ(finished.worker_id(), "w2");
    EXPECT_EQ(EpochsOf(WatchToEnd(cluster, job.id())), OneTo(60));
  }
}

// A scheduler restart, planned (SIGTERM) or not (SIGKILL), with the new one up within the lease,
// costs a job that has run for longer than a lease nothing: the same worker keeps it on its
// first attempt, no failure is counted, and every epoch is stored once. (A worker used to count
// only Welcome and Assignment as contact, so past one lease any break made it stop the job.)
TEST(ReliabilityTest, SchedulerRestartsCostALongRunningJobNothing) {
  Cluster cluster;
  // Ten times the usual images, so that 1000 epochs outlast the restarts on a fast machine; the
  // job is cancelled once they are done.
  cluster.WriteImages("more", {{"red", {0, 0, 255}}, {"green", {0, 255, 0}}, {"blue", {255, 0, 0}}},
                      60);
  JobSpec spec = TinySpec(1000);
  spec.mutable_dataset()->set_train_dir("more");
  const absl::Duration lease = absl::Seconds(6);
  const std::vector<std::string> flags = {"--lease_seconds=6", "--heartbeat_seconds=0.2",
                                          "--drain_seconds=1"};
  cluster.StartServer(flags);
  Process& worker = cluster.StartWorker("w1");
  const Job job = Submit(cluster, spec);
  // Running, with an epoch stored more than a lease after the worker last heard a Welcome or an
  // Assignment (both come when it connects).
  auto ran_past_a_lease = [lease](absl::Time connected) {
    return [connected, lease](const Job& j) {
      return j.state() == Job::RUNNING &&
             absl::FromUnixSeconds(j.update_time().seconds()) > connected + lease + absl::Seconds(1);
    };
  };
  const absl::Time submitted = absl::Now();
  const Job first = WaitForJob(cluster, job.id(), ran_past_a_lease(submitted), 60s);
  ASSERT_TRUE(ran_past_a_lease(submitted)(first))
      << Job::State_Name(first.state()) << " " << first.error();

  for (const int signal_number : {SIGTERM, SIGKILL}) {
    const int port = cluster.grpc_port();
    cluster.StopServer(signal_number);
    cluster.StartServer(flags, port);
    const absl::Time restarted = absl::Now();
    const Job after = WaitForJob(cluster, job.id(), ran_past_a_lease(restarted), 60s);
    ASSERT_TRUE(ran_past_a_lease(restarted)(after))
        << "signal " << signal_number << ": " << Job::State_Name(after.state()) << " "
        << after.error() << "\n" << worker.Log();
    EXPECT_EQ(after.attempt(), 1);
    EXPECT_EQ(after.failures(), 0);
    EXPECT_EQ(after.worker_id(), "w1");
  }
  Job cancelled;
  ASSERT_TRUE(Cancel(cluster, job.id(), "enough", &cancelled).ok());
  const Job ended = WaitForJob(cluster, job.id(), Ended, 60s);
  EXPECT_EQ(ended.state(), Job::CANCELLED);
  EXPECT_EQ(ended.attempt(), 1);
  EXPECT_EQ(ended.failures(), 0);
  const std::vector<int> epochs = EpochsOf(WatchToEnd(cluster, job.id()));
  ASSERT_FALSE(epochs.empty());
  EXPECT_EQ(epochs, OneTo(epochs.back()));
  const std::string log = worker.Log();
  EXPECT_EQ(log.find("stopping job"), std::string::npos) << log;

  // How long the worker was without a stream each time, from its own log.
  std::regex reconnect(R"(after (\d+) ms without a stream)");
  int reconnects = 0;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), reconnect);
       it != std::sregex_iterator(); ++it, ++reconnects) {
    std::printf("reconnected after %s ms without a stream\n", (*it)[1].str().c_str());
  }
  EXPECT_GE(reconnects, 2);
}

// A scheduler that hangs with the stream still open (SIGSTOP: its sockets stay, nothing answers
// the heartbeats): after a lease of silence the worker ends the stream and stops its job, which
// the scheduler will by then have taken back. Once the scheduler runs again the job goes on.
TEST(ReliabilityTest, AWorkerWhoseSchedulerHangsStopsItsJobAfterALease) {
  Cluster cluster;
  cluster.StartServer({"--lease_seconds=2", "--heartbeat_seconds=0.2"});
  Process& worker = cluster.StartWorker("w1");
  const Job job = Submit(cluster, TinySpec(1000));
  ASSERT_EQ(WaitForJob(cluster, job.id(), [](const Job& j) { return j.epoch() >= 1; }).state(),
            Job::RUNNING);
  cluster.server().Signal(SIGSTOP);
  const bool stopped = WaitFor(
      [&] { return worker.Log().find("stopping job " + job.id()) != std::string::npos; }, 30s);
  cluster.server().Signal(SIGCONT);
  ASSERT_TRUE(stopped) << worker.Log();
  EXPECT_NE(worker.Log().find("no answer from the scheduler for longer than the lease"),
            std::string::npos);
  // The scheduler, running again, finds the worker silent past the lease and queues the job
  // again; the worker comes back and runs the next attempt.
  const Job again = WaitForJob(cluster, job.id(), [](const Job& j) {
    return j.attempt() == 2 && j.state() == Job::RUNNING;
  });
  EXPECT_EQ(again.attempt(), 2) << Job::State_Name(again.state()) << " " << again.error();
  Job cancelled;
  ASSERT_TRUE(Cancel(cluster, job.id(), "enough", &cancelled).ok());
  EXPECT_EQ(WaitForJob(cluster, job.id(), Ended).state(), Job::CANCELLED);
}

}  // namespace
}  // namespace tl
