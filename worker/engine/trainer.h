// The training loop: epochs of training batches through a TransferModel,
// validation after each, metrics to an observer, a stop request honoured
// between batches, checkpoints that a later attempt resumes from.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "worker/engine/batch_source.h"
#include "worker/engine/transfer_model.h"

namespace tl::engine {

enum class OptimizerKind { kSgd, kAdam };
enum class Precision {
  kFloat32,
  kBFloat16,  // autocast to bfloat16 on CUDA; weights and optimizer stay fp32
};

struct TrainOptions {
  Strategy strategy = Strategy::kFineTune;
  int unfreeze_groups = 1;
  int epochs = 10;
  OptimizerKind optimizer = OptimizerKind::kAdam;
  double learning_rate = 1e-3;      // head
  double backbone_lr_scale = 0.1;   // backbone lr = learning_rate * this
  double momentum = 0.9;            // SGD
  double weight_decay = 0.0;
  std::string device = "cpu";       // "cpu", "cuda", "cuda:1"
  Precision precision = Precision::kFloat32;
  bool channels_last = false;       // NHWC activations and weights (CUDA)
};

struct BatchProgress {
  int epoch = 0;
  int epochs = 0;
  int64_t batch = 0;  // batches done in this epoch
  int64_t batches = 0;
  double mean_loss = 0;
  double images_per_second = 0;
};

struct EpochStats {
  int epoch = 0;
  double train_loss = 0;
  double train_accuracy = 0;
  double val_loss = 0;
  double val_accuracy = 0;
  double val_macro_precision = 0;
  double val_macro_recall = 0;
  double val_macro_f1 = 0;
  double images_per_second = 0;  // training images per second of training time
  double seconds = 0;            // the whole epoch, validation included
  double learning_rate = 0;      // the head's
  int64_t train_images = 0;
  int64_t val_images = 0;
};

struct EvaluationStats {
  double loss = 0;
  double accuracy = 0;
  double macro_precision = 0;
  double macro_recall = 0;
  double macro_f1 = 0;
  int64_t images = 0;
};

class TrainObserver {
 public:
  virtual ~TrainObserver() = default;
  virtual void OnBatch(const BatchProgress& progress) {}
  virtual void OnEpoch(const EpochStats& stats) {}
  // Polled before every batch (and between images while a dataset is
  // decoded, from several threads at once); true stops the run with
  // kCancelled.
  virtual bool StopRequested() { return false; }
  // Polled after each epoch's checkpoint; true stops the run with kPaused,
  // and a later run resumes from that checkpoint.
  virtual bool PauseRequested() { return false; }
};

class Trainer {
 public:
  // Configures the model's strategy, moves it to the device and builds the
  // optimizer: the head at learning_rate, trainable backbone parameters at
  // learning_rate * backbone_lr_scale.
  Trainer(TransferModel& model, TrainOptions options);

  // Epochs first_epoch..options.epochs. Throws EngineError(kCancelled) on a
  // stop request and EngineError(kFailedPrecondition) when the loss stops
  // being finite ("loss became NaN at epoch E, batch B").
  std::vector<EpochStats> Run(BatchSource& train, BatchSource* validation,
                              TrainObserver& observer, int first_epoch = 1);

  // One optimizer step; returns the batch's mean loss (on the device) and
  // sets *correct to the number of right predictions when not null.
  torch::Tensor Step(const Batch& batch, int64_t* correct);
  EvaluationStats Evaluate(BatchSource& source, int epoch);

  // Model weights, optimizer state and the epochs done so far.
  void SaveCheckpoint(const std::string& dir, const std::vector<EpochStats>& done) const;
  // Returns the epochs the checkpoint holds (empty when there is none).
  std::vector<EpochStats> LoadCheckpoint(const std::string& dir);

  const torch::Device& device() const { return device_; }
  double head_learning_rate() const;

 private:
  torch::Tensor ToDevice(const torch::Tensor& tensor, bool images) const;

  TransferModel& model_;
  TrainOptions options_;
  torch::Device device_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
};

// Serialised form of epoch stats, for metrics.json and checkpoints.
std::string EpochStatsToJson(const std::vector<EpochStats>& epochs);
std::vector<EpochStats> EpochStatsFromJson(const std::string& json_text);

}  // namespace tl::engine
