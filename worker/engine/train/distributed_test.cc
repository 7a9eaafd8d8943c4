// Data-parallel training: ranks run as separate processes (this binary,
// started again with --rank), meeting over 127.0.0.1, so that each has its
// own LibTorch state and a rank can die as a real one would.
#include "train/distributed.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/errors.h"
#include "common/free_port.h"
#include "common/testing/temp_dir.h"
#include "data/image_folder.h"
#include "job/image_job.h"
#include "testing/class_images.h"
#include "testing/tiny_backbone.h"
#include "data/shard_range.h"
#include "train/replica_sync.h"

namespace tl::engine {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

const std::vector<std::string> kClasses = {"red", "green", "blue"};

// What a rank process does besides training: its observer's behaviour.
struct RankPlan {
  std::string data_dir;
  std::string output_dir;
  std::string result_path;
  int world_size = 1;
  int rank = 0;
  int port = 0;
  int epochs = 3;
  std::string strategy = "fine_tune";  // or "full": BatchNorm trains too
  int timeout_ms = 20000;
  int die_after_batches = 0;     // > 0: the process exits abruptly after this many batches
  int cancel_after_batches = 0;  // > 0: StopRequested turns true after this many batches
};

ImageJobConfig ConfigFor(const RankPlan& plan) {
  ImageJobConfig config;
  config.backbone_path = plan.data_dir + "/backbones/tiny.pt";
  config.train_dir = plan.data_dir + "/train";
  config.val_dir = plan.data_dir + "/val";
  config.batch_size = 4;  // 18 images: batches of 4, 4, 4, 3, 3, split 2+2 and 2+1
  config.threads = 1;
  config.loader_threads = 1;
  config.seed = 11;
  config.train.epochs = plan.epochs;
  config.train.learning_rate = 0.02;
  config.train.backbone_lr_scale = 1.0;
  config.train.optimizer = OptimizerKind::kSgd;
  if (plan.strategy == "full") {
    config.train.strategy = Strategy::kFull;
  } else {
    config.train.strategy = Strategy::kFineTune;
    config.train.unfreeze_groups = 1;  // the block alone; the BatchNorm stem stays frozen
  }
  config.output_dir = plan.output_dir;
  config.distributed.world_size = plan.world_size;
  config.distributed.rank = plan.rank;
  config.distributed.store_host = "127.0.0.1";
  config.distributed.store_port = plan.port;
  config.distributed.key_prefix = "test/" + std::to_string(plan.port);
  config.distributed.timeout = std::chrono::milliseconds(plan.timeout_ms);
  config.distributed.rendezvous_timeout = std::chrono::seconds(120);
  return config;
}

class PlannedObserver : public ImageJobObserver {
 public:
  explicit PlannedObserver(const RankPlan& plan) : plan_(plan) {}
  void OnBatch(const BatchProgress&) override {
    ++batches_;
    if (plan_.die_after_batches > 0 && batches_ >= plan_.die_after_batches) ::_exit(9);
  }
  bool StopRequested() override {
    return plan_.cancel_after_batches > 0 && batches_ >= plan_.cancel_after_batches;
  }
  int batches() const { return batches_; }

 private:
  const RankPlan& plan_;
  int batches_ = 0;
};

// The body of a rank process: runs the job, writes what happened as JSON.
int RankMain(const RankPlan& plan) {
  PlannedObserver observer(plan);
  nlohmann::json out;
  const Clock::time_point start = Clock::now();
  try {
    const ImageJobResult result = RunImageJob(ConfigFor(plan), observer);
    out["kind"] = result.outcome.finished() ? "ok" : "stopped";
    out["message"] = result.outcome.reason;
    out["epochs"] = nlohmann::json::parse(EpochStatsToJson(result.epochs))["epochs"];
    out["model_path"] = result.model_path;
  } catch (const EngineError& error) {
    out["kind"] = static_cast<int>(error.kind());
    out["message"] = error.what();
  } catch (const std::exception& error) {
    out["kind"] = "exception";
    out["message"] = error.what();
  }
  out["seconds"] = std::chrono::duration<double>(Clock::now() - start).count();
  out["batches"] = observer.batches();
  std::ofstream(plan.result_path) << out.dump(2);
  return 0;
}

pid_t StartRank(const RankPlan& plan) {
  std::vector<std::string> args = {"/proc/self/exe",
                                   "--rank",
                                   plan.data_dir,
                                   plan.output_dir,
                                   plan.result_path,
                                   std::to_string(plan.world_size),
                                   std::to_string(plan.rank),
                                   std::to_string(plan.port),
                                   std::to_string(plan.epochs),
                                   plan.strategy,
                                   std::to_string(plan.timeout_ms),
                                   std::to_string(plan.die_after_batches),
                                   std::to_string(plan.cancel_after_batches)};
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  return pid;
}

// Waits for every process, killing them all at the deadline.
void WaitAll(const std::vector<pid_t>& pids, std::chrono::seconds limit) {
  const Clock::time_point deadline = Clock::now() + limit;
  std::set<pid_t> running(pids.begin(), pids.end());
  while (!running.empty()) {
    for (auto it = running.begin(); it != running.end();) {
      int status = 0;
      it = ::waitpid(*it, &status, WNOHANG) == *it ? running.erase(it) : std::next(it);
    }
    if (running.empty()) break;
    if (Clock::now() > deadline) {
      for (pid_t pid : running) ::kill(pid, SIGKILL);
      for (pid_t pid : running) ::waitpid(pid, nullptr, 0);
      FAIL() << "rank processes still ran after " << limit.count() << " s";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

nlohmann::json ReadResult(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {{"kind", "no result"}};
  return nlohmann::json::parse(in);
}

class DistributedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::WriteClassFolder(dir_.Sub("train"), kClasses, 6);
    testing::WriteClassFolder(dir_.Sub("val"), kClasses, 2);
    fs::create_directories(dir_.Sub("backbones"));
    testing::WriteTinyBackbone(dir_.Sub("backbones"));
  }

  // Runs `world_size` ranks with `base` as the plan (rank, output, result
  // filled in); returns each rank's result.
  std::vector<nlohmann::json> Run(RankPlan base, const std::string& name,
                                  const std::vector<RankPlan>& overrides = {}) {
    base.data_dir = dir_.path();
    base.port = tl::FreePort();
    if (base.port == 0) throw std::runtime_error("cannot find a free port");
    std::vector<pid_t> pids;
    std::vector<std::string> results;
    for (int rank = 0; rank < base.world_size; ++rank) {
      RankPlan plan = rank < static_cast<int>(overrides.size()) ? overrides[rank] : base;
      plan.data_dir = base.data_dir;
      plan.port = base.port;
      plan.world_size = base.world_size;
      plan.rank = rank;
      plan.output_dir = dir_.Sub(name + "-out" + std::to_string(rank));
      plan.result_path = dir_.Sub(name + "-result" + std::to_string(rank) + ".json");
      results.push_back(plan.result_path);
      pids.push_back(StartRank(plan));
    }
    // Generous: on a loaded machine LibTorch alone takes a minute to load.
    WaitAll(pids, std::chrono::seconds(600));
    std::vector<nlohmann::json> out;
    for (const std::string& path : results) out.push_back(ReadResult(path));
    return out;
  }

  tl::testing::TempDir dir_;
};

double MaxParameterDifference(const std::string& a_path, const std::string& b_path) {
  torch::jit::Module a = torch::jit::load(a_path);
  torch::jit::Module b = torch::jit::load(b_path);
  std::vector<torch::Tensor> b_parameters;
  for (const torch::Tensor& parameter : b.parameters()) b_parameters.push_back(parameter);
  double most = 0;
  size_t i = 0;
  for (const torch::Tensor& parameter : a.parameters()) {
    most = std::max(most, (parameter - b_parameters.at(i++)).abs().max().item<double>());
  }
  EXPECT_EQ(i, b_parameters.size());
  return most;
}

TEST_F(DistributedTest, ShardedSourcesDeliverEveryTrainingImageOncePerEpoch) {
  ImageFolderIndex index = ScanImageFolder(dir_.Sub("train"));
  Preprocessing preprocessing{10, 8, {0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f}};
  ImageFolderSourceOptions options;
  options.batch_size = 4;  // 18 images: 4, 4, 4, 3, 3, split 2+2 and 2+1
  options.shuffle = true;
  options.random_hflip = true;
  options.drop_singleton_batch = true;
  options.threads = 1;
  ImageFolderSource whole(index.samples, preprocessing, options);
  std::vector<std::unique_ptr<ImageFolderSource>> shards;
  for (int rank = 0; rank < 2; ++rank) {
    ImageFolderSourceOptions sharded = options;
    sharded.shard_count = 2;
    sharded.shard_index = rank;
    sharded.keep_every_batch = true;
    shards.push_back(std::make_unique<ImageFolderSource>(index.samples, preprocessing, sharded));
  }
  for (int epoch = 1; epoch <= 3; ++epoch) {
    whole.StartEpoch(epoch);
    for (auto& shard : shards) shard->StartEpoch(epoch);
    int64_t images = 0;
    while (std::optional<Batch> batch = whole.Next()) {
      std::optional<Batch> first = shards[0]->Next();
      std::optional<Batch> second = shards[1]->Next();
      ASSERT_TRUE(first && second) << "a shard ended before the epoch, epoch " << epoch;
      EXPECT_TRUE(torch::equal(torch::cat({first->images, second->images}), batch->images));
      EXPECT_TRUE(torch::equal(torch::cat({first->labels, second->labels}), batch->labels));
      images += batch->labels.size(0);
    }
    EXPECT_FALSE(shards[0]->Next());
    EXPECT_FALSE(shards[1]->Next());
    EXPECT_EQ(images, 18);
  }
}

TEST_F(DistributedTest, TwoRanksTakeTheOneReplicaStepsOnTheGlobalBatch) {
  RankPlan plan;
  const nlohmann::json single = Run(plan, "single").at(0);
  ASSERT_EQ(single["kind"], "ok") << single.dump();
  plan.world_size = 2;
  const std::vector<nlohmann::json> ranks = Run(plan, "pair");
  ASSERT_EQ(ranks[0]["kind"], "ok") << ranks[0].dump();
  ASSERT_EQ(ranks[1]["kind"], "ok") << ranks[1].dump();
  // Only rank 0 writes the model; the other rank's output_dir stays empty.
  EXPECT_FALSE(fs::exists(dir_.Sub("pair-out1")));
  const double difference =
      MaxParameterDifference(single["model_path"], ranks[0]["model_path"]);
  std::cout << "max |parameter difference| after 3 epochs, 1 vs 2 ranks: " << difference << "\n";
  EXPECT_LT(difference, 1e-5);
  ASSERT_EQ(single["epochs"].size(), 3u);
  for (size_t e = 0; e < 3; ++e) {
    const nlohmann::json& one = single["epochs"][e];
    for (const nlohmann::json& rank : ranks) {
      const nlohmann::json& two = rank["epochs"][e];
      EXPECT_EQ(two["train_images"], 18);
      EXPECT_EQ(two["train_images"], one["train_images"]);
      EXPECT_EQ(two["val_images"], one["val_images"]);
      EXPECT_NEAR(two["train_loss"].get<double>(), one["train_loss"].get<double>(), 1e-5);
      EXPECT_DOUBLE_EQ(two["train_accuracy"].get<double>(), one["train_accuracy"].get<double>());
      EXPECT_NEAR(two["val_loss"].get<double>(), one["val_loss"].get<double>(), 1e-5);
      EXPECT_DOUBLE_EQ(two["val_accuracy"].get<double>(), one["val_accuracy"].get<double>());
    }
    // Every rank reports the very same figures, timings included.
    EXPECT_EQ(ranks[0]["epochs"][e], ranks[1]["epochs"][e]);
  }
}

TEST_F(DistributedTest, BatchNormTrainingOnSlicesStaysCloseToOneReplica) {
  RankPlan plan;
  plan.strategy = "full";
  const nlohmann::json single = Run(plan, "single").at(0);
  ASSERT_EQ(single["kind"], "ok") << single.dump();
  plan.world_size = 2;
  const std::vector<nlohmann::json> ranks = Run(plan, "pair");
  ASSERT_EQ(ranks[0]["kind"], "ok") << ranks[0].dump();
  ASSERT_EQ(ranks[1]["kind"], "ok") << ranks[1].dump();
  // Batch statistics come from each rank's slice, as without SyncBatchNorm:
  // the runs differ, but not by much.
  const double difference =
      MaxParameterDifference(single["model_path"], ranks[0]["model_path"]);
  std::cout << "max |parameter difference| after 3 epochs with BatchNorm training, 1 vs 2 "
               "ranks: "
            << difference << "\n";
  EXPECT_TRUE(std::isfinite(difference));
  EXPECT_LT(difference, 0.5);
}

TEST_F(DistributedTest, ARankThatDiesMakesTheOtherFailWithinTheTimeout) {
  RankPlan plan;
  plan.world_size = 2;
  plan.epochs = 50;
  plan.timeout_ms = 3000;
  RankPlan dying = plan;
  dying.die_after_batches = 2;
  const std::vector<nlohmann::json> ranks = Run(plan, "dies", {plan, dying});
  EXPECT_EQ(ranks[1]["kind"], "no result");
  ASSERT_EQ(ranks[0]["kind"], static_cast<int>(ErrorKind::kUnavailable)) << ranks[0].dump();
  EXPECT_LT(ranks[0]["seconds"].get<double>(), 30.0);
  std::cout << "survivor: " << ranks[0]["message"].get<std::string>() << "\n";
}

TEST_F(DistributedTest, ACancelOnOneRankStopsBoth) {
  RankPlan plan;
  plan.world_size = 2;
  plan.epochs = 200;
  RankPlan cancelling = plan;
  cancelling.cancel_after_batches = 6;
  const std::vector<nlohmann::json> ranks = Run(plan, "cancel", {plan, cancelling});
  for (const nlohmann::json& rank : ranks) {
    ASSERT_EQ(rank["kind"], "stopped") << rank.dump();
    EXPECT_EQ(rank["message"], "stopped on request in epoch 2") << rank.dump();
  }
  // Both stopped at the same step: right after the cancelling rank's sixth.
  EXPECT_EQ(ranks[0]["batches"], 6);
  EXPECT_EQ(ranks[1]["batches"], 6);
}

TEST(DistributedOptionsTest, RejectsWhatCannotWork) {
  DistributedOptions options;
  options.world_size = 2;
  options.rank = 2;
  options.store_host = "127.0.0.1";
  options.store_port = 1234;
  try {
    CheckDistributedOptions(options);
    FAIL() << "rank 2 of 2 was accepted";
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("distributed.rank"), std::string::npos);
  }
}

}  // namespace
}  // namespace tl::engine

int main(int argc, char** argv) {
  // A rank process never runs the tests itself: with a wrong argument count it would start
  // ranks of its own, and they theirs.
  if (argc >= 2 && std::string(argv[1]) == "--rank") {
    if (argc != 13) {
      std::cerr << "distributed_test --rank: expected 11 arguments, got " << argc - 2 << "\n";
      return 2;
    }
    tl::engine::RankPlan plan;
    plan.data_dir = argv[2];
    plan.output_dir = argv[3];
    plan.result_path = argv[4];
    plan.world_size = std::atoi(argv[5]);
    plan.rank = std::atoi(argv[6]);
    plan.port = std::atoi(argv[7]);
    plan.epochs = std::atoi(argv[8]);
    plan.strategy = argv[9];
    plan.timeout_ms = std::atoi(argv[10]);
    plan.die_after_batches = std::atoi(argv[11]);
    plan.cancel_after_batches = std::atoi(argv[12]);
    return tl::engine::RankMain(plan);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
