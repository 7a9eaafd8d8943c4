// train_bench: tl's side of the CPU comparisons in bench/run. Runs the very
// code tlworker runs, with the settings on the command line, and prints one
// JSON object on stdout.
//
//   train_bench train --backbone resnet18.pt --data DIR --image_size 64 \
//       --epochs 4 --batch 32 --strategy full --threads 2 --loader_threads 2
//     A whole job through RunImageJob: per-epoch training images/s, the
//     job's wall time and the process's peak resident memory.
//   train_bench pipeline --data DIR --image_size 224 --batch 32 --loader_threads 2
//     The data pipeline alone (ImageFolderSource): one shuffled, flipped
//     epoch of the folder, decoded from the files, no model.
//
// Run it with OMP_WAIT_POLICY=PASSIVE, as tlworker runs (libgomp reads the
// variable when it loads, so this process cannot set it for itself).
#include <ATen/Parallel.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "base/errors.h"
#include "data/image_folder.h"
#include "job/image_job.h"

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
  int image_size = 64;
  int batch = 32;
  int epochs = 3;
  int threads = 2;
  int loader_threads = 2;
  bool flip = true;
  double learning_rate = 0.01;
};

[[noreturn]] void Usage(const std::string& problem) {
  std::cerr << "train_bench: " << problem
            << "\nusage: train_bench train|pipeline --data DIR [--backbone FILE] [--output DIR]"
               " [--strategy full|feature_extraction] [--optimizer sgd|adam] [--image_size N]"
               " [--batch N] [--epochs N] [--threads N] [--loader_threads N] [--no_flip]"
               " [--learning_rate X]\n";
  std::exit(2);
}

int PositiveInt(const std::string& flag, const char* text) {
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || value < 1) Usage(flag + " must be a positive integer");
  return static_cast<int>(value);
}

Args ParseArgs(int argc, char** argv) {
  if (argc < 2) Usage("a mode is required");
  Args args;
  args.mode = argv[1];
  if (args.mode != "train" && args.mode != "pipeline") Usage("unknown mode " + args.mode);
  std::map<std::string, std::string*> strings = {
      {"--backbone", &args.backbone}, {"--data", &args.data}, {"--output", &args.output},
      {"--strategy", &args.strategy}, {"--optimizer", &args.optimizer}};
  std::map<std::string, int*> ints = {
      {"--image_size", &args.image_size}, {"--batch", &args.batch},
      {"--epochs", &args.epochs},         {"--threads", &args.threads},
      {"--loader_threads", &args.loader_threads}};
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--no_flip") {
      args.flip = false;
    } else if (flag == "--learning_rate" && i + 1 < argc) {
      args.learning_rate = std::atof(argv[++i]);
    } else if (strings.count(flag) && i + 1 < argc) {
      *strings[flag] = argv[++i];
    } else if (ints.count(flag) && i + 1 < argc) {
      *ints[flag] = PositiveInt(flag, argv[++i]);
    } else {
      Usage("unknown or incomplete flag " + flag);
    }
  }
  if (args.data.empty()) Usage("--data is required");
  if (args.mode == "train" && args.backbone.empty()) Usage("--backbone is required for train");
  return args;
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
  if (args.optimizer == "sgd") {
    config.train.optimizer = OptimizerKind::kSgd;
  } else if (args.optimizer == "adam") {
    config.train.optimizer = OptimizerKind::kAdam;
  } else {
    Usage("--optimizer must be sgd or adam");
  }
  if (args.strategy == "full") {
    config.train.strategy = Strategy::kFull;
  } else if (args.strategy == "feature_extraction") {
    config.train.strategy = Strategy::kFeatureExtraction;
  } else {
    Usage("--strategy must be full or feature_extraction");
  }
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
  const Args args = ParseArgs(argc, argv);
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
