// train_bench: tl's side of the CPU comparisons in bench/run. Runs the very
// code tlworker runs, with the settings on the command line, and prints one
// JSON object on stdout.
//
//   train_bench train --backbone resnet18.pt --data DIR --image_size 64 \
//       --epochs 4 --batch 32 --strategy full --threads 2 --loader_threads 2
//     A whole job through RunImageJob: per-epoch training images/s, the
//     job's wall time and the process's peak resident memory.
//     --precision fp32|bf16|auto: the job's training.precision (default fp32).
//   train_bench pipeline --data DIR --image_size 224 --batch 32 --loader_threads 2
//     The data pipeline alone (ImageFolderSource): one shuffled, flipped
//     epoch of the folder, decoded from the files, no model.
//
// Run it with OMP_WAIT_POLICY=PASSIVE, as tlworker runs (libgomp reads the
// variable when it loads, so this process cannot set it for itself).
#include <ATen/Parallel.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>

#include "base/errors.h"
#include "data/image_folder.h"
#include "job/image_job.h"
#include "train/precision.h"

namespace {

using namespace tl::engine;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

struct Args {
  std::string mode;
  std::string backbone;
  std::string data;
  std::string output;
  std::string strategy = "full";
  std::string optimizer = "sgd";
  std::string precision = "fp32";
  int image_size = 64;
  int batch = 32;
  int epochs = 3;
  int threads = 2;
  int loader_threads = 2;
  bool flip = true;
  double learning_rate = 0.01;
};

void AddFlags(CLI::App& app, Args& args, bool& no_flip) {
  app.add_option("mode", args.mode,
                 "train: a whole job through RunImageJob; pipeline: the data pipeline alone")
      ->required()
      ->check(CLI::IsMember({"train", "pipeline"}));
  app.add_option("--data", args.data, "image folder, a folder per class")->required();
  app.add_option("--backbone", args.backbone, "TorchScript backbone (train)");
  app.add_option("--output", args.output, "job output folder (default: a temporary one)");
  app.add_option("--strategy", args.strategy, "full or feature_extraction")
      ->check(CLI::IsMember({"full", "feature_extraction"}));
  app.add_option("--optimizer", args.optimizer, "sgd or adam")
      ->check(CLI::IsMember({"sgd", "adam"}));
  app.add_option("--precision", args.precision,
                 "fp32, bf16 (autocast) or auto (the job's rule; default fp32)")
      ->check(CLI::IsMember({"fp32", "bf16", "auto"}));
  // At least 1 (CLI::PositiveNumber would describe a range of doubles).
  const CLI::Range positive(1, std::numeric_limits<int>::max());
  for (const auto& [flag, value, help] :
       {std::tuple{"--image_size", &args.image_size, "image side (default 64)"},
        std::tuple{"--batch", &args.batch, "images per batch (default 32)"},
        std::tuple{"--epochs", &args.epochs, "epochs (default 3)"},
        std::tuple{"--threads", &args.threads, "intra-op threads (default 2)"},
        std::tuple{"--loader_threads", &args.loader_threads, "decoding threads (default 2)"}}) {
    app.add_option(flag, *value, help)->check(positive);
  }
  app.add_flag("--no_flip", no_flip, "no random horizontal flips");
  app.add_option("--learning_rate", args.learning_rate, "head learning rate (default 0.01)");
}

double PeakResidentMegabytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;  // kilobytes on Linux
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// When the job reached each stage, for the JSON's breakdown of its wall time.
class StageClock : public ImageJobObserver {
 public:
  explicit StageClock(Clock::time_point start) : start_(start) {}
  void OnDataset(const DatasetInfo&) override { dataset_ready = SecondsSince(start_); }
  void OnEpoch(const EpochStats&) override { last_epoch_done = SecondsSince(start_); }
  double dataset_ready = 0;    // scanned, model loaded, images decoded
  double last_epoch_done = 0;  // trained (features computed, when cached)

 private:
  Clock::time_point start_;
};

nlohmann::json RunTraining(const Args& args) {
  ImageJobConfig config;
  config.backbone_path = args.backbone;
  config.train_dir = args.data;
  config.val_fraction = 0;  // the peer trains on the whole folder, no validation
  config.image_size = args.image_size;
  config.horizontal_flip = args.flip;
  config.batch_size = args.batch;
  config.threads = args.threads;
  config.loader_threads = args.loader_threads;
  config.train.epochs = args.epochs;
  config.train.learning_rate = args.learning_rate;
  config.train.backbone_lr_scale = 1.0;  // the peer's one optimizer group
  // AddFlags admits only these names.
  config.train.optimizer = args.optimizer == "adam" ? OptimizerKind::kAdam : OptimizerKind::kSgd;
  config.precision = PrecisionRequestNamed(args.precision);
  config.train.strategy =
      args.strategy == "feature_extraction" ? Strategy::kFeatureExtraction : Strategy::kFull;
  const bool temporary_output = args.output.empty();
  config.output_dir = temporary_output
                          ? (fs::temp_directory_path() /
                             ("train_bench-" + std::to_string(::getpid())))
                                .string()
                          : args.output;
  fs::remove_all(config.output_dir);  // no checkpoint to resume from

  const Clock::time_point start = Clock::now();
  StageClock observer(start);
  const ImageJobResult result = RunImageJob(config, observer);
  const double wall = SecondsSince(start);
  if (temporary_output) fs::remove_all(config.output_dir);

  nlohmann::json epochs = nlohmann::json::array();
  for (const EpochStats& stats : result.epochs) {
    epochs.push_back({{"epoch", stats.epoch},
                      {"images_per_second", stats.images_per_second},
                      {"seconds", stats.seconds},
                      {"train_loss", stats.train_loss}});
  }
  return {{"side", "tl"},
          {"mode", "train"},
          {"strategy", args.strategy},
          {"image_size", args.image_size},
          {"precision", PrecisionName(result.precision.precision)},
          {"train_images", result.dataset.train_images},
          {"epochs", epochs},
          {"features_cached", result.features_cached},
          {"job_seconds", result.seconds},
          {"wall_seconds", wall},
          {"dataset_ready_seconds", observer.dataset_ready},
          {"trained_seconds", observer.last_epoch_done},
          {"peak_rss_mb", PeakResidentMegabytes()}};
}

nlohmann::json RunPipeline(const Args& args) {
  ImageFolderIndex index = ScanImageFolder(args.data);
  Preprocessing preprocessing;
  preprocessing.crop_size = args.image_size;
  preprocessing.resize_size = DefaultResizeSize(args.image_size);
  preprocessing.mean = {0.485f, 0.456f, 0.406f};
  preprocessing.std = {0.229f, 0.224f, 0.225f};
  ImageFolderSourceOptions options;
  options.batch_size = args.batch;
  options.shuffle = true;
  options.random_hflip = args.flip;
  options.threads = args.loader_threads;
  const int64_t images = static_cast<int64_t>(index.samples.size());

  const Clock::time_point start = Clock::now();
  ImageFolderSource source(std::move(index.samples), preprocessing, options);
  source.StartEpoch(1);
  int64_t delivered = 0;
  while (std::optional<Batch> batch = source.Next()) delivered += batch->images.size(0);
  const double seconds = SecondsSince(start);
  if (delivered + source.skipped() != images) {
    throw std::runtime_error("pipeline delivered " + std::to_string(delivered) + " of " +
                             std::to_string(images) + " images");
  }
  return {{"side", "tl"},
          {"mode", "pipeline"},
          {"image_size", args.image_size},
          {"images", delivered},
          {"seconds", seconds},
          {"images_per_second", delivered / seconds},
          {"peak_rss_mb", PeakResidentMegabytes()}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"train_bench: tl's side of bench/run's CPU comparisons; prints one JSON object",
               "train_bench"};
  Args args;
  bool no_flip = false;
  AddFlags(app, args, no_flip);
  try {
    app.parse(argc, argv);
    if (args.mode == "train" && args.backbone.empty()) {
      throw CLI::ValidationError("--backbone", "required for train");
    }
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  args.flip = !no_flip;
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    std::cerr << "train_bench: OMP_WAIT_POLICY is not set; tlworker runs with PASSIVE\n";
  }
  try {
    at::set_num_threads(args.threads);
    const nlohmann::json out = args.mode == "train" ? RunTraining(args) : RunPipeline(args);
    std::cout << out.dump() << std::endl;
  } catch (const std::exception& error) {
    std::cerr << "train_bench: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
