#include "train/trainer.h"

#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/atomic_file.h"
#include "base/errors.h"
#include "base/fnv1a.h"
#include "eval/classification_metrics.h"
#include "eval/evaluation_report.h"
#include "model/model_weights.h"
#include "train/staged_unfreezing.h"

namespace tl::engine {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}


// The head at learning_rate, trainable backbone parameters (if any) at
// learning_rate * backbone_lr_scale; `with_lr` makes an optimizer's options.
template <typename Optimizer, typename MakeOptions>
std::unique_ptr<torch::optim::Optimizer> MakeGrouped(TransferModel& model,
                                                     const TrainOptions& options,
                                                     const MakeOptions& with_lr) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(model.HeadParameters(), with_lr(options.learning_rate));
  std::vector<torch::Tensor> backbone = model.TrainableBackboneParameters();
  if (!backbone.empty()) {
    groups.emplace_back(backbone, with_lr(options.learning_rate * options.backbone_lr_scale));
  }
  return std::make_unique<Optimizer>(groups, *with_lr(options.learning_rate));
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(TransferModel& model,
                                                       const TrainOptions& options) {
  switch (options.optimizer) {
    case OptimizerKind::kSgd:
      return MakeGrouped<torch::optim::SGD>(model, options, [&](double lr) {
        return std::make_unique<torch::optim::SGDOptions>(torch::optim::SGDOptions(lr)
                                                              .momentum(options.momentum)
                                                              .nesterov(options.nesterov)
                                                              .weight_decay(options.weight_decay));
      });
    case OptimizerKind::kAdamW:
      return MakeGrouped<torch::optim::AdamW>(model, options, [&](double lr) {
        return std::make_unique<torch::optim::AdamWOptions>(
            torch::optim::AdamWOptions(lr).weight_decay(options.weight_decay));
      });
    case OptimizerKind::kAdam:
      break;
  }
  return MakeGrouped<torch::optim::Adam>(model, options, [&](double lr) {
    return std::make_unique<torch::optim::AdamOptions>(
        torch::optim::AdamOptions(lr).weight_decay(options.weight_decay));
  });
}

// Options that cannot work together, found before any weight moves. The
// scheduler checks the same bounds; these guard the engine's own callers.
void CheckOptions(const TrainOptions& options, int64_t num_classes) {
  if (options.nesterov && options.optimizer != OptimizerKind::kSgd) {
    throw InvalidArgument("training.nesterov applies to the SGD optimizer only");
  }
  if (options.nesterov && !(options.momentum > 0)) {
    throw InvalidArgument("training.nesterov needs training.momentum above 0");
  }
  if (options.warmup_epochs < 0 || options.warmup_epochs > options.epochs) {
    throw InvalidArgument("training.warmup_epochs is " + std::to_string(options.warmup_epochs) +
                          "; it must lie in [0, training.epochs]");
  }
  if (options.lr_schedule == LrSchedule::kStep &&
      (options.step_epochs < 1 || !(options.step_gamma > 0 && options.step_gamma <= 1))) {
    throw InvalidArgument("training.step_epochs must be at least 1 and training.step_gamma in (0, 1]");
  }
  if (options.lr_schedule == LrSchedule::kCosine &&
      !(options.min_learning_rate >= 0 && options.min_learning_rate <= options.learning_rate)) {
    throw InvalidArgument("training.min_learning_rate must lie in [0, training.learning_rate]");
  }
  if (!(options.clip_grad_norm >= 0)) {
    throw InvalidArgument("training.clip_grad_norm must not be negative (0 turns it off)");
  }
  if (!(options.label_smoothing >= 0 && options.label_smoothing < 1)) {
    throw InvalidArgument("training.label_smoothing must lie in [0, 1)");
  }
  if (options.class_weights.empty()) return;
  if (static_cast<int64_t>(options.class_weights.size()) != num_classes) {
    throw InvalidArgument("training.class_weights has " +
                          std::to_string(options.class_weights.size()) + " weights for " +
                          std::to_string(num_classes) + " classes");
  }
  bool any_positive = false;
  for (double weight : options.class_weights) {
    if (!(weight >= 0) || !std::isfinite(weight)) {
      throw InvalidArgument("training.class_weights must be finite and not negative");
    }
    any_positive = any_positive || weight > 0;
  }
  if (!any_positive) throw InvalidArgument("training.class_weights are all 0");
}

// Dropout and stochastic depth draw from the global generator; seeding it
// from (seed, epoch) makes an epoch's draws independent of earlier epochs,
// so a resumed run draws what an uninterrupted one would have.
uint64_t EpochSeed(uint64_t seed, int epoch) {
  return seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch);
}

void ToChannelsLast(torch::jit::Module& module) {
  for (const torch::Tensor& parameter : module.parameters(/*recurse=*/true)) {
    if (parameter.dim() == 4) {
      parameter.set_data(parameter.contiguous(torch::MemoryFormat::ChannelsLast));
    }
  }
}

}  // namespace

torch::Device ParseDevice(const std::string& name) {
  try {
    torch::Device device(name);
    if (device.is_cuda() && !torch::cuda::is_available()) {
      throw InvalidArgument("device " + name + " was asked for but CUDA is not available here");
    }
    return device;
  } catch (const c10::Error&) {
    throw InvalidArgument("device \"" + name + "\" is not a device name (cpu, cuda, cuda:N)");
  }
}

double LearningRateFactor(const TrainOptions& options, int64_t step, int64_t steps_per_epoch) {
  steps_per_epoch = std::max<int64_t>(steps_per_epoch, 1);
  const int64_t warmup_steps = static_cast<int64_t>(options.warmup_epochs) * steps_per_epoch;
  if (step < warmup_steps) {
    // The first batch already trains; the rate reaches its base at the
    // warmup's last batch.
    return static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  }
  const int64_t after_warmup = step - warmup_steps;
  switch (options.lr_schedule) {
    case LrSchedule::kConstant:
      break;
    case LrSchedule::kStep: {
      const int64_t decays = after_warmup / steps_per_epoch / std::max(options.step_epochs, 1);
      return std::pow(options.step_gamma, static_cast<double>(decays));
    }
    case LrSchedule::kCosine: {
      const int64_t last = static_cast<int64_t>(options.epochs) * steps_per_epoch - warmup_steps - 1;
      if (last <= 0) break;
      const double progress = std::min(1.0, static_cast<double>(after_warmup) / last);
      const double floor = options.min_learning_rate / options.learning_rate;
      return floor + (1 - floor) * 0.5 * (1 + std::cos(M_PI * progress));
    }
  }
  return 1.0;
}

Trainer::Trainer(TransferModel& model, TrainOptions options)
    : model_(model), options_(std::move(options)), device_(ParseDevice(options_.device)) {
  CheckOptions(options_, model_.num_classes());
  CheckStagedUnfreezing(options_);
  // The optimizer holds every parameter that will ever train, at its group's
  // rate: with stages, those of the last stage. Frozen ones get no gradient,
  // and the optimizers leave a parameter without one alone.
  model_.Configure(options_.strategy, options_.unfreeze_groups);
  model_.To(device_);
  if (options_.channels_last) ToChannelsLast(model_.classifier());
  optimizer_ = MakeOptimizer(model_, options_);
  for (const auto& group : optimizer_->param_groups()) {
    base_learning_rates_.push_back(group.options().get_lr());
  }
  trained_parameters_ = model_.HeadParameters();
  for (const torch::Tensor& parameter : model_.TrainableBackboneParameters()) {
    trained_parameters_.push_back(parameter);
  }
  if (!options_.class_weights.empty()) {
    class_weights_ = torch::tensor(options_.class_weights, torch::kFloat32).to(device_);
  }
}

void Trainer::ApplyStage(int epoch) {
  if (!IsStaged(options_)) return;
  const int groups = UnfrozenGroupsAt(options_, epoch);
  model_.Configure(groups == 0 ? Strategy::kFeatureExtraction : Strategy::kFineTune,
                   std::max(groups, 1));
}

void Trainer::SetLearningRateFactor(double factor) {
  auto& groups = optimizer_->param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    groups[i].options().set_lr(base_learning_rates_[i] * factor);
  }
}

double Trainer::head_learning_rate() const {
  return optimizer_->param_groups().front().options().get_lr();
}

torch::Tensor Trainer::ToDevice(const torch::Tensor& tensor, bool images) const {
  if (!device_.is_cuda()) return tensor;
  // Pinned host memory lets the copy overlap with kernels still running.
  torch::Tensor pinned = tensor.is_pinned() ? tensor : tensor.pin_memory();
  torch::Tensor moved = pinned.to(device_, /*non_blocking=*/true);
  if (images && options_.channels_last) {
    moved = moved.contiguous(torch::MemoryFormat::ChannelsLast);
  }
  return moved;
}

torch::Tensor Trainer::Loss(const Batch& batch, bool summed, torch::Tensor* logits,
                            torch::Tensor* labels) {
  torch::Tensor images = ToDevice(batch.images, /*images=*/true);
  *labels = ToDevice(batch.labels, /*images=*/false);
  {
    const AutocastScope autocast(options_.precision, device_);
    *logits = model_.Forward(images);
  }
  const torch::Tensor float_logits = AtLeastFloat32(*logits);
  auto loss_options =
      torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(options_.label_smoothing);
  if (class_weights_.defined()) loss_options.weight(class_weights_.to(float_logits.scalar_type()));
  if (summed) loss_options.reduction(torch::kSum);
  return torch::nn::functional::cross_entropy(float_logits, *labels, loss_options);
}

double Trainer::LossWeight(const Batch& batch) const {
  if (!class_weights_.defined()) return static_cast<double>(batch.labels.size(0));
  return class_weights_.cpu().index_select(0, batch.labels).sum().item<double>();
}

double Trainer::ReplicatedStep(const Batch& batch, double global_weight, int64_t* correct) {
  optimizer_->zero_grad();
  // Each replica's summed loss over the global batch's weight: the replicas'
  // gradients then add up to the gradient of the global batch's mean loss.
  double loss_share = 0;
  double local_correct = 0;
  if (batch.labels.size(0) > 0) {
    torch::Tensor logits;
    torch::Tensor labels;
    const torch::Tensor loss = Loss(batch, /*summed=*/true, &logits, &labels) / global_weight;
    loss.backward();
    loss_share = loss.item<double>();
    local_correct = static_cast<double>(logits.argmax(1).eq(labels).sum().item<int64_t>());
  }
  const std::vector<double> sums =
      replicas_->SumGradients(trained_parameters_, {loss_share, local_correct});
  if (options_.clip_grad_norm > 0) {
    torch::nn::utils::clip_grad_norm_(trained_parameters_, options_.clip_grad_norm);
  }
  optimizer_->step();
  *correct = static_cast<int64_t>(std::llround(sums[1]));
  return sums[0];
}

torch::Tensor Trainer::Step(const Batch& batch, int64_t* correct) {
  optimizer_->zero_grad();
  torch::Tensor logits;
  torch::Tensor labels;
  torch::Tensor loss = Loss(batch, /*summed=*/false, &logits, &labels);
  loss.backward();
  if (options_.clip_grad_norm > 0) {
    torch::nn::utils::clip_grad_norm_(trained_parameters_, options_.clip_grad_norm);
  }
  optimizer_->step();
  if (correct != nullptr) {
    *correct = logits.argmax(1).eq(labels).sum().item<int64_t>();
  }
  return loss.detach();
}

EvaluationStats Trainer::Evaluate(BatchSource& source, int epoch,
                                  std::optional<Precision> precision) {
  model_.SetTraining(false);
  const Precision used = precision.value_or(options_.precision);
  EvaluationStats stats =
      EvaluateLogits(source, epoch, model_.num_classes(), [this, used](const torch::Tensor& images) {
        const AutocastScope autocast(used, device_);
        return model_.Forward(ToDevice(images, /*images=*/true));
      });
  // Data-parallel: each replica evaluated its shard of the source.
  if (replicas_ != nullptr) replicas_->SumEvaluation(stats);
  return stats;
}

Trainer::RunResult Trainer::Run(BatchSource& train, BatchSource* validation,
                                TrainObserver& observer, int first_epoch) {
  std::vector<EpochStats> epochs;
  const int64_t steps_per_epoch = train.batches();
  for (int epoch = first_epoch; epoch <= options_.epochs; ++epoch) {
    const Clock::time_point epoch_start = Clock::now();
    ApplyStage(epoch);
    model_.SetTraining(true);
    train.StartEpoch(epoch);
    torch::manual_seed(EpochSeed(options_.seed, epoch));
    BatchProgress progress;
    progress.epoch = epoch;
    progress.epochs = options_.epochs;
    progress.batches = train.batches();
    double loss_sum = 0;
    int64_t correct_sum = 0;
    int64_t images = 0;
    while (true) {
      bool stop = observer.StopRequested();
      std::optional<Batch> batch;
      if (!stop) {
        const Clock::time_point wait_start = Clock::now();
        batch = train.Next();
        progress.data_wait_seconds += SecondsSince(wait_start);
      }
      // Replicas stop together: each step starts by sharing stop requests
      // (and the global batch's loss weight).
      ReplicaSync::StepStart start;
      if (replicas_ != nullptr) {
        start = replicas_->StartStep(batch ? LossWeight(*batch) : 0.0,
                                     batch ? batch->labels.size(0) : 0, stop);
        stop = start.stop;
      }
      if (stop) {
        return {epochs, RunOutcome::Cancelled("stopped on request in epoch " +
                                              std::to_string(epoch))};
      }
      if (!batch) break;
      SetLearningRateFactor(LearningRateFactor(
          options_, (epoch - 1) * steps_per_epoch + progress.batch, steps_per_epoch));
      int64_t correct = 0;
      int64_t batch_images = batch->labels.size(0);
      double loss = 0;
      if (replicas_ != nullptr) {
        // The global batch's figures, the same on every replica.
        loss = ReplicatedStep(*batch, start.loss_weight, &correct);
        batch_images = static_cast<int64_t>(std::llround(start.images));
      } else {
        loss = Step(*batch, &correct).item<double>();
      }
      ++progress.batch;
      if (!std::isfinite(loss)) {
        throw FailedPrecondition("loss became " + std::string(std::isnan(loss) ? "NaN" : "infinite") +
                                 " at epoch " + std::to_string(epoch) + ", batch " +
                                 std::to_string(progress.batch) +
                                 " (try a lower training.learning_rate)");
      }
      loss_sum += loss * static_cast<double>(batch_images);
      correct_sum += correct;
      images += batch_images;
      progress.mean_loss = loss_sum / static_cast<double>(images);
      progress.images_per_second = static_cast<double>(images) / SecondsSince(epoch_start);
      observer.OnBatch(progress);
    }
    const double train_seconds = SecondsSince(epoch_start);
    if (images == 0) {
      throw FailedPrecondition("epoch " + std::to_string(epoch) +
                               " had no readable training images");
    }

    EpochStats stats;
    stats.epoch = epoch;
    stats.train_images = images;
    stats.train_loss = loss_sum / static_cast<double>(images);
    stats.train_accuracy = static_cast<double>(correct_sum) / static_cast<double>(images);
    stats.images_per_second = static_cast<double>(images) / train_seconds;
    stats.learning_rate = head_learning_rate();
    // BatchNorm statistics move with each replica's own slices; rank 0's
    // are the ones validated, saved and exported everywhere.
    if (replicas_ != nullptr) {
      std::vector<torch::Tensor> buffers;
      for (const torch::Tensor& buffer : model_.classifier().buffers(/*recurse=*/true)) {
        buffers.push_back(buffer);
      }
      replicas_->BroadcastTensors(buffers);
    }
    if (validation != nullptr && validation->size() > 0) {
      const EvaluationStats evaluation = Evaluate(*validation, epoch);
      stats.val_loss = evaluation.loss;
      stats.val_accuracy = evaluation.accuracy;
      stats.val_macro_precision = evaluation.macro_precision;
      stats.val_macro_recall = evaluation.macro_recall;
      stats.val_macro_f1 = evaluation.macro_f1;
      stats.val_images = evaluation.images;
      stats.val_top_k_accuracy = evaluation.top_k_accuracy;
      stats.val_weighted_f1 = evaluation.confusion.weighted_f1();
    }
    stats.seconds = SecondsSince(epoch_start);
    if (replicas_ != nullptr) replicas_->AgreeOnEpoch(stats);
    epochs.push_back(stats);
    observer.OnEpoch(stats);
    if (observer.PauseRequested()) {
      return {epochs, RunOutcome::Paused("paused after epoch " + std::to_string(epoch))};
    }
    if (observer.TrainingDone()) break;
  }
  return {epochs, RunOutcome{}};
}

void Trainer::SaveCheckpoint(const std::string& dir, const std::vector<EpochStats>& done) const {
  // Written beside the final place and renamed over it, so a crash leaves
  // either the old checkpoint or the new one, never half of one.
  const fs::path final_dir = fs::path(dir) / "checkpoint";
  const fs::path temp_dir = fs::path(dir) / "checkpoint.tmp";
  fs::remove_all(temp_dir);
  fs::create_directories(temp_dir);
  nlohmann::json checksums = nlohmann::json::object();
  const auto record = [&checksums](const char* name, const WrittenFile& written) {
    checksums[name] = {{"size", written.size}, {"fnv1a", written.fnv1a}};
  };
  record(kCheckpointFiles[0],
         WriteFileAtomically((temp_dir / kCheckpointFiles[0]).string(),
                             [this](std::ostream& out) {
                               SaveTrainedTensors(model_.classifier(), out);
                             }));
  record(kCheckpointFiles[1],
         WriteFileAtomically((temp_dir / kCheckpointFiles[1]).string(),
                             [this](std::ostream& out) { torch::save(*optimizer_, out); }));
  record(kCheckpointFiles[2],
         WriteFileAtomically((temp_dir / kCheckpointFiles[2]).string(), EpochStatsToJson(done)));
  WriteFileAtomically((temp_dir / kCheckpointFiles[3]).string(), checksums.dump(2));
  // Kept until the new one is in place, so that a crash between the two
  // renames still leaves a whole checkpoint (LoadCheckpoint looks here too).
  const fs::path previous_dir = fs::path(dir) / "checkpoint.old";
  fs::remove_all(previous_dir);
  if (fs::exists(final_dir)) fs::rename(final_dir, previous_dir);
  fs::rename(temp_dir, final_dir);
  SyncFolder(dir);
  fs::remove_all(previous_dir);
}

namespace {

std::string ReadWholeFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot be read");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// Why the files of `checkpoint` differ from the sizes and checksums saved
// with them; empty when they match. A checkpoint saved without checksums
// is judged by whether it loads.
std::string ChecksumMismatch(const fs::path& checkpoint) {
  const fs::path recorded_path = checkpoint / kCheckpointFiles.back();
  std::error_code error;
  if (!fs::exists(recorded_path, error)) return "";
  nlohmann::json recorded;
  try {
    recorded = nlohmann::json::parse(ReadWholeFile(recorded_path));
  } catch (const std::exception&) {
    return std::string(kCheckpointFiles.back()) + " does not read as JSON";
  }
  for (size_t i = 0; i + 1 < kCheckpointFiles.size(); ++i) {
    const std::string name = kCheckpointFiles[i];
    try {
      const uint64_t size = recorded.at(name).at("size").get<uint64_t>();
      const uint64_t fnv1a = recorded.at(name).at("fnv1a").get<uint64_t>();
      const std::string bytes = ReadWholeFile(checkpoint / name);
      if (bytes.size() != size) {
        return name + " holds " + std::to_string(bytes.size()) + " bytes, not " +
               std::to_string(size);
      }
      if (Fnv1a(bytes) != fnv1a) return name + " does not match its checksum";
    } catch (const nlohmann::json::exception&) {
      return std::string(kCheckpointFiles.back()) + " has no entry for " + name;
    } catch (const std::exception& failure) {
      return name + " " + failure.what();
    }
  }
  return "";
}

std::string FirstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

std::vector<EpochStats> Trainer::LoadCheckpoint(
    const std::string& dir, const std::function<void(const std::string&)>& note) {
  const auto tell = [&note](const std::string& line) {
    if (note) note(line);
  };
  std::vector<fs::path> damaged;
  const auto remove_damaged = [&damaged] {
    std::error_code ignored;
    for (const fs::path& path : damaged) fs::remove_all(path, ignored);
  };
  for (const char* name : {"checkpoint", "checkpoint.old"}) {
    const fs::path checkpoint = fs::path(dir) / name;
    std::error_code error;
    if (!fs::exists(checkpoint / kCheckpointFiles[2], error) &&
        !fs::exists(checkpoint / kCheckpointFiles.back(), error)) {
      // Nothing was ever written here (a missing epochs.json alone, with
      // checksums beside it, is damage and is caught below).
      if (fs::exists(checkpoint, error)) damaged.push_back(checkpoint);
      continue;
    }
    std::string problem = ChecksumMismatch(checkpoint);
    std::vector<EpochStats> epochs;
    if (problem.empty()) {
      // Everything that can fail on a damaged file is read before the model
      // or the optimizer changes, so a rejected checkpoint leaves them new.
      const char* reading = kCheckpointFiles[2];
      try {
        epochs = EpochStatsFromJson(ReadWholeFile(checkpoint / reading));
        reading = kCheckpointFiles[1];
        torch::serialize::InputArchive optimizer_state;
        optimizer_state.load_from((checkpoint / reading).string(), device_);
        reading = kCheckpointFiles[0];
        LoadTrainedTensors((checkpoint / reading).string(), model_.classifier(), device_);
        reading = kCheckpointFiles[1];
        optimizer_->load(optimizer_state);
      } catch (const std::exception& failure) {
        problem = std::string(reading) + ": " + FirstLine(failure.what());
      }
    }
    if (!problem.empty()) {
      tell("checkpoint " + checkpoint.string() + " is damaged (" + problem + "); not used");
      damaged.push_back(checkpoint);
      continue;
    }
    remove_damaged();
    if (!damaged.empty()) {
      tell("resuming from the previous checkpoint " + checkpoint.string() + " after epoch " +
           std::to_string(epochs.size()));
    }
    return epochs;
  }
  if (!damaged.empty()) {
    remove_damaged();
    tell("no usable checkpoint in " + dir + "; the attempt starts over from epoch 1");
  }
  return {};
}

}  // namespace tl::engine
