// The stages of an image job, in the order RunImageJob runs them, each a
// function of what the earlier ones made:
//
//   PrepareJob      the settings checked, the backbone opened and its
//                   manifest read, the data scanned and split, the
//                   preprocessing chosen: whatever can fail in seconds
//   ChooseStrategy  AUTO jobs: the probe's choice (or an earlier attempt's)
//   BuildModel      the model and its trainer, before anything is decoded
//   LoadData        the image sources, the dataset check, decoding ahead,
//                   dataset.json
//   TrainModel      checkpoints and resuming, replicas, early stopping, the
//                   feature cache
//   ExportModel     model.pt, model.json, backbone.pt, metrics.json, and the
//                   export checked against the trained model
//   EvaluateModel   the validation and test reports and their files
//
// A stage that a cancel or a pause ends returns that stop (OrStopped), and
// RunImageJob returns it as the job's outcome; failures are EngineError.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/confined_file.h"
#include "base/hardware_threads.h"
#include "base/run_outcome.h"
#include "data/image_folder.h"
#include "eval/image_evaluation.h"
#include "job/auto_strategy.h"
#include "job/image_job.h"
#include "model/manifest.h"
#include "model/transfer_model.h"
#include "train/distributed.h"
#include "train/early_stopping.h"
#include "train/trainer.h"

namespace tl::engine {

// Intra-op threads, and threads that decode ahead: the job's, else every core.
int ComputeThreadsOf(const ImageJobConfig& config);
// Threads that load batches while a job trains or scores: the job's, else
// half the cores (1 to 4), leaving the rest to the forward and backward passes.
int LoaderThreadsOf(const ImageJobConfig& config);

// Where each split's images come from, for messages: "dataset.train_dir
// /data/pets" (or train_csv; validation held out of the training images
// names the training set).
std::string TrainOriginOf(const ImageJobConfig& config);
std::string ValOriginOf(const ImageJobConfig& config);

// Paths shown to people: relative to the data root when inside it.
std::string DisplayPath(const std::string& data_root, const std::string& path);

struct PreparedJob {
  // Opened once, confined to its root; every later read of the backbone
  // (the model, AUTO's probes, the feature cache's key) goes through it, so
  // a swap of the file meanwhile changes nothing.
  ConfinedFile backbone;
  BackboneManifest manifest;
  std::vector<std::string> class_names;
  std::vector<ImageSample> train;
  // Validation labels follow the training classes by name.
  std::vector<ImageSample> val;
  Preprocessing preprocessing;
  // The epochs, batch and validation slice the job trains with: the spec's,
  // or sized by the data where the spec left them (config.sizing).
  DataSizing sizing;
};

// Throws EngineError(kInvalidArgument) naming the field or file that cannot
// work.
PreparedJob PrepareJob(const ImageJobConfig& config);

// The config with job.sizing's epochs, batch and validation slice in it.
ImageJobConfig WithDataSizing(const ImageJobConfig& config, const PreparedJob& job);

struct ChosenStrategy {
  ImageJobConfig config;                 // the job as it trains (never AUTO)
  std::optional<AutoDecision> decision;  // AUTO jobs: what was chosen, and why
};

// A job that names its strategy passes unchanged. An AUTO job probes its
// training split, or reads the decision of an earlier attempt from
// output_dir/auto.json; the observer hears the decision, and the job
// continues with the chosen strategy and its defaults.
OrStopped<ChosenStrategy> ChooseStrategy(const ImageJobConfig& config, const PreparedJob& job,
                                         ImageJobObserver& observer);

struct JobModel {
  std::unique_ptr<TransferModel> model;
  std::unique_ptr<Trainer> trainer;  // trains *model
  // Data-parallel jobs: the other ranks, joined by TrainModel once the data
  // is decoded; the trainer's evaluations sum over them too.
  std::unique_ptr<ProcessGroupReplicas> replicas;
};

// The backbone with its new head and the trainer (optimizer, class weights),
// built before any image is decoded: a backbone or a setting that cannot
// work fails the job in seconds, not after minutes of decoding.
JobModel BuildModel(const ImageJobConfig& config, const PreparedJob& job);

struct JobData {
  std::unique_ptr<ImageFolderSource> train;
  std::unique_ptr<ImageFolderSource> val;  // may hold no images
  ImageFolderSourceOptions val_options;    // the test set's too
  DatasetInfo dataset;                     // also in dataset_report_path
  std::string dataset_report_path;         // output_dir/dataset.json
  // Frozen backbone, no random augmentation, one replica: training on
  // features computed once (feature_cache.h) is the same training.
  bool cache_features = false;
};

// The sources of both splits, the dataset check (counts, duplicates) and,
// when the images fit the cache, every image decoded ahead on every core;
// a dataset mostly unreadable fails. Writes dataset.json and tells the
// observer. Stops (cancelled) when asked to while reading and decoding.
OrStopped<JobData> LoadData(const ImageJobConfig& config, const PreparedJob& job,
                            ImageJobObserver& observer);

// The images found unreadable so far (by decoding ahead, or by the epochs)
// into data.dataset, and dataset.json written again.
void RecordUnreadableImages(const ImageJobConfig& config, JobData& data);

struct TrainedModel {
  std::vector<EpochStats> epochs;  // every epoch, resumed ones included
  int first_epoch_run = 1;         // > 1 when resumed from a checkpoint
  EarlyStopping early_stopping{EarlyStoppingOptions{}};  // replayed over every epoch
  // With early stopping: the epoch whose weights the model now holds, and
  // whether training ended before its last epoch.
  int best_epoch = 0;
  bool stopped_early = false;
  bool features_cached = false;
  bool features_from_disk = false;
};

// Resumes from output_dir's checkpoint (data-parallel: rank 0's, on every
// rank) and trains the remaining epochs, saving a checkpoint after each;
// epochs from the checkpoint are reported again first. With early stopping
// the best epoch's weights are restored at the end. Stops when cancelled
// (within a batch) or paused (after an epoch's checkpoint). Records the
// files the epochs found unreadable in data.dataset and dataset.json.
OrStopped<TrainedModel> TrainModel(const ImageJobConfig& config, const PreparedJob& job,
                                   JobModel& model, JobData& data, ImageJobObserver& observer);

// Removes the checkpoint and the best epoch's weights: the exported model
// replaces them, and a succeeded job is never retried.
void RemoveTrainingState(const std::string& output_dir);

struct ExportedModel {
  std::string model_path;       // model.pt: the classifier, TorchScript
  std::string model_info_path;  // model.json: class names, preprocessing
  std::string backbone_path;    // backbone.pt, with its manifest
  std::string metrics_path;     // metrics.json: epochs, early stopping, AUTO
};

// Writes the four files into output_dir, then checks that the exported
// classifier computes what the trained one does (EngineError(kInternal)
// when it does not).
ExportedModel ExportModel(const ImageJobConfig& config, const PreparedJob& job, JobModel& model,
                          JobData& data, const TrainedModel& trained,
                          const std::optional<AutoDecision>& decision,
                          const PrecisionChoice& precision = {});

struct EvaluatedModel {
  std::vector<EvaluationReport> reports;  // validation, then test, when they have images
  ReportFiles files;                      // empty paths when there are no reports
};

// The trained model on the validation split and on test_dir; report.json
// and confusion_matrix.png in output_dir. Stops (cancelled) when asked to
// while the test set is decoded.
OrStopped<EvaluatedModel> EvaluateModel(const ImageJobConfig& config, const PreparedJob& job,
                                        JobModel& model, JobData& data,
                                        ImageJobObserver& observer);

}  // namespace tl::engine
