// The training loop: epochs of training batches through a TransferModel,
// validation after each, metrics to an observer, a stop request honoured
// between batches, checkpoints that a later attempt resumes from.
#pragma once

#include <torch/torch.h>

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/run_outcome.h"
#include "data/batch_source.h"
#include "eval/evaluation_report.h"
#include "model/transfer_model.h"
#include "train/precision.h"
#include "train/epoch_stats.h"
#include "train/replica_sync.h"

namespace tl::engine {

enum class OptimizerKind {
  kSgd,
  kAdam,
  kAdamW,  // Adam with decoupled weight decay
};
// How the learning rates move over a run, after the linear warmup.
enum class LrSchedule {
  kConstant,
  kStep,    // times step_gamma every step_epochs epochs
  kCosine,  // cosine decay to min_learning_rate at the last batch
};

// The member defaults serve the engine's direct users (tests, benchmarks);
// the worker sets every field from the job's stored spec (class_weights and
// seed through ImageJobConfig; device with its own settings), and the
// JobSpec's documented defaults live in server/spec/spec_fields.cc. The
// trainer's bounds checks are the engine's own invariants.
struct TrainOptions {
  Strategy strategy = Strategy::kFineTune;
  int unfreeze_groups = 1;
  // Staged fine-tuning (FINE_TUNE only; see staged_unfreezing.h): the head
  // alone for head_only_epochs, then one more layer group every
  // unfreeze_every_epochs (0: all unfreeze_groups at once).
  int head_only_epochs = 0;
  int unfreeze_every_epochs = 0;
  int epochs = 10;
  OptimizerKind optimizer = OptimizerKind::kAdam;
  double learning_rate = 1e-3;      // head
  double backbone_lr_scale = 0.1;   // backbone lr = learning_rate * this
  double momentum = 0.9;            // SGD
  bool nesterov = false;            // SGD; needs momentum > 0
  double weight_decay = 0.0;
  LrSchedule lr_schedule = LrSchedule::kConstant;
  // The learning rates rise linearly, batch by batch, over this many epochs
  // before the schedule takes over.
  int warmup_epochs = 0;
  int step_epochs = 1;              // kStep
  double step_gamma = 0.1;          // kStep
  double min_learning_rate = 0.0;   // kCosine: the head's last; the backbone's scales alike
  double clip_grad_norm = 0.0;      // max L2 norm of all trained gradients; 0: off
  double label_smoothing = 0.0;     // [0, 1)
  // Cross-entropy weight of each class, by label; empty: all 1.
  std::vector<double> class_weights;
  // Seeds what the backbone draws while training (dropout, stochastic
  // depth), anew each epoch so that a resumed run draws what it would have.
  uint64_t seed = 1;
  std::string device = "cpu";       // "cpu", "cuda", "cuda:1"
  Precision precision = Precision::kFloat32;  // precision.h: bf16 autocast on CUDA or CPU
  bool channels_last = false;       // NHWC activations and weights (CUDA)
};

// "cpu", "cuda", "cuda:1" as a device; throws EngineError(kInvalidArgument)
// for another name, or CUDA where it is not available.
torch::Device ParseDevice(const std::string& name);

// The factor that multiplies every base learning rate at a batch. `step`
// counts batches from the start of the run (0-based), `steps_per_epoch` is
// the training source's batch count. A pure function of its arguments, so a
// run resumed from its epoch count continues the schedule exactly.
double LearningRateFactor(const TrainOptions& options, int64_t step, int64_t steps_per_epoch);

struct BatchProgress {
  int epoch = 0;
  int epochs = 0;
  int64_t batch = 0;  // batches done in this epoch
  int64_t batches = 0;
  double mean_loss = 0;
  double images_per_second = 0;
  // Time this epoch has spent waiting for the training source's next batch
  // (decoding that did not keep up), out of its time so far.
  double data_wait_seconds = 0;
  // Set by AUTO's probe (auto_strategy.h), whose runs are not the job's
  // epochs: epoch and epochs then count its runs.
  bool auto_probe = false;
};

class TrainObserver {
 public:
  virtual ~TrainObserver() = default;
  virtual void OnBatch(const BatchProgress& progress) {}
  virtual void OnEpoch(const EpochStats& stats) {}
  // Polled before every batch (and between images while a dataset is
  // decoded, from several threads at once); true ends the run, cancelled.
  virtual bool StopRequested() { return false; }
  // Polled after each epoch's OnEpoch (which saves a job's checkpoint);
  // true ends the run there, paused, and a later run resumes from that
  // checkpoint.
  virtual bool PauseRequested() { return false; }
  // Polled after each epoch's OnEpoch; true ends the run there, normally
  // (early stopping).
  virtual bool TrainingDone() { return false; }
};

class Trainer {
 public:
  // Configures the model's strategy, moves it to the device and builds the
  // optimizer: the head at learning_rate, trainable backbone parameters at
  // learning_rate * backbone_lr_scale. Throws EngineError(kInvalidArgument)
  // naming the training.* field for options that cannot work together.
  Trainer(TransferModel& model, TrainOptions options);

  // Epochs first_epoch..options.epochs, fewer when the observer says
  // training is done, or asks to stop or pause (then the outcome says so).
  // Throws EngineError(kFailedPrecondition) when the loss stops being finite
  // ("loss became NaN at epoch E, batch B").
  struct RunResult {
    std::vector<EpochStats> epochs;  // those this run trained
    RunOutcome outcome;
  };
  RunResult Run(BatchSource& train, BatchSource* validation, TrainObserver& observer,
                int first_epoch = 1);

  // One optimizer step at the current learning rates; returns the batch's
  // mean loss (on the device) and sets *correct to the number of right
  // predictions when not null.
  torch::Tensor Step(const Batch& batch, int64_t* correct);
  // Plain cross-entropy (no class weights, no smoothing), so that
  // validation losses compare across jobs. Forward passes in the training's
  // precision unless `precision` says otherwise.
  EvaluationStats Evaluate(BatchSource& source, int epoch,
                           std::optional<Precision> precision = std::nullopt);

  // Model weights, optimizer state and the epochs done so far, in
  // dir/checkpoint (kCheckpointFiles), each file written atomically and the
  // folder renamed into place. Throws EngineError(kInternal) naming the file
  // when one cannot be written (a full disk); the previous checkpoint stays.
  void SaveCheckpoint(const std::string& dir, const std::vector<EpochStats>& done) const;
  // Returns the epochs the checkpoint holds (empty when there is none). A
  // damaged checkpoint (a file missing, of another size or checksum than
  // recorded, or that does not load) is not trusted: the one it was
  // replacing (checkpoint.old, left by a crash between renames) is tried,
  // and without a good one the job starts over. Damaged ones are removed,
  // and `note` hears a line about each, and about where the job resumes.
  std::vector<EpochStats> LoadCheckpoint(
      const std::string& dir, const std::function<void(const std::string&)>& note = {});

  const torch::Device& device() const { return device_; }
  double head_learning_rate() const;

  // Data-parallel training (distributed.h): each replica steps on its slice
  // of every global batch, and gradients, metrics and stop requests are
  // shared through `replicas`. Null (the default): one replica.
  void SetReplicas(ReplicaSync* replicas) { replicas_ = replicas; }

 private:
  torch::Tensor ToDevice(const torch::Tensor& tensor, bool images) const;
  // Logits and the cross-entropy of a batch: its (weighted) mean, or with
  // `summed` its sum, which data-parallel steps divide by the global weight.
  torch::Tensor Loss(const Batch& batch, bool summed, torch::Tensor* logits,
                     torch::Tensor* labels);
  // This replica's class-weighted image count of `batch`: the denominator
  // of its mean loss.
  double LossWeight(const Batch& batch) const;
  // One step on this replica's slice (possibly empty) of a global batch
  // whose loss weight over all replicas is `global_weight`; returns the
  // global batch's mean loss and sets *correct to its right predictions.
  double ReplicatedStep(const Batch& batch, double global_weight, int64_t* correct);
  // Freezes and unfreezes layer groups for the epoch's stage.
  void ApplyStage(int epoch);
  void SetLearningRateFactor(double factor);

  TransferModel& model_;
  TrainOptions options_;
  torch::Device device_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  // Each parameter group's learning rate before scheduling.
  std::vector<double> base_learning_rates_;
  // What gradient clipping measures: every parameter that trains.
  std::vector<torch::Tensor> trained_parameters_;
  torch::Tensor class_weights_;  // on the device; undefined when all are 1
  ReplicaSync* replicas_ = nullptr;
};

// The files of a checkpoint folder; the last records the others' sizes and
// FNV-1a checksums.
inline constexpr std::array<const char*, 4> kCheckpointFiles = {"model.pt", "optimizer.pt",
                                                                "epochs.json", "checksums.json"};

}  // namespace tl::engine
