// The stages before anything is built: PrepareJob and ChooseStrategy.
#include <algorithm>
#include <filesystem>
#include <map>

#include "base/errors.h"
#include "data/csv_dataset.h"
#include "data/image_folder.h"
#include "job/stages.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;

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
  if (!config.sizing.batch_size && config.batch_size < 1) {
    throw InvalidArgument("training.batch_size must be positive");
  }
  if (!config.sizing.epochs && config.train.epochs < 1) {
    throw InvalidArgument("training.epochs must be positive");
  }
  // AUTO without a rate takes the one its probe chose (ApplyAutoDecision).
  const bool rate_from_auto =
      config.auto_strategy.enabled && !config.auto_strategy.learning_rate.has_value();
  if (!rate_from_auto && !(config.train.learning_rate > 0)) {
    throw InvalidArgument("training.learning_rate must be positive");
  }
  if (config.train_dir.empty() == config.train_csv.empty()) {
    throw InvalidArgument("dataset: set one of dataset.train_dir and dataset.train_csv");
  }
  if (!config.val_dir.empty() && !config.val_csv.empty()) {
    throw InvalidArgument("dataset: set at most one of dataset.val_dir and dataset.val_csv");
  }
  if (!HasValidationSet(config) && !config.sizing.val_fraction &&
      !(config.val_fraction >= 0 && config.val_fraction < 1)) {
    throw InvalidArgument("dataset.val_fraction must lie in [0, 1)");
  }
  if (config.output_dir.empty()) throw InvalidArgument("output directory is empty");
  CheckAugmentation(config.augmentation);
  CheckEarlyStopping(config.early_stopping);
}

// Scans both splits into `job`: the training classes, and validation
// images labelled by their class names. A slice left to the data is sized
// by the whole training folder (job.sizing.val_fraction).
void LoadSplit(const ImageJobConfig& config, PreparedJob& job) {
  const DataOrigin train_origin = TrainOrigin(config);
  ImageFolderIndex train_index = ReadIndex(config, train_origin);
  if (train_index.class_names.size() < 2) {
    throw InvalidArgument(train_origin.Describe() + " has " +
                          std::to_string(train_index.class_names.size()) +
                          " class(es); at least 2 are needed");
  }
  job.class_names = train_index.class_names;
  if (!HasValidationSet(config)) {
    job.sizing.val_fraction =
        config.sizing.val_fraction
            ? SizedValFraction(static_cast<int64_t>(train_index.samples.size()),
                               train_index.class_names.size(), config.early_stopping.enabled)
            : config.val_fraction;
    auto [train, val] =
        StratifiedSplit(train_index.samples, job.sizing.val_fraction, config.seed);
    job.train = std::move(train);
    job.val = std::move(val);
    return;
  }
  job.train = std::move(train_index.samples);
  // Validation labels follow the training classes by name, whatever order
  // or subset of them the validation set holds.
  const DataOrigin val_origin = ValOrigin(config);
  ImageFolderIndex val_index = ReadIndex(config, val_origin);
  std::map<std::string, int64_t> label_of;
  for (size_t i = 0; i < job.class_names.size(); ++i) label_of[job.class_names[i]] = i;
  for (ImageSample sample : val_index.samples) {
    const std::string& name = val_index.class_names[sample.label];
    auto it = label_of.find(name);
    if (it == label_of.end()) {
      throw InvalidArgument(val_origin.Describe() + " has class \"" + name + "\", which " +
                            train_origin.field + " does not have");
    }
    sample.label = it->second;
    job.val.push_back(std::move(sample));
  }
}

// Batch and epochs for the training split (the slice is sized in
// LoadSplit). Sized epochs leave room for what the spec set that counts
// epochs: the warmup and the head-only epochs need one epoch after them.
void SizeFromData(const ImageJobConfig& config, PreparedJob& job) {
  if (HasValidationSet(config)) job.sizing.val_fraction = 0;
  DataSizingRule rule;
  rule.min_epochs = std::max({rule.min_epochs, config.train.warmup_epochs + 1,
                              config.train.head_only_epochs + 1});
  rule.max_epochs = std::max(rule.max_epochs, rule.min_epochs);
  // Every replica of a data-parallel job takes a share of each batch.
  rule.replicas = std::max(rule.replicas, config.distributed.world_size);
  const DataSizingRequest request{config.sizing.epochs, config.sizing.batch_size,
                                  config.sizing.val_fraction && !HasValidationSet(config)};
  job.sizing = SizeTraining(request, static_cast<int64_t>(job.train.size()), config.batch_size,
                            config.train.epochs, job.sizing.val_fraction, rule);
}

Preprocessing PreprocessingOf(const ImageJobConfig& config, const BackboneManifest& manifest) {
  Preprocessing preprocessing;
  preprocessing.crop_size = config.image_size > 0 ? config.image_size : manifest.input_size;
  preprocessing.resize_size =
      config.resize_size > 0 ? config.resize_size : DefaultResizeSize(preprocessing.crop_size);
  if (preprocessing.resize_size < preprocessing.crop_size) {
    throw InvalidArgument("preprocessing.resize_size must not be smaller than image_size");
  }
  preprocessing.mean = manifest.mean;
  preprocessing.std = manifest.std;
  return preprocessing;
}

}  // namespace

int ComputeThreadsOf(const ImageJobConfig& config) {
  return config.threads > 0 ? config.threads : HardwareThreads();
}

int LoaderThreadsOf(const ImageJobConfig& config) {
  return config.loader_threads > 0 ? config.loader_threads
                                   : std::clamp(HardwareThreads() / 2, 1, 4);
}

std::string TrainOriginOf(const ImageJobConfig& config) { return TrainOrigin(config).Describe(); }

std::string ValOriginOf(const ImageJobConfig& config) { return ValOrigin(config).Describe(); }

PreparedJob PrepareJob(const ImageJobConfig& config) {
  CheckConfig(config);
  PreparedJob job{OpenConfinedOrThrow(config.backbone_path, BackboneRootOf(config), "backbone")};
  const std::string manifest_path = ManifestPathFor(config.backbone_path);
  job.manifest = ParseManifest(
      ReadConfinedFile(manifest_path, BackboneRootOf(config), "backbone manifest"), manifest_path);
  LoadSplit(config, job);
  if (job.train.empty()) {
    throw InvalidArgument(TrainOriginOf(config) + " holds no training images");
  }
  if (config.early_stopping.enabled && job.val.empty()) {
    throw InvalidArgument(
        "training.early_stopping needs validation images: set dataset.val_dir or "
        "dataset.val_csv, or a dataset.val_fraction that holds some out");
  }
  job.preprocessing = PreprocessingOf(config, job.manifest);
  SizeFromData(config, job);
  return job;
}

ImageJobConfig WithDataSizing(const ImageJobConfig& config, const PreparedJob& job) {
  ImageJobConfig sized = config;
  sized.val_fraction = job.sizing.val_fraction;
  sized.batch_size = job.sizing.batch_size;
  sized.train.epochs = job.sizing.epochs;
  if (config.sizing.epochs && config.sizing.step_epochs) {
    sized.train.step_epochs = DefaultStepEpochs(job.sizing.epochs, config.train.warmup_epochs);
  }
  return sized;
}

OrStopped<ChosenStrategy> ChooseStrategy(const ImageJobConfig& config, const PreparedJob& job,
                                         ImageJobObserver& observer) {
  ChosenStrategy chosen{config, std::nullopt};
  if (!config.auto_strategy.enabled) return chosen;
  AutoProbeJob probe{config.backbone_path, job.manifest, job.class_names.size(), job.train,
                     job.preprocessing, config.train, config.batch_size,
                     ComputeThreadsOf(config),
                     config.loader_threads > 0 ? config.loader_threads : 1,
                     [&observer] { return observer.StopRequested(); },
                     job.backbone.OpenedPath(), ImageReadRulesOf(config),
                     [&observer](const std::string& line) { observer.OnNotice(line); },
                     [&observer](const BatchProgress& progress) { observer.OnBatch(progress); }};
  probe.train_options.seed = config.seed;
  probe.feature_cache_dir = config.feature_cache_dir;
  probe.feature_cache_max_bytes = config.feature_cache_max_bytes;
  observer.OnAutoProbeStarting();
  OrStopped<AutoDecision> decision =
      DecideOrReuseStrategy(probe, config.auto_strategy, config.output_dir);
  if (decision.stopped()) return decision.stop();
  observer.OnAutoStrategy(*decision);
  chosen.config.auto_strategy.enabled = false;
  ApplyAutoDecision(*decision, config.auto_strategy, chosen.config.train);
  chosen.decision = *decision;
  return chosen;
}

}  // namespace tl::engine
