#include "worker/engine/trainer.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "worker/engine/classification_metrics.h"
#include "worker/engine/errors.h"

namespace tl::engine {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Turns bf16 autocast on for CUDA ops for its lifetime. The autocast API
// changed names in LibTorch 2.4; both spellings are kept so that the engine
// builds against Debian's 1.13 and a CUDA machine's 2.x.
class CudaAutocastScope {
 public:
  explicit CudaAutocastScope(bool enable) : enabled_(enable) {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
  }
  ~CudaAutocastScope() {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
    at::autocast::set_enabled(false);
#endif
    // Casted weight copies are cached per scope; drop them with it.
    at::autocast::clear_cache();
  }
  CudaAutocastScope(const CudaAutocastScope&) = delete;
  CudaAutocastScope& operator=(const CudaAutocastScope&) = delete;

 private:
  bool enabled_;
};

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
  if (options.optimizer == OptimizerKind::kSgd) {
    return MakeGrouped<torch::optim::SGD>(model, options, [&](double lr) {
      return std::make_unique<torch::optim::SGDOptions>(
          torch::optim::SGDOptions(lr).momentum(options.momentum).weight_decay(options.weight_decay));
    });
  }
  return MakeGrouped<torch::optim::Adam>(model, options, [&](double lr) {
    return std::make_unique<torch::optim::AdamOptions>(
        torch::optim::AdamOptions(lr).weight_decay(options.weight_decay));
  });
}

// The loss of reduced-precision logits (autocast) is computed in fp32;
// fp32 and fp64 logits keep their precision.
torch::Tensor AtLeastFloat32(const torch::Tensor& logits) {
  return logits.scalar_type() == torch::kFloat64 ? logits : logits.to(torch::kFloat32);
}

void ToChannelsLast(torch::jit::Module& module) {
  for (const torch::Tensor& parameter : module.parameters(/*recurse=*/true)) {
    if (parameter.dim() == 4) {
      parameter.set_data(parameter.contiguous(torch::MemoryFormat::ChannelsLast));
    }
  }
}

}  // namespace

Trainer::Trainer(TransferModel& model, TrainOptions options)
    : model_(model), options_(std::move(options)), device_(ParseDevice(options_.device)) {
  if (options_.precision == Precision::kBFloat16 && !device_.is_cuda()) {
    throw InvalidArgument("training.precision BF16 needs a CUDA device");
  }
  model_.Configure(options_.strategy, options_.unfreeze_groups);
  model_.To(device_);
  if (options_.channels_last) ToChannelsLast(model_.classifier());
  optimizer_ = MakeOptimizer(model_, options_);
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

torch::Tensor Trainer::Step(const Batch& batch, int64_t* correct) {
  torch::Tensor images = ToDevice(batch.images, /*images=*/true);
  torch::Tensor labels = ToDevice(batch.labels, /*images=*/false);
  optimizer_->zero_grad();
  torch::Tensor logits;
  {
    CudaAutocastScope autocast(options_.precision == Precision::kBFloat16);
    logits = model_.Forward(images);
  }
  torch::Tensor loss = torch::nn::functional::cross_entropy(AtLeastFloat32(logits), labels);
  loss.backward();
  optimizer_->step();
  if (correct != nullptr) {
    *correct = logits.argmax(1).eq(labels).sum().item<int64_t>();
  }
  return loss.detach();
}

EvaluationStats Trainer::Evaluate(BatchSource& source, int epoch) {
  torch::NoGradGuard no_grad;
  model_.SetTraining(false);
  source.StartEpoch(epoch);
  ConfusionMatrix confusion(model_.num_classes());
  double loss_sum = 0;
  while (std::optional<Batch> batch = source.Next()) {
    torch::Tensor images = ToDevice(batch->images, /*images=*/true);
    torch::Tensor labels = ToDevice(batch->labels, /*images=*/false);
    torch::Tensor logits;
    {
      CudaAutocastScope autocast(options_.precision == Precision::kBFloat16);
      logits = model_.Forward(images);
    }
    loss_sum += torch::nn::functional::cross_entropy(
                    AtLeastFloat32(logits), labels,
                    torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    confusion.Add(logits.argmax(1), labels);
  }
  EvaluationStats stats;
  stats.images = confusion.total();
  stats.loss = stats.images > 0 ? loss_sum / static_cast<double>(stats.images) : 0.0;
  stats.accuracy = confusion.accuracy();
  stats.macro_precision = confusion.macro_precision();
  stats.macro_recall = confusion.macro_recall();
  stats.macro_f1 = confusion.macro_f1();
  return stats;
}

std::vector<EpochStats> Trainer::Run(BatchSource& train, BatchSource* validation,
                                     TrainObserver& observer, int first_epoch) {
  std::vector<EpochStats> epochs;
  for (int epoch = first_epoch; epoch <= options_.epochs; ++epoch) {
    const Clock::time_point epoch_start = Clock::now();
    model_.SetTraining(true);
    train.StartEpoch(epoch);
    BatchProgress progress;
    progress.epoch = epoch;
    progress.epochs = options_.epochs;
    progress.batches = train.batches();
    double loss_sum = 0;
    int64_t correct_sum = 0;
    int64_t images = 0;
    while (true) {
      if (observer.StopRequested()) {
        throw EngineError(ErrorKind::kCancelled,
                          "stopped on request in epoch " + std::to_string(epoch));
      }
      std::optional<Batch> batch = train.Next();
      if (!batch) break;
      int64_t correct = 0;
      const double loss = Step(*batch, &correct).item<double>();
      ++progress.batch;
      if (!std::isfinite(loss)) {
        throw FailedPrecondition("loss became " + std::string(std::isnan(loss) ? "NaN" : "infinite") +
                                 " at epoch " + std::to_string(epoch) + ", batch " +
                                 std::to_string(progress.batch) +
                                 " (try a lower training.learning_rate)");
      }
      const int64_t batch_images = batch->labels.size(0);
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
    if (validation != nullptr && validation->size() > 0) {
      const EvaluationStats evaluation = Evaluate(*validation, epoch);
      stats.val_loss = evaluation.loss;
      stats.val_accuracy = evaluation.accuracy;
      stats.val_macro_precision = evaluation.macro_precision;
      stats.val_macro_recall = evaluation.macro_recall;
      stats.val_macro_f1 = evaluation.macro_f1;
      stats.val_images = evaluation.images;
    }
    stats.seconds = SecondsSince(epoch_start);
    epochs.push_back(stats);
    observer.OnEpoch(stats);
  }
  return epochs;
}

void Trainer::SaveCheckpoint(const std::string& dir, const std::vector<EpochStats>& done) const {
  // Written beside the final place and renamed over it, so a crash leaves
  // either the old checkpoint or the new one, never half of one.
  const fs::path final_dir = fs::path(dir) / "checkpoint";
  const fs::path temp_dir = fs::path(dir) / "checkpoint.tmp";
  fs::remove_all(temp_dir);
  fs::create_directories(temp_dir);
  model_.classifier().save((temp_dir / "model.pt").string());
  torch::save(*optimizer_, (temp_dir / "optimizer.pt").string());
  std::ofstream((temp_dir / "epochs.json").string()) << EpochStatsToJson(done);
  // Kept until the new one is in place, so that a crash between the two
  // renames still leaves a whole checkpoint (LoadCheckpoint looks here too).
  const fs::path previous_dir = fs::path(dir) / "checkpoint.old";
  fs::remove_all(previous_dir);
  if (fs::exists(final_dir)) fs::rename(final_dir, previous_dir);
  fs::rename(temp_dir, final_dir);
  fs::remove_all(previous_dir);
}

std::vector<EpochStats> Trainer::LoadCheckpoint(const std::string& dir) {
  fs::path checkpoint = fs::path(dir) / "checkpoint";
  if (!fs::exists(checkpoint / "epochs.json")) checkpoint = fs::path(dir) / "checkpoint.old";
  if (!fs::exists(checkpoint / "epochs.json")) return {};
  torch::jit::Module saved = torch::jit::load((checkpoint / "model.pt").string(), device_);
  std::map<std::string, torch::Tensor> saved_tensors;
  for (const auto& named : saved.named_parameters(/*recurse=*/true)) {
    saved_tensors[named.name] = named.value;
  }
  for (const auto& named : saved.named_buffers(/*recurse=*/true)) {
    saved_tensors[named.name] = named.value;
  }
  torch::NoGradGuard no_grad;
  auto restore = [&](const std::string& name, const torch::Tensor& tensor) {
    auto it = saved_tensors.find(name);
    if (it == saved_tensors.end() || !it->second.sizes().equals(tensor.sizes())) {
      throw FailedPrecondition("checkpoint in " + checkpoint.string() +
                               " does not match the model at " + name);
    }
    tensor.copy_(it->second);
  };
  for (const auto& named : model_.classifier().named_parameters(/*recurse=*/true)) {
    restore(named.name, named.value);
  }
  for (const auto& named : model_.classifier().named_buffers(/*recurse=*/true)) {
    restore(named.name, named.value);
  }
  torch::load(*optimizer_, (checkpoint / "optimizer.pt").string(), device_);
  std::ifstream in((checkpoint / "epochs.json").string());
  std::stringstream text;
  text << in.rdbuf();
  return EpochStatsFromJson(text.str());
}

std::string EpochStatsToJson(const std::vector<EpochStats>& epochs) {
  nlohmann::json list = nlohmann::json::array();
  for (const EpochStats& e : epochs) {
    list.push_back({{"epoch", e.epoch},
                    {"train_loss", e.train_loss},
                    {"train_accuracy", e.train_accuracy},
                    {"val_loss", e.val_loss},
                    {"val_accuracy", e.val_accuracy},
                    {"val_macro_precision", e.val_macro_precision},
                    {"val_macro_recall", e.val_macro_recall},
                    {"val_macro_f1", e.val_macro_f1},
                    {"images_per_second", e.images_per_second},
                    {"seconds", e.seconds},
                    {"learning_rate", e.learning_rate},
                    {"train_images", e.train_images},
                    {"val_images", e.val_images}});
  }
  return nlohmann::json({{"epochs", list}}).dump(2);
}

std::vector<EpochStats> EpochStatsFromJson(const std::string& json_text) {
  std::vector<EpochStats> epochs;
  const nlohmann::json root = nlohmann::json::parse(json_text);
  for (const nlohmann::json& raw : root.at("epochs")) {
    // JSON has no NaN: nlohmann writes a non-finite number as null.
    nlohmann::json e = raw;
    for (auto& [key, value] : e.items()) {
      if (value.is_null()) value = std::numeric_limits<double>::quiet_NaN();
    }
    EpochStats stats;
    stats.epoch = e.at("epoch").get<int>();
    stats.train_loss = e.at("train_loss").get<double>();
    stats.train_accuracy = e.at("train_accuracy").get<double>();
    stats.val_loss = e.at("val_loss").get<double>();
    stats.val_accuracy = e.at("val_accuracy").get<double>();
    stats.val_macro_precision = e.at("val_macro_precision").get<double>();
    stats.val_macro_recall = e.at("val_macro_recall").get<double>();
    stats.val_macro_f1 = e.at("val_macro_f1").get<double>();
    stats.images_per_second = e.at("images_per_second").get<double>();
    stats.seconds = e.at("seconds").get<double>();
    stats.learning_rate = e.at("learning_rate").get<double>();
    stats.train_images = e.at("train_images").get<int64_t>();
    stats.val_images = e.at("val_images").get<int64_t>();
    epochs.push_back(stats);
  }
  return epochs;
}

}  // namespace tl::engine
