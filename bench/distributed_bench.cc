// Data-parallel step time: the same global batch trained by 1 and by 2 ranks
// (processes over loopback, Gloo; NCCL on CUDA where LibTorch has it), and
// the share of each step spent summing gradients. Prints JSON.
//
//   distributed_bench --backbone B.pt [--batch 16] [--size 64] [--steps 8]
//                     [--device cpu] [--worlds 1,2] [--threads 1]
//   distributed_bench --allreduce --backbone B.pt [--device cuda] [--world 1]
//     one training step's real gradients, all-reduced --steps times: the
//     all-reduce bandwidth (bytes of gradients per second).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "base/errors.h"
#include "data/tensor_source.h"
#include "model/manifest.h"
#include "model/transfer_model.h"
#include "train/distributed.h"
#include "train/trainer.h"

namespace tl::engine {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct Flags {
  std::string backbone;
  int64_t batch = 16;  // global: split between the ranks
  int64_t size = 64;
  int64_t steps = 8;
  int64_t classes = 10;
  std::string device = "cpu";
  std::string worlds = "1,2";
  int threads = 1;
  bool allreduce = false;
  // One run's ranks, and what RunWorld tells each rank it starts.
  int world = 1;
  int rank = 0;
  int port = 0;
  std::string result;  // set: this process is a rank, writing rank 0's JSON here
};

void AddFlags(CLI::App& app, Flags& flags) {
  // RunWorld gives each rank this process's arguments followed by its own --world, --rank,
  // --port and --result: the last value of a flag counts.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  // At least 1 (CLI::PositiveNumber would describe a range of doubles).
  const CLI::Range positive(1, std::numeric_limits<int>::max());
  app.add_option("--backbone", flags.backbone, "TorchScript backbone, its manifest beside it")
      ->required();
  app.add_option("--batch", flags.batch, "global batch (default 16)")->check(positive);
  app.add_option("--size", flags.size, "image side (default 64)")->check(positive);
  app.add_option("--steps", flags.steps, "timed steps (default 8)")->check(positive);
  app.add_option("--classes", flags.classes, "classes of the head (default 10)")
      ->check(positive);
  app.add_option("--device", flags.device, "cpu or cuda (default cpu)");
  app.add_option("--worlds", flags.worlds, "rank counts to time, in turn (default 1,2)");
  app.add_option("--threads", flags.threads, "intra-op threads per rank (default 1)")
      ->check(positive);
  app.add_flag("--allreduce", flags.allreduce,
               "all-reduce one step's gradients --steps times instead of training");
  app.add_option("--world", flags.world, "ranks of the --allreduce run (default 1)")
      ->check(positive);
  // Set by RunWorld for the ranks it starts.
  app.add_option("--rank", flags.rank)->group("");
  app.add_option("--port", flags.port)->group("");
  app.add_option("--result", flags.result)->group("");
}

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

// Counts the time the trainer spends in collectives.
class TimedReplicas : public ReplicaSync {
 public:
  explicit TimedReplicas(ProcessGroupReplicas& inner) : inner_(inner) {}
  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }
  StepStart StartStep(double weight, int64_t images, bool stop) override {
    const Clock::time_point start = Clock::now();
    StepStart result = inner_.StartStep(weight, images, stop);
    seconds += SecondsSince(start);
    return result;
  }
  std::vector<double> SumGradients(const std::vector<torch::Tensor>& parameters,
                                   const std::vector<double>& extras) override {
    const Clock::time_point start = Clock::now();
    std::vector<double> result = inner_.SumGradients(parameters, extras);
    seconds += SecondsSince(start);
    return result;
  }
  void BroadcastTensors(const std::vector<torch::Tensor>& tensors) override {
    inner_.BroadcastTensors(tensors);
  }
  void SumEvaluation(EvaluationStats& stats) override { inner_.SumEvaluation(stats); }
  void AgreeOnEpoch(EpochStats& stats) override { inner_.AgreeOnEpoch(stats); }
  double seconds = 0;

 private:
  ProcessGroupReplicas& inner_;
};

class EpochTimes : public TrainObserver {
 public:
  void OnEpoch(const EpochStats& stats) override { seconds.push_back(stats.seconds); }
  std::vector<double> seconds;
};

DistributedOptions RankOptions(const Flags& flags) {
  DistributedOptions options;
  options.world_size = flags.world;
  options.rank = flags.rank;
  options.store_host = "127.0.0.1";
  options.store_port = flags.port;
  options.key_prefix = "bench";
  return options;
}

// One rank: an epoch to warm up, then an epoch of `steps` steps timed.
nlohmann::json RunRank(const Flags& flags) {
  at::set_num_threads(flags.threads);
  const DistributedOptions options = RankOptions(flags);
  const int64_t global_batch = flags.batch;
  const int64_t local_batch = global_batch / options.world_size;
  const int64_t steps = flags.steps;
  const int64_t size = flags.size;
  const int64_t classes = flags.classes;
  const std::string& backbone = flags.backbone;
  const BackboneManifest manifest = ReadManifest(ManifestPathFor(backbone));
  torch::manual_seed(options.rank + 1);
  TensorSource source(torch::randn({local_batch * steps, 3, size, size}),
                      torch::randint(classes, {local_batch * steps}), local_batch,
                      /*shuffle=*/false, 1);
  TransferModel model(backbone, manifest, classes, 1);
  TrainOptions train;
  train.strategy = Strategy::kFull;
  train.optimizer = OptimizerKind::kSgd;
  train.learning_rate = 0.001;
  train.epochs = 2;
  train.device = flags.device;
  Trainer trainer(model, train);
  std::unique_ptr<ProcessGroupReplicas> replicas;
  std::unique_ptr<TimedReplicas> timed;
  if (options.world_size > 1) {
    replicas = std::make_unique<ProcessGroupReplicas>(options, trainer.device());
    timed = std::make_unique<TimedReplicas>(*replicas);
    trainer.SetReplicas(timed.get());
  }
  EpochTimes times;
  trainer.Run(source, nullptr, times, 1);
  // The second epoch alone is timed, its collectives too.
  if (timed) timed->seconds = 0;
  times.seconds.clear();
  trainer.Run(source, nullptr, times, 2);
  const double step = times.seconds.back() / static_cast<double>(steps);
  nlohmann::json out = {{"world_size", options.world_size},
                        {"global_batch", global_batch},
                        {"image_size", size},
                        {"step_seconds", step},
                        {"images_per_second", static_cast<double>(global_batch) / step},
                        {"backend", replicas ? replicas->backend() : "none"}};
  if (timed) {
    out["collective_seconds_per_step"] = timed->seconds / static_cast<double>(steps);
    out["collective_share"] = timed->seconds / times.seconds.back();
  }
  return out;
}

// One ResNet-style training step's gradients, summed `steps` times.
nlohmann::json RunAllReduce(const Flags& flags) {
  const DistributedOptions options = RankOptions(flags);
  const std::string& backbone = flags.backbone;
  const BackboneManifest manifest = ReadManifest(ManifestPathFor(backbone));
  TransferModel model(backbone, manifest, flags.classes, 1);
  TrainOptions train;
  train.strategy = Strategy::kFull;
  train.device = options.world_size > 1 && flags.device == "cuda"
                     ? "cuda:" + std::to_string(options.rank)
                     : flags.device;
  Trainer trainer(model, train);
  const int64_t batch = flags.batch;
  const int64_t size = flags.size;
  Batch data{torch::randn({batch, 3, size, size}), torch::randint(flags.classes, {batch})};
  trainer.Step(data, nullptr);  // leaves the step's gradients in place
  std::vector<torch::Tensor> parameters;
  int64_t bytes = 0;
  for (const torch::Tensor& p : model.classifier().parameters()) {
    if (!p.requires_grad()) continue;
    parameters.push_back(p);
    bytes += p.numel() * static_cast<int64_t>(p.element_size());
  }
  // A group of one rank still runs every collective through the library.
  ProcessGroupReplicas replicas(options, trainer.device());
  const int64_t steps = flags.steps;
  replicas.SumGradients(parameters, {0.0});  // connects and warms up
  if (trainer.device().is_cuda()) torch::cuda::synchronize();
  const Clock::time_point start = Clock::now();
  for (int64_t i = 0; i < steps; ++i) replicas.SumGradients(parameters, {0.0});
  if (trainer.device().is_cuda()) torch::cuda::synchronize();
  const double seconds = SecondsSince(start) / static_cast<double>(steps);
  return {{"world_size", options.world_size},
          {"backend", replicas.backend()},
          {"device", trainer.device().str()},
          {"gradient_bytes", bytes},
          {"allreduce_seconds", seconds},
          {"allreduce_gbytes_per_second", static_cast<double>(bytes) / seconds / 1e9}};
}

// Runs this binary once per rank and gathers rank 0's JSON.
nlohmann::json RunWorld(int argc, char** argv, int world) {
  const int port = FreePort();
  std::vector<pid_t> pids;
  char result_template[] = "/tmp/tl-distributed-bench-XXXXXX";
  const int fd = ::mkstemp(result_template);
  ::close(fd);
  for (int rank = 0; rank < world; ++rank) {
    std::vector<std::string> args(argv, argv + argc);
    args[0] = "/proc/self/exe";
    for (const auto& [flag, value] :
         std::vector<std::pair<std::string, std::string>>{{"--world", std::to_string(world)},
                                                          {"--rank", std::to_string(rank)},
                                                          {"--port", std::to_string(port)},
                                                          {"--result", result_template}}) {
      args.push_back(flag);
      args.push_back(value);
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
      std::vector<char*> raw;
      for (std::string& arg : args) raw.push_back(arg.data());
      raw.push_back(nullptr);
      ::execv("/proc/self/exe", raw.data());
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  bool failed = false;
  for (pid_t pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    failed = failed || !WIFEXITED(status) || WEXITSTATUS(status) != 0;
  }
  std::ifstream in(result_template);
  std::stringstream text;
  text << in.rdbuf();
  ::unlink(result_template);
  if (failed || text.str().empty()) throw std::runtime_error("a rank failed");
  return nlohmann::json::parse(text.str());
}

int Main(int argc, char** argv, const Flags& flags) {
  if (!flags.result.empty()) {
    // A rank started by RunWorld.
    const nlohmann::json out = flags.allreduce ? RunAllReduce(flags) : RunRank(flags);
    if (flags.rank == 0) std::ofstream(flags.result) << out.dump();
    return 0;
  }
  nlohmann::json runs = nlohmann::json::array();
  if (flags.allreduce) {
    runs.push_back(RunWorld(argc, argv, flags.world));
  } else {
    std::stringstream worlds(flags.worlds);
    for (std::string world; std::getline(worlds, world, ',');) {
      runs.push_back(RunWorld(argc, argv, std::stoi(world)));
    }
  }
  std::cout << nlohmann::json({{"distributed_bench", runs}}).dump(2) << std::endl;
  return 0;
}

}  // namespace
}  // namespace tl::engine

int main(int argc, char** argv) {
  CLI::App app{"distributed_bench: data-parallel step time and the collectives' share; JSON",
               "distributed_bench"};
  tl::engine::Flags flags;
  tl::engine::AddFlags(app, flags);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 1;
  }
  try {
    return tl::engine::Main(argc, argv, flags);
  } catch (const std::exception& error) {
    std::cerr << "distributed_bench: " << error.what() << "\n";
    return 1;
  }
}
