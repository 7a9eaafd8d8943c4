// engine_bench: times the engine's training loop (Trainer::Run, the loop
// tlworker runs) on synthetic in-memory images, and checks that a CUDA
// training step computes what the CPU step computes. Needs LibTorch only,
// so that it builds on a GPU machine that has nothing but PyTorch.
//
//   engine_bench --backbone resnet50.pt --device cuda --precision bf16 \
//       --batch 128 --warmup 10 --steps 30 [--channels_last]
//   engine_bench --backbone resnet50.pt --check
// Prints one JSON object per run on stdout.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

#include "base/errors.h"
#include "base/hardware_threads.h"
#include "data/tensor_source.h"
#include "model/manifest.h"
#include "model/transfer_model.h"
#include "train/trainer.h"

namespace {

using namespace tl::engine;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string backbone;
  std::string device = "cpu";
  std::string precision = "fp32";
  std::string strategy = "full";
  std::string optimizer = "sgd";
  bool channels_last = false;
  bool check = false;
  int batch = 32;
  int warmup = 5;
  int steps = 20;
  int classes = 10;
  int threads = 0;
  int unfreeze = 1;
  int image_size = 0;
};

void AddFlags(CLI::App& app, Args& args) {
  app.add_option("--backbone", args.backbone, "TorchScript backbone, its manifest beside it")
      ->required();
  app.add_option("--device", args.device, "cpu, cuda or cuda:N (default cpu)");
  app.add_option("--precision", args.precision, "fp32 or bf16 (autocast)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_flag("--channels_last", args.channels_last, "images and weights in channels-last");
  app.add_option("--strategy", args.strategy, "full, fine_tune or feature_extraction")
      ->check(CLI::IsMember({"full", "fine_tune", "feature_extraction"}));
  app.add_option("--unfreeze", args.unfreeze, "layer groups fine_tune trains (default 1)");
  app.add_option("--optimizer", args.optimizer, "sgd or adam")
      ->check(CLI::IsMember({"sgd", "adam"}));
  app.add_option("--batch", args.batch, "images per step (default 32)");
  app.add_option("--warmup", args.warmup, "untimed steps first (default 5)");
  app.add_option("--steps", args.steps, "timed steps (default 20)");
  app.add_option("--classes", args.classes, "classes of the head (default 10)");
  app.add_option("--threads", args.threads, "intra-op threads (default: every core, as a job)");
  app.add_option("--image_size", args.image_size, "image side (default: the manifest's)");
  app.add_flag("--check", args.check, "check a CUDA step against the CPU step instead of timing");
}

TrainOptions OptionsFrom(const Args& args, const std::string& device) {
  TrainOptions options;
  options.strategy = args.strategy == "feature_extraction" ? Strategy::kFeatureExtraction
                     : args.strategy == "fine_tune"        ? Strategy::kFineTune
                                                           : Strategy::kFull;
  options.unfreeze_groups = args.unfreeze;
  options.epochs = 1;
  options.optimizer = args.optimizer == "adam" ? OptimizerKind::kAdam : OptimizerKind::kSgd;
  options.learning_rate = args.optimizer == "adam" ? 1e-3 : 0.01;
  options.backbone_lr_scale = 0.1;
  options.momentum = 0.9;
  options.device = device;
  options.precision = args.precision == "bf16" ? Precision::kBFloat16 : Precision::kFloat32;
  options.channels_last = args.channels_last;
  return options;
}

// Records when the warm-up ends and when the last batch is done. OnBatch
// runs after the step's loss has been read back, so both instants follow a
// device synchronization.
class StepClock : public TrainObserver {
 public:
  explicit StepClock(int warmup) : warmup_(warmup) {}
  void OnBatch(const BatchProgress& progress) override {
    if (progress.batch == warmup_) measured_start = Clock::now();
    last = Clock::now();
    loss = progress.mean_loss;
  }
  Clock::time_point measured_start;
  Clock::time_point last;
  double loss = 0;

 private:
  int warmup_;
};

int Time(const Args& args, const BackboneManifest& manifest) {
  const int side = args.image_size > 0 ? args.image_size : manifest.input_size;
  const int64_t images = static_cast<int64_t>(args.batch) * (args.warmup + args.steps);
  torch::manual_seed(1);
  torch::Tensor data = torch::randn({images, 3, side, side});
  torch::Tensor labels = torch::randint(0, args.classes, {images}, torch::kInt64);
  const bool cuda = args.device.rfind("cuda", 0) == 0;
  if (cuda) {
    // Pre-decoded images in pinned memory, as a data loader with
    // pin_memory hands them over.
    data = data.pin_memory();
    labels = labels.pin_memory();
  }
  TensorSource source(data, labels, args.batch, /*shuffle=*/false, 1);
  TransferModel model(args.backbone, manifest, args.classes, 1);
  Trainer trainer(model, OptionsFrom(args, args.device));
  StepClock clock(args.warmup);
  const Clock::time_point start = Clock::now();
  trainer.Run(source, nullptr, clock);
  const double seconds = std::chrono::duration<double>(clock.last - clock.measured_start).count();
  const double images_per_second = args.steps * args.batch / seconds;
  std::cout << "{\"tool\": \"tl\", \"device\": \"" << args.device << "\", \"precision\": \""
            << args.precision << "\", \"channels_last\": " << (args.channels_last ? "true" : "false")
            << ", \"strategy\": \"" << args.strategy << "\", \"threads\": " << args.threads
            << ", \"batch\": " << args.batch
            << ", \"image_size\": " << side << ", \"steps\": " << args.steps
            << ", \"images_per_second\": " << images_per_second
            << ", \"step_ms\": " << 1000.0 * seconds / args.steps
            << ", \"wall_seconds\": " << std::chrono::duration<double>(Clock::now() - start).count()
            << ", \"final_loss\": " << clock.loss << "}" << std::endl;
  return 0;
}

// One training step on the CPU and one on CUDA from the same weights and
// batch: the losses and the weight updates must agree. The step runs in
// float64 (TF32 off): at initialisation a ResNet's weight gradients are sums
// of many terms that nearly cancel, so fp32 rounding in a different
// summation order moves them by a few percent (measured: 2e-2 over the
// whole update on an H200), which would hide a real error; in float64 the
// rounding is ~1e-12 and any wrong gradient or update stands out.
int Check(const Args& args, const BackboneManifest& manifest) {
  if (!torch::cuda::is_available()) {
    std::cerr << "engine_bench --check: CUDA is not available\n";
    return 1;
  }
  at::globalContext().setAllowTF32CuDNN(false);
  at::globalContext().setAllowTF32CuBLAS(false);
  const int side = manifest.input_size;
  torch::manual_seed(3);
  Batch batch{torch::randn({8, 3, side, side}, torch::kFloat64),
              torch::randint(0, args.classes, {8}, torch::kInt64)};
  Args fp32 = args;
  fp32.precision = "fp32";
  fp32.channels_last = false;

  std::map<std::string, torch::Tensor> updates[2];
  double losses[2];
  const std::string devices[2] = {"cpu", args.device == "cpu" ? "cuda" : args.device};
  for (int i = 0; i < 2; ++i) {
    TransferModel model(args.backbone, manifest, args.classes, /*seed=*/5);
    model.classifier().to(torch::kFloat64);
    std::map<std::string, torch::Tensor> before;
    for (const auto& named : model.classifier().named_parameters(/*recurse=*/true)) {
      before[named.name] = named.value.detach().to(torch::kFloat64).clone();
    }
    Trainer trainer(model, OptionsFrom(fp32, devices[i]));
    model.SetTraining(true);
    losses[i] = trainer.Step(batch, nullptr).item<double>();
    for (const auto& named : model.classifier().named_parameters(/*recurse=*/true)) {
      updates[i][named.name] =
          named.value.detach().to(torch::kCPU, torch::kFloat64) - before.at(named.name);
    }
  }
  double error_squared = 0;
  double update_squared = 0;
  double worst = 0;
  std::string worst_name;
  for (const auto& [name, cpu_update] : updates[0]) {
    const torch::Tensor difference = updates[1].at(name) - cpu_update;
    const double error = difference.pow(2).sum().item<double>();
    const double norm = cpu_update.pow(2).sum().item<double>();
    error_squared += error;
    update_squared += norm;
    const double relative = std::sqrt(error / std::max(norm, 1e-300));
    if (relative > worst) {
      worst = relative;
      worst_name = name;
    }
  }
  const double model_difference = std::sqrt(error_squared / update_squared);
  const double head_difference =
      std::sqrt((updates[1].at("head_weight") - updates[0].at("head_weight")).pow(2).sum().item<double>() /
                updates[0].at("head_weight").pow(2).sum().item<double>());
  const double loss_difference = std::abs(losses[0] - losses[1]) / std::abs(losses[0]);
  const bool ok = loss_difference < 1e-9 && model_difference < 1e-6 && head_difference < 1e-6;
  std::cout << "{\"tool\": \"tl-check\", \"cpu_loss\": " << losses[0]
            << ", \"cuda_loss\": " << losses[1] << ", \"loss_relative_difference\": "
            << loss_difference << ", \"update_relative_difference\": " << model_difference
            << ", \"head_update_relative_difference\": " << head_difference
            << ", \"worst_tensor\": \"" << worst_name
            << "\", \"worst_tensor_update_relative_difference\": " << worst
            << ", \"tensors_compared\": " << updates[0].size()
            << ", \"ok\": " << (ok ? "true" : "false") << "}" << std::endl;
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"engine_bench: times the engine's training loop on synthetic images",
               "engine_bench"};
  Args args;
  AddFlags(app, args);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  // A job sets its intra-op threads to every core unless its spec says
  // otherwise (ComputeThreadsOf in job/stages.h, which needs OpenCV's side of
  // the engine); LibTorch's own default here is one thread, which would time
  // a different loop from the one a job runs.
  if (args.threads <= 0) args.threads = HardwareThreads();
  at::set_num_threads(args.threads);
  try {
    const BackboneManifest manifest = ReadManifest(ManifestPathFor(args.backbone));
    return args.check ? Check(args, manifest) : Time(args, manifest);
  } catch (const std::exception& error) {
    std::string text = error.what();
    std::cerr << "engine_bench: " << text.substr(0, text.find('\n')) << "\n";
    return 1;
  }
}
