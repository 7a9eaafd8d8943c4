// Data-parallel jobs with real processes on 127.0.0.1: tlserver and tlworker
// processes that train one job as a gang over a Gloo process group. A job of
// two replicas must reach what one replica reaches with the same global batch,
// survive one of its ranks being killed, stop on every rank when cancelled, and run two at
// once on the slots of two workers.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "tests/cluster.h"
#include "tests/process.h"
#include "tl/v1/service.grpc.pb.h"

namespace tl {
namespace {

namespace fs = std::filesystem;
using ::tl::testing::Cancel;
using ::tl::testing::Cluster;
using ::tl::testing::Ended;
using ::tl::testing::EpochsOf;
using ::tl::testing::Get;
using ::tl::testing::Process;
using ::tl::testing::Submit;
using ::tl::testing::TinySpec;
using ::tl::testing::WaitFor;
using ::tl::testing::WaitForJob;
using ::tl::testing::WatchToEnd;
using ::tl::v1::Job;
using ::tl::v1::JobEvent;
using ::tl::v1::JobSpec;
using namespace std::chrono_literals;

// Workers that take part in gangs: each serves its rendezvous store on a free port.
Process& StartReplicaWorker(Cluster& cluster, const std::string& worker_id) {
  return cluster.StartWorker(worker_id, {"--replica_address=127.0.0.1"});
}

JobSpec Replicated(JobSpec spec, int replicas) {
  spec.mutable_resources()->set_replicas(replicas);
  spec.mutable_training()->set_seed(7);
  return spec;
}

// Largest absolute difference between the parameters of two exported models.
double MaxParameterDifference(const std::string& first, const std::string& second) {
  torch::jit::Module a = torch::jit::load(first);
  torch::jit::Module b = torch::jit::load(second);
  std::map<std::string, torch::Tensor> by_name;
  for (const auto& parameter : a.named_parameters()) by_name[parameter.name] = parameter.value;
  double worst = 0;
  size_t compared = 0;
  for (const auto& parameter : b.named_parameters()) {
    auto it = by_name.find(parameter.name);
    if (it == by_name.end()) return INFINITY;
    worst = std::max(worst, (it->second - parameter.value).abs().max().item<double>());
    ++compared;
  }
  return compared == by_name.size() && compared > 0 ? worst : INFINITY;
}

Job RunToEnd(Cluster& cluster, const JobSpec& spec) {
  const Job submitted = Submit(cluster, spec);
  WatchToEnd(cluster, submitted.id());
  return Get(cluster, submitted.id());
}

// The frozen backbone (its BatchNorm in eval mode) makes the update of the head exactly the
// 1-replica update: per-rank losses are summed over the global batch, gradients all-reduced.
// Only the order of float sums differs, hence the tolerance. (Training through BatchNorm
// normalizes each rank's slice by its own statistics, so it differs more: the engine's
// distributed_test measures that case.)
TEST(DataParallelTest, TwoReplicasReachWhatOneReachesWithTheSameGlobalBatch) {
  Cluster cluster;
  cluster.StartServer();
  StartReplicaWorker(cluster, "w1");
  StartReplicaWorker(cluster, "w2");
  JobSpec spec = TinySpec(4);
  spec.mutable_training()->set_strategy(tl::v1::TrainingSpec::FEATURE_EXTRACTION);
  // Random flips keep one replica on the images too: without augmentation it
  // would train on cached features, in another batch order.
  spec.mutable_preprocessing()->set_horizontal_flip(true);
  // bf16 rounds sums of a different order differently: compare in float32.
  spec.mutable_training()->set_precision(tl::v1::FP32);

  const Job single = RunToEnd(cluster, Replicated(spec, 1));
  const Job pair = RunToEnd(cluster, Replicated(spec, 2));
  ASSERT_EQ(single.state(), Job::SUCCEEDED) << single.error();
  ASSERT_EQ(pair.state(), Job::SUCCEEDED) << pair.error();
  EXPECT_EQ(pair.replica_worker_ids_size(), 2);

  const tl::v1::EpochMetrics& one = single.result().final_metrics();
  const tl::v1::EpochMetrics& two = pair.result().final_metrics();
  EXPECT_EQ(pair.result().dataset().train_images(), single.result().dataset().train_images());
  // Metrics count every rank's images: accuracy over half of them would differ.
  EXPECT_DOUBLE_EQ(two.train_accuracy(), one.train_accuracy());
  EXPECT_NEAR(two.train_loss(), one.train_loss(), 1e-4);
  EXPECT_NEAR(two.val_loss(), one.val_loss(), 1e-4);
  EXPECT_DOUBLE_EQ(two.val_accuracy(), one.val_accuracy());
  const double difference =
      MaxParameterDifference(fs::path(cluster.artifact_root()) / single.result().model_path(),
                             fs::path(cluster.artifact_root()) / pair.result().model_path());
  EXPECT_LT(difference, 1e-4) << "largest parameter difference " << difference;
}

TEST(DataParallelTest, KillingARankRequeuesTheJobWhichFinishesOnANewGang) {
  Cluster cluster;
  cluster.StartServer();
  std::map<std::string, Process*> workers;
  for (const std::string id : {"w1", "w2", "w3"}) workers[id] = &StartReplicaWorker(cluster, id);
  constexpr int kEpochs = 60;
  const Job submitted = Submit(cluster, Replicated(TinySpec(kEpochs), 2));
  std::string killed;
  std::vector<JobEvent> events = WatchToEnd(cluster, submitted.id(), [&](const JobEvent& event) {
    if (!event.has_epoch() || event.epoch().epoch() != 3 || !killed.empty()) return;
    const Job running = Get(cluster, submitted.id());
    ASSERT_EQ(running.replica_worker_ids_size(), 2);
    killed = running.replica_worker_ids(1);  // a rank that is not rank 0
    workers.at(killed)->Signal(SIGKILL);
    workers.at(killed)->Wait();
  });
  ASSERT_FALSE(killed.empty());
  const Job job = Get(cluster, submitted.id());
  ASSERT_EQ(job.state(), Job::SUCCEEDED) << job.error();
  EXPECT_EQ(job.attempt(), 2);
  EXPECT_EQ(job.failures(), 1);
  ASSERT_EQ(job.replica_worker_ids_size(), 2);
  for (const std::string& worker : job.replica_worker_ids()) EXPECT_NE(worker, killed);
  // Every epoch once: the new gang resumed from rank 0's last checkpoint.
  std::vector<int> expected(kEpochs);
  std::iota(expected.begin(), expected.end(), 1);
  EXPECT_EQ(EpochsOf(WatchToEnd(cluster, submitted.id())), expected);
}

TEST(DataParallelTest, CancelStopsEveryRankAndFreesTheirWorkers) {
  Cluster cluster;
  cluster.StartServer();
  StartReplicaWorker(cluster, "w1");
  StartReplicaWorker(cluster, "w2");
  const Job submitted = Submit(cluster, Replicated(TinySpec(1000), 2));
  WatchToEnd(cluster, submitted.id(), [&](const JobEvent& event) {
    if (!event.has_epoch() || event.epoch().epoch() != 2) return;
    Job reply;
    const grpc::Status status = Cancel(cluster, submitted.id(), "", &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
  });
  EXPECT_EQ(Get(cluster, submitted.id()).state(), Job::CANCELLED);
  // Both ranks stopped: a new gang of two starts and finishes on the same two workers.
  const Job next = RunToEnd(cluster, Replicated(TinySpec(1), 2));
  EXPECT_EQ(next.state(), Job::SUCCEEDED) << next.error();
}

// Workers of two slots each: two gangs train at once, each rank of a gang on another process
// (a slot's rendezvous store on a port of its own), and a cancel frees all four slots.
TEST(DataParallelTest, TwoGangsTrainAtOnceOnTheSlotsOfTwoWorkers) {
  Cluster cluster;
  cluster.StartServer();
  const Job first = Submit(cluster, Replicated(TinySpec(1000), 2));
  const Job second = Submit(cluster, Replicated(TinySpec(1000), 2));
  Process& p1 = cluster.StartWorker("p1", {"--replica_address=127.0.0.1", "--slots=2"});
  Process& p2 = cluster.StartWorker("p2", {"--replica_address=127.0.0.1", "--slots=2"});
  const auto training = [&](const std::string& id) {
    const Job job = Get(cluster, id);
    return job.state() == Job::RUNNING && job.epoch() >= 1;
  };
  ASSERT_TRUE(WaitFor([&] { return training(first.id()) && training(second.id()); }, 90s))
      << p1.Log() << p2.Log();
  std::set<std::string> slots;
  for (const Job& job : {Get(cluster, first.id()), Get(cluster, second.id())}) {
    ASSERT_EQ(job.replica_worker_ids_size(), 2);
    std::set<std::string> processes;
    for (const std::string& id : job.replica_worker_ids()) {
      processes.insert(id.substr(0, id.find('/')));
      slots.insert(id);
    }
    EXPECT_EQ(processes, (std::set<std::string>{"p1", "p2"})) << job.id();
  }
  EXPECT_EQ(slots, (std::set<std::string>{"p1/slot1", "p1/slot2", "p2/slot1", "p2/slot2"}));

  for (const Job& job : {first, second}) {
    Job reply;
    ASSERT_TRUE(Cancel(cluster, job.id(), "enough", &reply).ok());
  }
  for (const Job& job : {first, second}) {
    const Job ended =
        WaitForJob(cluster, job.id(), [](const Job& j) { return Ended(j.state()); });
    EXPECT_EQ(ended.state(), Job::CANCELLED);
  }
  // Every rank stopped: two more gangs start and finish on the same four slots.
  const Job third = Submit(cluster, Replicated(TinySpec(2), 2));
  const Job fourth = Submit(cluster, Replicated(TinySpec(2), 2));
  for (const Job& job : {third, fourth}) {
    WatchToEnd(cluster, job.id());
    const Job ended = Get(cluster, job.id());
    EXPECT_EQ(ended.state(), Job::SUCCEEDED) << ended.error() << p1.Log() << p2.Log();
  }
}

}  // namespace
}  // namespace tl
