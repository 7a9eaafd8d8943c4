// A whole transfer-learning job on image folders: scan and split the data,
// load the backbone, train, export the classifier, the trained backbone and
// the metrics, and check the exported classifier against the trained one.
// The worker runs one through this; so could a local command.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/run_outcome.h"
#include "data/augmentation.h"
#include "data/dataset_check.h"
#include "data/image_file.h"
#include "eval/evaluation_report.h"
#include "job/auto_strategy.h"
#include "job/data_sizing.h"
#include "train/distributed.h"
#include "train/early_stopping.h"
#include "train/trainer.h"

namespace tl::engine {

// The member defaults (and those of the option structs inside) serve the
// engine's direct users (tests, benchmarks); the worker sets the fields
// from the job's stored spec and its own settings (worker/job_runner.cc),
// and the JobSpec's documented defaults live in server/spec/spec_fields.cc.
struct ImageJobConfig {
  std::string backbone_path;  // TorchScript file; its manifest sits beside it
  std::string train_dir;
  std::string val_dir;        // empty: hold out val_fraction of train_dir
  // CSV datasets (`path,label` lines), in place of train_dir and val_dir;
  // their image paths must stay inside data_root.
  std::string train_csv;
  std::string val_csv;
  std::string data_root;      // empty: each CSV's own folder
  // Reading is confined where it happens (confined_file.h): every image,
  // CSV file, backbone and manifest must resolve inside data_root, a
  // backbone from an earlier job's artifacts (backbone_from_artifacts) and
  // an evaluated model inside artifact_root. An empty root confines nothing
  // (the engine run alone). Images that resolve outside are skipped and
  // counted as unreadable ones are; anything else fails the job.
  std::string artifact_root;
  bool backbone_from_artifacts = false;
  // Images whose header states more pixels are skipped undecoded and
  // counted as unreadable (image_header.h).
  int64_t max_image_pixels = kDefaultMaxImagePixels;
  double val_fraction = 0.2;
  // Fields the spec left to the data (data_sizing.h): their values above
  // (val_fraction, batch_size, train.epochs) are then ignored.
  DataSizingRequest sizing;
  // Labelled images never trained or validated on, classes named as in
  // train_dir; evaluated once at the end for the report. Empty: none.
  std::string test_dir;
  int image_size = 0;         // 0: the manifest's input_size
  int resize_size = 0;        // 0: image_size * 8 / 7
  bool horizontal_flip = true;
  Augmentation augmentation;  // training images only
  int batch_size = 32;
  uint64_t seed = 1;
  int threads = 0;            // intra-op threads; 0: every core
  int loader_threads = 0;     // 0: chosen from the core count
  // train.class_weights and train.seed are filled in from the two below and
  // `seed`; train.precision from `precision`.
  TrainOptions train;
  // What the spec asks (training.precision): the job chooses by the rule of
  // train/precision.h on its device, for training, AUTO's probe and the
  // features it caches.
  PrecisionRequest precision = PrecisionRequest::kFloat32;
  std::map<std::string, double> class_weights;  // by class name; others weigh 1
  bool balanced_class_weights = false;          // weights from training-set frequencies
  // Stops training when a validation metric stalls and exports the best
  // epoch's weights; needs validation images.
  EarlyStoppingOptions early_stopping;
  // Set: an evaluation job. This exported model (model.json beside it) runs
  // on test_dir, else train_dir; nothing trains, and of the settings above
  // only batch_size, threads, loader_threads and train.device apply.
  std::string evaluate_model_path;
  // AUTO: a probe on the training split chooses train.strategy (and its
  // defaults) before training; see auto_strategy.h.
  AutoStrategyOptions auto_strategy;
  // Where FEATURE_EXTRACTION jobs without random augmentation keep the
  // frozen backbone's features for later epochs, retries and jobs; empty:
  // in memory for this job only.
  std::string feature_cache_dir;
  // The folder's bound: least recently used tables go beyond it; 0: none.
  int64_t feature_cache_max_bytes = 0;
  std::string output_dir;     // created if missing
  std::string provenance;     // recorded in the exported backbone's manifest
  // world_size > 1: this process is one rank of a data-parallel job
  // (distributed.h). batch_size is then the global batch, split among the
  // ranks; only rank 0 writes to output_dir.
  DistributedOptions distributed;
};

struct DatasetInfo {
  std::vector<std::string> class_names;
  int64_t train_images = 0;
  int64_t val_images = 0;
  int64_t skipped_images = 0;
  DatasetCheck check;  // also written to output_dir/dataset.json
};

struct ImageJobResult {
  // Finished, or stopped on request (cancelled, or paused after an epoch's
  // checkpoint); a stopped job's result holds nothing else.
  RunOutcome outcome;
  DatasetInfo dataset;
  std::vector<EpochStats> epochs;  // every epoch, resumed ones included
  int first_epoch_run = 1;         // > 1 when resumed from a checkpoint
  // With early stopping: the epoch whose weights were exported, and whether
  // training ended before training.epochs.
  int best_epoch = 0;
  bool stopped_early = false;
  // Absolute paths inside output_dir.
  std::string model_path;
  std::string model_info_path;
  std::string backbone_path;
  std::string metrics_path;
  // The final model on the validation split and the test set (each when
  // it has images), written to report_path and, as a picture of the last
  // one's confusion matrix, confusion_matrix_path.
  std::vector<EvaluationReport> reports;
  std::string report_path;
  std::string confusion_matrix_path;
  // The head trained on cached backbone features (feature_cache.h), and
  // they came from feature_cache_dir rather than a pass over the images.
  bool features_cached = false;
  bool features_from_disk = false;
  // AUTO jobs: the strategy chosen and the evidence.
  std::optional<AutoDecision> auto_decision;
  // Epochs, batch and validation slice as trained, and which of them the
  // data sized.
  DataSizing sizing;
  // The precision the forward passes ran in, and why (train/precision.h).
  PrecisionChoice precision;
  double seconds = 0;
};

class ImageJobObserver : public TrainObserver {
 public:
  // A line worth a person's attention (a damaged checkpoint not used).
  virtual void OnNotice(const std::string& line) {}
  // Called once the data is scanned and split, before training starts.
  virtual void OnDataset(const DatasetInfo& dataset) {}
  // Called once the data is scanned, before AUTO's probe: the epochs, batch
  // and validation slice the job trains with (sizing.sized: which of them
  // the data sized).
  virtual void OnDataSizing(const DataSizing& sizing) {}
  // AUTO jobs: called before the probe (or the reading back of its decision),
  // after OnDataSizing; the probe's batches then reach OnBatch with
  // BatchProgress::auto_probe set.
  virtual void OnAutoProbeStarting() {}
  // AUTO jobs: called once the strategy is chosen (or read back), before
  // the dataset is checked.
  virtual void OnAutoStrategy(const AutoDecision& decision) {}
};

// Runs the stages of stages.h. A stop the observer asks for is the result's
// outcome: cancelled (within a batch) or paused (after the epoch's
// checkpoint). Throws EngineError: kInvalidArgument for a job that cannot
// work as given (naming the field or file), kFailedPrecondition for what is
// found while running, kInternal and kUnavailable for what another attempt
// may not meet.
ImageJobResult RunImageJob(const ImageJobConfig& config, ImageJobObserver& observer);

// The resize rule shared by training and exported models.
int DefaultResizeSize(int image_size);

// Where the job's images may be read from and how large they may be.
ImageReadRules ImageReadRulesOf(const ImageJobConfig& config);

// The root the backbone must resolve inside (empty: anywhere).
const std::string& BackboneRootOf(const ImageJobConfig& config);

}  // namespace tl::engine
