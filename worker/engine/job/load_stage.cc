// The stages that build what training needs: BuildModel and LoadData.
#include <filesystem>
#include <functional>

#include "base/atomic_file.h"
#include "data/dataset_check.h"
#include "job/distributed_job.h"
#include "job/stages.h"
#include "train/class_weights.h"
#include "train/feature_cache.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;

ImageFolderSourceOptions TrainingSourceOptions(const ImageJobConfig& config) {
  ImageFolderSourceOptions options;
  options.batch_size = config.batch_size;
  options.shuffle = true;
  options.random_hflip = config.horizontal_flip;
  options.augmentation = config.augmentation;
  options.drop_singleton_batch = true;
  options.seed = config.seed;
  options.threads = LoaderThreadsOf(config);
  options.read_rules = ImageReadRulesOf(config);
  // Validation and test sources shard alike (their sums are added up).
  ShardTrainingSource(config.distributed, options);
  return options;
}

}  // namespace

JobModel BuildModel(const ImageJobConfig& config, const PreparedJob& job) {
  JobModel built;
  built.model = std::make_unique<TransferModel>(
      config.backbone_path, job.manifest, static_cast<int64_t>(job.class_names.size()),
      config.seed, job.backbone.OpenedPath());
  if (job.preprocessing.crop_size != job.manifest.input_size) {
    built.model->CheckImageSize(job.preprocessing.crop_size);
  }
  TrainOptions options = config.train;
  options.seed = config.seed;
  options.class_weights =
      ResolveClassWeights(job.class_names, ImagesPerClass(job.train, job.class_names.size()),
                          config.class_weights, config.balanced_class_weights);
  built.trainer = std::make_unique<Trainer>(*built.model, options);
  return built;
}

OrStopped<JobData> LoadData(const ImageJobConfig& config, const PreparedJob& job,
                            ImageJobObserver& observer) {
  const ImageFolderSourceOptions train_options = TrainingSourceOptions(config);
  JobData data;
  data.val_options = EvaluationOptions(train_options);
  DatasetInfo& dataset = data.dataset;
  dataset.class_names = job.class_names;
  dataset.train_images = static_cast<int64_t>(job.train.size());
  dataset.val_images = static_cast<int64_t>(job.val.size());
  DatasetCheck& check = dataset.check;
  check.train_per_class = ImagesPerClass(job.train, job.class_names.size());
  check.val_per_class = ImagesPerClass(job.val, job.class_names.size());
  check.imbalance_ratio = ImbalanceRatio(check.train_per_class);
  const int decode_threads = ComputeThreadsOf(config);
  // A cancel is honoured while reading and decoding too: a large dataset takes minutes.
  const std::function<bool()> stop_requested = [&observer] { return observer.StopRequested(); };
  const std::string& data_root = config.data_root;
  FindDuplicates(job.train, job.val, decode_threads, stop_requested,
                 [&data_root](const std::string& path) { return DisplayPath(data_root, path); },
                 check, train_options.read_rules);
  data.cache_features =
      FeatureCacheApplies(config.train.strategy,
                          train_options.random_hflip || config.augmentation.any(),
                          config.train.channels_last) &&
      config.distributed.world_size <= 1;  // data-parallel jobs train on images
  data.train = std::make_unique<ImageFolderSource>(job.train, job.preprocessing, train_options);
  data.val = std::make_unique<ImageFolderSource>(job.val, job.preprocessing, data.val_options);
  // Decoding everything first, on every core, keeps it from competing with
  // training later; it also finds unreadable files before any epoch runs.
  const bool train_preloaded = data.train->Preload(decode_threads, stop_requested);
  const bool val_preloaded = train_preloaded && data.val->Preload(decode_threads, stop_requested);
  if (observer.StopRequested()) {
    return RunOutcome::Cancelled("stopped on request while decoding the dataset");
  }
  if (train_preloaded && val_preloaded) {
    CheckMostlyReadable(*data.train, TrainOriginOf(config));
    CheckMostlyReadable(*data.val, ValOriginOf(config));
  }
  fs::create_directories(config.output_dir);
  data.dataset_report_path = (fs::path(config.output_dir) / "dataset.json").string();
  // Unreadable files of a dataset too large to decode ahead are found as the
  // first epoch reads them; TrainModel records them again.
  RecordUnreadableImages(config, data);
  observer.OnDataset(dataset);
  return data;
}

std::string DisplayPath(const std::string& data_root, const std::string& path) {
  if (data_root.empty()) return path;
  const fs::path relative =
      fs::path(path).lexically_relative(fs::weakly_canonical(data_root));
  return relative.empty() || *relative.begin() == ".." ? path : relative.string();
}

void RecordUnreadableImages(const ImageJobConfig& config, JobData& data) {
  DatasetInfo& dataset = data.dataset;
  dataset.skipped_images = data.train->skipped() + data.val->skipped();
  std::vector<std::string>& examples = dataset.check.unreadable_examples;
  examples.clear();
  for (const ImageFolderSource* source : {data.train.get(), data.val.get()}) {
    for (const ImageFolderSource::SkippedImage& image :
         source->SkippedImages(kDatasetCheckExamples - examples.size())) {
      examples.push_back(
          DescribeSkip(DisplayPath(config.data_root, image.path), image.skip, image.reason));
    }
  }
  WriteFileAtomically(data.dataset_report_path,
                      DatasetCheckToJson(dataset.class_names, dataset.skipped_images,
                                         dataset.check) +
                          "\n");
}

}  // namespace tl::engine
