#include "job/image_job.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/atomic_file.h"
#include "base/confined_file.h"
#include "base/errors.h"
#include "data/csv_dataset.h"
#include "data/dataset_check.h"
#include "data/image_folder.h"
#include "job/distributed_job.h"
#include "job/evaluation_job.h"
#include "train/class_weights.h"
#include "train/feature_cache.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int HardwareThreads() { return std::max(1u, std::thread::hardware_concurrency()); }

bool HasValidationSet(const ImageJobConfig& config) {
  return !config.val_dir.empty() || !config.val_csv.empty();
}

// Where a split's images come from, for messages: the spec field and its path.
struct DataOrigin {
  std::string field;
  std::string path;
  bool csv = false;  // a CSV file, else a folder per class
  std::string Describe() const { return field + " " + path; }
};

DataOrigin TrainOrigin(const ImageJobConfig& config) {
  if (!config.train_csv.empty()) return {"dataset.train_csv", config.train_csv, true};
  return {"dataset.train_dir", config.train_dir};
}

DataOrigin ValOrigin(const ImageJobConfig& config) {
  if (!config.val_csv.empty()) return {"dataset.val_csv", config.val_csv, true};
  if (!config.val_dir.empty()) return {"dataset.val_dir", config.val_dir};
  return TrainOrigin(config);  // a held-out share of the training images
}

}  // namespace

ImageReadRules ImageReadRulesOf(const ImageJobConfig& config) {
  return ImageReadRules{config.data_root, config.max_image_pixels};
}

const std::string& BackboneRootOf(const ImageJobConfig& config) {
  return config.backbone_from_artifacts ? config.artifact_root : config.data_root;
}

void CheckMostlyReadable(const ImageFolderSource& source, const std::string& where) {
  if (source.size() == 0 || source.skipped() * 2 <= source.size()) return;
  std::string reasons;
  for (const auto& [skip, reason] : {std::pair{ImageSkip::kUnreadable, "unreadable"},
                                     std::pair{ImageSkip::kOutsideRoot, "outside the data root"},
                                     std::pair{ImageSkip::kTooLarge, "above the pixel limit"}}) {
    const int64_t count = source.skipped(skip);
    if (count == 0) continue;
    reasons += (reasons.empty() ? "" : ", ") + std::to_string(count) + " " + reason;
  }
  throw FailedPrecondition(where + ": " + std::to_string(source.skipped()) + " of " +
                           std::to_string(source.size()) + " images could not be read (" +
                           reasons + ")");
}

namespace {

ImageFolderIndex ReadIndex(const ImageJobConfig& config, const DataOrigin& origin) {
  return origin.csv ? ReadCsvDataset(origin.path, config.data_root, origin.field)
                    : ScanImageFolder(origin.path);
}

void CheckConfig(const ImageJobConfig& config) {
  if (!fs::is_regular_file(config.backbone_path)) {
    throw InvalidArgument("backbone: file " + config.backbone_path + " does not exist");
  }
  if (!fs::exists(ManifestPathFor(config.backbone_path))) {
    throw InvalidArgument("backbone: manifest " + ManifestPathFor(config.backbone_path) +
                          " does not exist (every backbone needs its .json manifest)");
  }
  if (config.batch_size < 1) throw InvalidArgument("training.batch_size must be positive");
  if (config.train.epochs < 1) throw InvalidArgument("training.epochs must be positive");
  if (!(config.train.learning_rate > 0)) {
    throw InvalidArgument("training.learning_rate must be positive");
  }
  if (config.train_dir.empty() == config.train_csv.empty()) {
    throw InvalidArgument("dataset: set one of dataset.train_dir and dataset.train_csv");
  }
  if (!config.val_dir.empty() && !config.val_csv.empty()) {
    throw InvalidArgument("dataset: set at most one of dataset.val_dir and dataset.val_csv");
  }
  if (!HasValidationSet(config) && !(config.val_fraction >= 0 && config.val_fraction < 1)) {
    throw InvalidArgument("dataset.val_fraction must lie in [0, 1)");
  }
  if (config.output_dir.empty()) throw InvalidArgument("output directory is empty");
  CheckAugmentation(config.augmentation);
  CheckEarlyStopping(config.early_stopping);
}

struct SplitData {
  std::vector<std::string> class_names;
  std::vector<ImageSample> train;
  std::vector<ImageSample> val;
};

SplitData LoadSplit(const ImageJobConfig& config) {
  const DataOrigin train_origin = TrainOrigin(config);
  ImageFolderIndex train_index = ReadIndex(config, train_origin);
  if (train_index.class_names.size() < 2) {
    throw InvalidArgument(train_origin.Describe() + " has " +
                          std::to_string(train_index.class_names.size()) +
                          " class(es); at least 2 are needed");
  }
  SplitData split;
  split.class_names = train_index.class_names;
  if (!HasValidationSet(config)) {
    auto [train, val] = StratifiedSplit(train_index.samples, config.val_fraction, config.seed);
    split.train = std::move(train);
    split.val = std::move(val);
    return split;
  }
  split.train = std::move(train_index.samples);
  // Validation labels follow the training classes by name, whatever order
  // or subset of them the validation set holds.
  const DataOrigin val_origin = ValOrigin(config);
  ImageFolderIndex val_index = ReadIndex(config, val_origin);
  std::map<std::string, int64_t> label_of;
  for (size_t i = 0; i < split.class_names.size(); ++i) label_of[split.class_names[i]] = i;
  for (ImageSample sample : val_index.samples) {
    const std::string& name = val_index.class_names[sample.label];
    auto it = label_of.find(name);
    if (it == label_of.end()) {
      throw InvalidArgument(val_origin.Describe() + " has class \"" + name + "\", which " +
                            train_origin.field + " does not have");
    }
    sample.label = it->second;
    split.val.push_back(std::move(sample));
  }
  return split;
}

// Saves a checkpoint after every epoch (and, with early stopping, the best
// epoch's weights before it), fails a job whose images are mostly
// unreadable, ends training when early stopping says so, and passes
// everything on.
class CheckpointingObserver : public TrainObserver {
 public:
  CheckpointingObserver(ImageJobObserver& downstream, Trainer& trainer, TransferModel& model,
                        const ImageFolderSource& train, std::string output_dir,
                        DataOrigin train_origin,
                        std::vector<EpochStats> done, const EarlyStoppingOptions& early_stopping)
      : downstream_(downstream),
        trainer_(trainer),
        model_(model),
        train_(train),
        output_dir_(std::move(output_dir)),
        train_origin_(std::move(train_origin)),
        done_(std::move(done)),
        early_stopping_(early_stopping),
        best_weights_(output_dir_) {
    // A resumed job rebuilds early stopping's state from the checkpoint's epochs.
    if (early_stopping.enabled) {
      for (const EpochStats& stats : done_) early_stopping_.Update(stats);
    }
  }

  void OnBatch(const BatchProgress& progress) override { downstream_.OnBatch(progress); }
  bool StopRequested() override { return downstream_.StopRequested(); }
  void OnEpoch(const EpochStats& stats) override {
    CheckMostlyReadable(train_, train_origin_.Describe());
    done_.push_back(stats);
    const bool best = early_stopping_.options().enabled && early_stopping_.Update(stats);
    if (best) best_weights_.Save(model_, stats.epoch);
    trainer_.SaveCheckpoint(output_dir_, done_);
    if (best) best_weights_.KeepOnly(stats.epoch);
    downstream_.OnEpoch(stats);
    if (downstream_.PauseRequested()) {
      throw EngineError(ErrorKind::kPaused,
                        "paused after epoch " + std::to_string(stats.epoch));
    }
  }
  bool TrainingDone() override { return early_stopping_.ShouldStop(); }
  const std::vector<EpochStats>& done() const { return done_; }
  const EarlyStopping& early_stopping() const { return early_stopping_; }
  const BestWeights& best_weights() const { return best_weights_; }

 private:
  ImageJobObserver& downstream_;
  Trainer& trainer_;
  TransferModel& model_;
  const ImageFolderSource& train_;
  std::string output_dir_;
  DataOrigin train_origin_;
  std::vector<EpochStats> done_;
  EarlyStopping early_stopping_;
  BestWeights best_weights_;
};

nlohmann::json EarlyStoppingJson(const EarlyStopping& early_stopping, bool stopped_early) {
  const EarlyStoppingOptions& options = early_stopping.options();
  return {{"metric", MetricName(options.metric)},
          {"mode", options.maximize ? "max" : "min"},
          {"patience", options.patience},
          {"min_delta", options.min_delta},
          {"best_epoch", early_stopping.best_epoch()},
          {"best_value", early_stopping.best_value()},
          {"stopped_early", stopped_early}};
}

// Paths shown to people: relative to the data root when inside it.
std::string DisplayPath(const std::string& data_root, const std::string& path) {
  if (data_root.empty()) return path;
  const fs::path relative =
      fs::path(path).lexically_relative(fs::weakly_canonical(data_root));
  return relative.empty() || *relative.begin() == ".." ? path : relative.string();
}

void RecordUnreadable(const ImageFolderSource& train, const ImageFolderSource& val,
                      const std::string& data_root, DatasetInfo& dataset) {
  dataset.skipped_images = train.skipped() + val.skipped();
  std::vector<std::string>& examples = dataset.check.unreadable_examples;
  examples.clear();
  for (const ImageFolderSource* source : {&train, &val}) {
    for (const ImageFolderSource::SkippedImage& image :
         source->SkippedImages(kDatasetCheckExamples - examples.size())) {
      examples.push_back(DescribeSkip(DisplayPath(data_root, image.path), image.skip, image.reason));
    }
  }
}

void WriteDatasetReport(const std::string& path, const DatasetInfo& dataset) {
  WriteFileAtomically(
      path, DatasetCheckToJson(dataset.class_names, dataset.skipped_images, dataset.check) + "\n");
}

void WriteModelInfo(const std::string& path, const ImageJobConfig& config,
                    const BackboneManifest& manifest, const Preprocessing& preprocessing,
                    const std::vector<std::string>& class_names, Strategy strategy) {
  nlohmann::json info = {{"format", "tl.model.v1"},
                         {"class_names", class_names},
                         {"architecture", manifest.architecture},
                         {"input_size", preprocessing.crop_size},
                         {"resize_size", preprocessing.resize_size},
                         {"mean", preprocessing.mean},
                         {"std", preprocessing.std},
                         {"strategy", StrategyName(strategy)},
                         {"backbone_source", manifest.source},
                         {"input", "float32 NCHW RGB, resized, center-cropped, normalized"}};
  WriteFileAtomically(path, info.dump(2) + "\n");
}

// The exported file must compute what the trained model computes: a job
// whose export differs is a failed job, not a silent wrong model.
void CheckExport(TransferModel& model, const std::string& model_path, BatchSource& source,
                 const torch::Device& device) {
  source.StartEpoch(0);
  std::optional<Batch> batch = source.Next();
  if (!batch) return;
  torch::NoGradGuard no_grad;
  model.SetTraining(false);
  // A few images show a wrong export as well as a batch does; a whole batch
  // through both models costs a job of a few epochs a large share of its
  // time (two forward passes of 32 images at 224 px: seconds on a CPU).
  constexpr int64_t kExportCheckImages = 4;
  torch::Tensor images =
      batch->images.narrow(0, 0, std::min(kExportCheckImages, batch->images.size(0))).to(device);
  torch::Tensor expected = model.Forward(images).to(torch::kFloat32);
  torch::jit::Module exported = torch::jit::load(model_path, device);
  exported.eval();
  torch::Tensor actual = exported.forward({images}).toTensor().to(torch::kFloat32);
  if (!torch::allclose(actual, expected, /*rtol=*/1e-5, /*atol=*/1e-5)) {
    throw EngineError(ErrorKind::kInternal,
                      "exported model " + model_path + " differs from the trained one by up to " +
                          std::to_string((actual - expected).abs().max().item<double>()));
  }
}

}  // namespace

int DefaultResizeSize(int image_size) { return std::max(image_size, image_size * 8 / 7); }

namespace {

ImageJobResult RunJob(const ImageJobConfig& config, ImageJobObserver& observer) {
  CheckDistributedJob(config);
  if (!config.evaluate_model_path.empty()) return RunEvaluationJob(config, observer);
  const Clock::time_point start = Clock::now();
  CheckConfig(config);
  // LibTorch starts with one intra-op thread here; that halves throughput on
  // two cores, so the job sets the count itself.
  at::set_num_threads(config.threads > 0 ? config.threads : HardwareThreads());

  // The backbone is opened once, confined to its root, and every later read
  // (the model, the feature cache's digest, AUTO's probes) goes through
  // that descriptor: a swap of the file meanwhile changes nothing.
  const ConfinedFile backbone_file =
      OpenConfinedOrThrow(config.backbone_path, BackboneRootOf(config), "backbone");
  const std::string manifest_path = ManifestPathFor(config.backbone_path);
  const BackboneManifest manifest = ParseManifest(
      ReadConfinedFile(manifest_path, BackboneRootOf(config), "backbone manifest"), manifest_path);
  SplitData split = LoadSplit(config);
  if (split.train.empty()) {
    throw InvalidArgument(TrainOrigin(config).Describe() + " holds no training images");
  }
  if (config.early_stopping.enabled && split.val.empty()) {
    throw InvalidArgument(
        "training.early_stopping needs validation images: set dataset.val_dir or "
        "dataset.val_csv, or a dataset.val_fraction that holds some out");
  }

  Preprocessing preprocessing;
  preprocessing.crop_size = config.image_size > 0 ? config.image_size : manifest.input_size;
  preprocessing.resize_size =
      config.resize_size > 0 ? config.resize_size : DefaultResizeSize(preprocessing.crop_size);
  if (preprocessing.resize_size < preprocessing.crop_size) {
    throw InvalidArgument("preprocessing.resize_size must not be smaller than image_size");
  }
  preprocessing.mean = manifest.mean;
  preprocessing.std = manifest.std;

  // AUTO: the probe chooses the strategy, and the job runs again as if the
  // spec had named it (the scan is repeated; it is cheap next to training).
  if (config.auto_strategy.enabled) {
    AutoProbeJob probe{config.backbone_path, manifest, split.class_names.size(),
                       split.train, preprocessing, config.train, config.batch_size,
                       config.threads > 0 ? config.threads : HardwareThreads(),
                       config.loader_threads > 0 ? config.loader_threads : 1,
                       [&observer] { return observer.StopRequested(); },
                       backbone_file.OpenedPath(), ImageReadRulesOf(config)};
    probe.train_options.seed = config.seed;
    const AutoDecision decision =
        DecideOrReuseStrategy(probe, config.auto_strategy, config.output_dir);
    observer.OnAutoStrategy(decision);
    ImageJobConfig chosen = config;
    chosen.auto_strategy.enabled = false;
    ApplyAutoDecision(decision, config.auto_strategy, chosen.train);
    ImageJobResult result = RunImageJob(chosen, observer);
    AddAutoDecisionToMetrics(result.metrics_path, decision);
    result.auto_decision = decision;
    result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return result;
  }

  const int loader_threads =
      config.loader_threads > 0 ? config.loader_threads : std::clamp(HardwareThreads() / 2, 1, 4);
  ImageFolderSourceOptions train_options;
  train_options.batch_size = config.batch_size;
  train_options.shuffle = true;
  train_options.random_hflip = config.horizontal_flip;
  train_options.augmentation = config.augmentation;
  train_options.drop_singleton_batch = true;
  train_options.seed = config.seed;
  train_options.threads = loader_threads;
  train_options.read_rules = ImageReadRulesOf(config);
  // Validation and test sources shard alike (their sums are added up).
  ShardTrainingSource(config.distributed, train_options);
  const ImageFolderSourceOptions val_options = EvaluationOptions(train_options);

  // The model and trainer come before the dataset is decoded: a backbone or
  // setting that cannot work should fail the job in seconds, not after
  // minutes of decoding.
  TransferModel model(config.backbone_path, manifest,
                      static_cast<int64_t>(split.class_names.size()), config.seed,
                      backbone_file.OpenedPath());
  if (preprocessing.crop_size != manifest.input_size) model.CheckImageSize(preprocessing.crop_size);
  const std::vector<int64_t> train_counts = ImagesPerClass(split.train, split.class_names.size());
  TrainOptions trainer_options = config.train;
  trainer_options.seed = config.seed;
  trainer_options.class_weights = ResolveClassWeights(split.class_names, train_counts,
                                                      config.class_weights,
                                                      config.balanced_class_weights);
  Trainer trainer(model, trainer_options);

  ImageJobResult result;
  result.dataset.class_names = split.class_names;
  result.dataset.train_images = static_cast<int64_t>(split.train.size());
  result.dataset.val_images = static_cast<int64_t>(split.val.size());
  DatasetCheck& check = result.dataset.check;
  check.train_per_class = train_counts;
  check.val_per_class = ImagesPerClass(split.val, split.class_names.size());
  check.imbalance_ratio = ImbalanceRatio(train_counts);
  const int decode_threads = config.threads > 0 ? config.threads : HardwareThreads();
  // A cancel is honoured while reading and decoding too: a large dataset takes minutes.
  const std::function<bool()> stop_requested = [&observer] { return observer.StopRequested(); };
  const std::string data_root = config.data_root;
  FindDuplicates(split.train, split.val, decode_threads, stop_requested,
                 [&data_root](const std::string& path) { return DisplayPath(data_root, path); },
                 check, train_options.read_rules);
  // The feature cache keys on the splits' files, so they are kept for it.
  const bool cache_features =
      FeatureCacheApplies(config.train.strategy,
                          train_options.random_hflip || config.augmentation.any(),
                          config.train.channels_last) &&
      config.distributed.world_size <= 1;  // data-parallel jobs train on images
  const SplitData kept_split = cache_features ? split : SplitData{};
  ImageFolderSource train_source(std::move(split.train), preprocessing, train_options);
  ImageFolderSource val_source(std::move(split.val), preprocessing, val_options);
  // Decoding everything first, on every core, keeps it from competing with
  // training later; it also finds unreadable files before any epoch runs.
  const bool train_preloaded = train_source.Preload(decode_threads, stop_requested);
  const bool val_preloaded = train_preloaded && val_source.Preload(decode_threads, stop_requested);
  if (observer.StopRequested()) {
    throw EngineError(ErrorKind::kCancelled, "stopped on request while decoding the dataset");
  }
  if (train_preloaded && val_preloaded) {
    CheckMostlyReadable(train_source, TrainOrigin(config).Describe());
    CheckMostlyReadable(val_source, ValOrigin(config).Describe());
  }
  fs::create_directories(config.output_dir);
  const std::string dataset_report_path = (fs::path(config.output_dir) / "dataset.json").string();
  // Unreadable files of a dataset too large to decode ahead are found as the
  // first epoch reads them; the report is written again after training.
  RecordUnreadable(train_source, val_source, data_root, result.dataset);
  WriteDatasetReport(dataset_report_path, result.dataset);
  observer.OnDataset(result.dataset);

  const std::unique_ptr<ProcessGroupReplicas> replicas = JoinReplicas(config.distributed, trainer);
  std::vector<EpochStats> done = trainer.LoadCheckpoint(
      config.output_dir, [&observer](const std::string& line) { observer.OnNotice(line); });
  if (replicas) done = ShareTrainingState(*replicas, trainer, done);
  ReplicatedJobObserver replicated(observer, replicas.get());
  result.first_epoch_run = static_cast<int>(done.size()) + 1;
  // Epochs from the checkpoint are reported again: the attempt that ran them
  // may have died after saving and before reporting.
  for (const EpochStats& stats : done) observer.OnEpoch(stats);
  CheckpointingObserver checkpointing(replicated, trainer, model, train_source, config.output_dir,
                                      TrainOrigin(config), done, config.early_stopping);
  // A job paused in the epoch that early stopping ended has nothing left to train.
  if (!checkpointing.TrainingDone()) {
    std::optional<FeatureTraining> features;
    if (cache_features && result.first_epoch_run <= config.train.epochs) {
      features.emplace(model, kept_split.train, kept_split.val,
                       FeatureTraining::Options{config.feature_cache_dir, backbone_file.OpenedPath(),
                                                preprocessing, val_options, config.batch_size,
                                                config.seed, trainer.device()});
      result.features_cached = true;
      result.features_from_disk = features->from_disk();
    }
    trainer.Run(features ? features->train() : train_source,
                features ? features->validation() : (val_source.size() > 0 ? &val_source : nullptr),
                checkpointing, result.first_epoch_run);
  }
  result.epochs = checkpointing.done();
  const EarlyStopping& early_stopping = checkpointing.early_stopping();
  if (config.early_stopping.enabled && early_stopping.best_epoch() > 0) {
    result.best_epoch = early_stopping.best_epoch();
    result.stopped_early = result.epochs.back().epoch < config.train.epochs;
    checkpointing.best_weights().Restore(model, result.best_epoch, trainer.device());
  }
  RecordUnreadable(train_source, val_source, data_root, result.dataset);
  WriteDatasetReport(dataset_report_path, result.dataset);

  const fs::path out(config.output_dir);
  result.model_path = (out / "model.pt").string();
  result.model_info_path = (out / "model.json").string();
  result.backbone_path = (out / "backbone.pt").string();
  result.metrics_path = (out / "metrics.json").string();
  model.ExportClassifier(result.model_path, result.dataset.class_names);
  WriteModelInfo(result.model_info_path, config, manifest, preprocessing,
                 result.dataset.class_names, config.train.strategy);
  model.ExportBackbone(result.backbone_path, config.provenance.empty()
                                                 ? manifest.source
                                                 : config.provenance);
  nlohmann::json metrics = nlohmann::json::parse(EpochStatsToJson(result.epochs));
  if (config.early_stopping.enabled) {
    metrics["early_stopping"] = EarlyStoppingJson(early_stopping, result.stopped_early);
  }
  WriteFileAtomically(result.metrics_path, metrics.dump(2) + "\n");
  CheckExport(model, result.model_path, val_source.size() > 0 ? val_source : train_source,
              trainer.device());

  const auto evaluate = [&trainer](BatchSource& source) {
    return trainer.Evaluate(source, /*epoch=*/0);
  };
  if (val_source.size() > 0) {
    result.reports.push_back(
        MakeEvaluationReport(evaluate(val_source), result.dataset.class_names, "validation"));
  }
  if (!config.test_dir.empty()) {
    result.reports.push_back(EvaluateImages(
        SamplesLabelledByName(config.test_dir, "dataset.test_dir", result.dataset.class_names),
        preprocessing, val_options, result.dataset.class_names, evaluate, "test", config.test_dir,
        "dataset.test_dir", stop_requested));
  }
  const ReportFiles report_files = WriteReportFiles(result.reports, config.output_dir);
  result.report_path = report_files.report_path;
  result.confusion_matrix_path = report_files.confusion_matrix_path;
  // The finished model replaces the checkpoint; a retry after this point
  // would start over, which is what a succeeded job never needs.
  fs::remove_all(out / "checkpoint");
  fs::remove_all(out / "best");
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace

ImageJobResult RunImageJob(const ImageJobConfig& config, ImageJobObserver& observer) {
  if (config.distributed.world_size <= 1 || config.distributed.rank == 0) {
    return RunJob(config, observer);
  }
  return RunWithPrivateOutput(
      config, [&observer](const ImageJobConfig& own) { return RunJob(own, observer); });
}

}  // namespace tl::engine
