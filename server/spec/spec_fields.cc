// The table of the JobSpec's numeric, bool and enum fields (spec_fields.h).
// A new field of that kind gets its row here, and its row in docs/API.md's
// JobSpec table (ctest docs.spec_table compares the two).
#include <algorithm>
#include <string>
#include <vector>

#include "server/spec/spec_fields.h"

namespace tl::server {
namespace {

using ::tl::v1::JobSpec;
using ::tl::v1::TrainingSpec;
using EarlyStopping = ::tl::v1::TrainingSpec::EarlyStopping;

// More GPUs than one machine holds today, and more replicas than a job is
// likely to want: bounds that catch a typo at submit.
constexpr int kMaxGpuCount = 64;
constexpr int kMaxReplicas = 64;
constexpr int kMaxEpochs = 1000;
constexpr double kMaxLearningRate = 10;

// Fields the worker sizes from the number of training images when the spec
// leaves them unset (worker/engine/job/data_sizing.h).
constexpr char kSizedByTheData[] = "sized by the data (see Data-sized defaults)";

// ---------------------------------------------------------------- conditions

SpecCondition UnderStrategies(std::vector<TrainingSpec::Strategy> strategies) {
  SpecCondition condition;
  condition.holds = [strategies](const JobSpec& spec) {
    return std::count(strategies.begin(), strategies.end(), spec.training().strategy()) > 0;
  };
  std::string names;
  for (size_t i = 0; i < strategies.size(); ++i) {
    const std::string name = TrainingSpec::Strategy_Name(strategies[i]);
    const char* separator = i == 0 ? "" : " and ";
    names += separator + name;
    condition.written += separator + ("`" + name + "`");
  }
  condition.setting =
      "the " + names + (strategies.size() == 1 ? " strategy" : " strategies");
  condition.written += " only";
  return condition;
}

SpecCondition UnderSchedule(TrainingSpec::LrSchedule schedule) {
  const std::string name = TrainingSpec::LrSchedule_Name(schedule);
  SpecCondition condition;
  condition.holds = [schedule](const JobSpec& spec) {
    return spec.training().lr_schedule() == schedule;
  };
  condition.setting = "the " + name + " lr_schedule";
  condition.instead = [](const JobSpec& spec) {
    return TrainingSpec::LrSchedule_Name(spec.training().lr_schedule());
  };
  condition.written = "`" + name + "` only";
  return condition;
}

SpecCondition UnderOptimizer(TrainingSpec::Optimizer optimizer) {
  const std::string name = TrainingSpec::Optimizer_Name(optimizer);
  SpecCondition condition;
  condition.holds = [optimizer](const JobSpec& spec) {
    return spec.training().optimizer() == optimizer;
  };
  condition.setting = "the " + name + " optimizer";
  condition.written = "`" + name + "` only";
  return condition;
}

// ---------------------------------------------------------------- where a field means something

bool HasEarlyStopping(const JobSpec& spec) { return spec.training().has_early_stopping(); }

bool HasRandomResizedCrop(const JobSpec& spec) {
  return spec.preprocessing().has_random_resized_crop();
}

// A training job that holds out a slice of its training images: an evaluation
// job validates nothing, and a validation set (val_dir, val_csv) replaces the slice.
bool HoldsOutValidationSlice(const JobSpec& spec) {
  return !spec.has_evaluate() && spec.dataset().val_dir().empty() &&
         spec.dataset().val_csv().empty();
}

// ---------------------------------------------------------------- defaults that depend on others

// Adam's rates by how much of the network trains: a new head alone takes
// large steps, a pretrained backbone small ones (measured on two tasks and
// five sizes, docs/RESULTS.md "How the defaults were chosen"). SGD's raw
// gradient steps want a larger rate than Adam's normalised ones. Under AUTO
// the strategy it chooses decides, so nothing is filled in. The engine
// states the same table for AUTO's choice
// (worker/engine/job/auto_strategy.h, DefaultLearningRate).
std::optional<double> LearningRateFor(const JobSpec& spec) {
  if (spec.training().optimizer() == TrainingSpec::SGD) return 0.01;
  switch (spec.training().strategy()) {
    case TrainingSpec::AUTO:
      return std::nullopt;
    case TrainingSpec::FEATURE_EXTRACTION:
      return 0.01;
    case TrainingSpec::FULL:
      return 0.001;
    default:
      return 0.003;
  }
}

// FULL trains the backbone as the head; FINE_TUNE moves pretrained weights
// gently. Under AUTO the strategy it chooses decides, so nothing is filled in.
std::optional<double> BackboneLrScaleFor(const JobSpec& spec) {
  switch (spec.training().strategy()) {
    case TrainingSpec::AUTO:
      return std::nullopt;
    case TrainingSpec::FULL:
      return 1.0;
    default:
      return 0.1;
  }
}

// AdamW's decay is decoupled from the gradient and meant to be on.
std::optional<double> WeightDecayFor(const JobSpec& spec) {
  return spec.training().optimizer() == TrainingSpec::ADAMW ? 0.01 : 0.0;
}

// Three steps over the epochs after warmup. Epochs left to the data are
// known on the worker only, which applies the same rule there
// (worker/engine/job/data_sizing.h, DefaultStepEpochs).
std::optional<double> StepEpochsFor(const JobSpec& spec) {
  if (!spec.training().has_epochs()) return std::nullopt;
  return std::max(1, (spec.training().epochs() - spec.training().warmup_epochs()) / 3);
}

// Loss falls as the model improves; accuracy and F1 rise.
std::optional<double> EarlyStoppingModeFor(const JobSpec& spec) {
  return spec.training().early_stopping().metric() == EarlyStopping::VAL_LOSS
             ? EarlyStopping::MIN
             : EarlyStopping::MAX;
}

std::vector<SpecField> BuildTable() {
  // Ends of intervals that depend on other fields, which the table checks first.
  // Epochs left to the data bound nothing at submit but the largest count;
  // the worker's sized epochs leave room after the warmup and head-only ones.
  SpecLimit epochs(
      [](const JobSpec& spec) -> std::optional<double> {
        if (!spec.training().has_epochs()) return std::nullopt;
        return spec.training().epochs();
      },
      "`epochs`");
  epochs.constant = kMaxEpochs;
  SpecLimit epochs_less_one(
      [](const JobSpec& spec) -> std::optional<double> {
        if (!spec.training().has_epochs()) return std::nullopt;
        return spec.training().epochs() - 1;
      },
      "`epochs` - 1");
  epochs_less_one.constant = kMaxEpochs - 1;
  // Under AUTO the rate may be left to the chosen strategy: then only the
  // largest rate bounds what depends on it.
  SpecLimit learning_rate(
      [](const JobSpec& spec) -> std::optional<double> {
        if (!spec.training().has_learning_rate()) return std::nullopt;
        return spec.training().learning_rate();
      },
      "`learningRate`");
  learning_rate.constant = kMaxLearningRate;
  // The crop is cut from the resized image, so that cannot be smaller.
  const SpecLimit resize_at_least(
      [](const JobSpec& spec) { return std::max(8, spec.preprocessing().image_size()); },
      "max(8, `imageSize`)");
  const SpecLimit min_scale(
      [](const JobSpec& spec) { return spec.preprocessing().random_resized_crop().min_scale(); },
      "`minScale`");
  const SpecLimit min_aspect_ratio(
      [](const JobSpec& spec) {
        return spec.preprocessing().random_resized_crop().min_aspect_ratio();
      },
      "`minAspectRatio`");
  const SpecCondition fine_tune_or_auto =
      UnderStrategies({TrainingSpec::FINE_TUNE, TrainingSpec::AUTO});
  const SpecCondition fine_tune = UnderStrategies({TrainingSpec::FINE_TUNE});
  const std::string crop = "preprocessing.random_resized_crop.";
  const std::string stopping = "training.early_stopping.";
  return {
      SpecField("priority").Within(-1000, 1000),

      SpecField("training.strategy")
          .Defaults(TrainingSpec::FINE_TUNE)
          .UnknownValue("is not a known strategy"),
      SpecField("training.optimizer")
          .Defaults(TrainingSpec::ADAM)
          .UnknownValue("is not a known optimizer"),
      // AUTO may choose FINE_TUNE, so it keeps unfreeze_groups for that.
      SpecField("training.unfreeze_groups").OnlyUnder(fine_tune_or_auto).Defaults(2).Within(1, 64),
      SpecField("training.epochs")
          .UnsetMeans(kSizedByTheData)
          .Within(1, kMaxEpochs)
          .PositiveFirst(),
      SpecField("training.batch_size")
          .UnsetMeans(kSizedByTheData)
          .Within(1, 4096)
          .PositiveFirst(),
      SpecField("training.learning_rate")
          .Defaults(LearningRateFor,
                    "`ADAM`, `ADAMW`: 0.01 for `FEATURE_EXTRACTION`, 0.003 for `FINE_TUNE`, "
                    "0.001 for `FULL`; `SGD`: 0.01; `AUTO`: unset, the rate its probe chose")
          .Within(1e-12, kMaxLearningRate)
          .PositiveFirst(),
      SpecField("training.backbone_lr_scale")
          .Defaults(BackboneLrScaleFor,
                    "1 for `FULL`, else 0.1; `AUTO`: unset, the chosen strategy's")
          .Within(0, 100),
      SpecField("training.momentum").Defaults(0.9).Within(0, 0.999),
      SpecField("training.weight_decay")
          .Defaults(WeightDecayFor, "0; 0.01 for `ADAMW`")
          .Within(0, 1),
      SpecField("training.seed").Defaults(1),
      SpecField("training.threads").Within(0, 256),
      // Needs a momentum above 0 too (spec_cross_field_rules.cc).
      SpecField("training.nesterov").OnlyUnder(UnderOptimizer(TrainingSpec::SGD)),
      SpecField("training.lr_schedule")
          .Defaults(TrainingSpec::CONSTANT)
          .UnknownValue("is not a known schedule"),
      SpecField("training.warmup_epochs").Within(0, epochs),
      SpecField("training.step_epochs")
          .OnlyUnder(UnderSchedule(TrainingSpec::STEP))
          .Defaults(StepEpochsFor, "a third of the epochs after warmup, at least 1")
          .Within(1, 1000),
      SpecField("training.step_gamma")
          .OnlyUnder(UnderSchedule(TrainingSpec::STEP))
          .Defaults(0.1)
          .Within(Open(0), 1),
      SpecField("training.min_learning_rate")
          .OnlyUnder(UnderSchedule(TrainingSpec::COSINE))
          .Defaults(0)
          .Within(0, learning_rate),
      SpecField("training.clip_grad_norm").Within(0, 1e6),
      SpecField("training.label_smoothing").Within(0, Open(1)),
      SpecField("training.balanced_class_weights"),
      // Staged unfreezing: the backbone gets at least one epoch.
      SpecField("training.head_only_epochs").OnlyUnder(fine_tune).Within(0, epochs_less_one),
      SpecField("training.unfreeze_every_epochs").OnlyUnder(fine_tune).Within(0, 1000),
      SpecField(stopping + "metric")
          .AppliesWhen(HasEarlyStopping)
          .Defaults(EarlyStopping::VAL_LOSS)
          .UnknownValue("is not a known metric"),
      SpecField(stopping + "mode")
          .AppliesWhen(HasEarlyStopping)
          .Defaults(EarlyStoppingModeFor, "`MIN` for `VAL_LOSS`, else `MAX`")
          .UnknownValue("is not MIN or MAX"),
      SpecField(stopping + "patience").AppliesWhen(HasEarlyStopping).Defaults(5).Within(1, 1000),
      SpecField(stopping + "min_delta").AppliesWhen(HasEarlyStopping).Within(0, 1000),
      // AUTO: the worker chooses by its device (engine/train/precision.h).
      SpecField("training.precision")
          .Defaults(tl::v1::AUTO)
          .UnknownValue("is not a known precision"),
      SpecField("training.channels_last"),

      SpecField("preprocessing.image_size").Within(8, 1024).ZeroMeansUnset(),
      SpecField("preprocessing.resize_size").Within(resize_at_least, 2048).ZeroMeansUnset(),
      // Off unless asked for: mirrored digits and text are other images, and
      // flips gained nothing on the tasks measured (docs/RESULTS.md).
      SpecField("preprocessing.horizontal_flip").Defaults(false),
      SpecField(crop + "min_scale")
          .AppliesWhen(HasRandomResizedCrop)
          .Defaults(0.08)
          .Within(0.001, 1),
      SpecField(crop + "max_scale")
          .AppliesWhen(HasRandomResizedCrop)
          .Defaults(1)
          .Within(min_scale, 1),
      SpecField(crop + "min_aspect_ratio")
          .AppliesWhen(HasRandomResizedCrop)
          .Defaults(3.0 / 4.0)
          .Within(0.1, 10),
      SpecField(crop + "max_aspect_ratio")
          .AppliesWhen(HasRandomResizedCrop)
          .Defaults(4.0 / 3.0)
          .Within(min_aspect_ratio, 10),
      SpecField("preprocessing.rotation_degrees").Within(0, 180),
      SpecField("preprocessing.brightness").Within(0, 1),
      SpecField("preprocessing.contrast").Within(0, 1),
      SpecField("preprocessing.saturation").Within(0, 1),

      SpecField("resources.gpu_count").Within(0, kMaxGpuCount),
      SpecField("resources.min_gpu_memory_bytes").AtLeast(0),
      SpecField("resources.replicas").Within(0, kMaxReplicas),

      SpecField("dataset.val_fraction")
          .AppliesWhen(HoldsOutValidationSlice)
          .UnsetMeans(kSizedByTheData)
          .Within(0, 0.9),
  };
}

}  // namespace

const std::vector<SpecField>& SpecFields() {
  static const std::vector<SpecField>* const fields = new std::vector<SpecField>(BuildTable());
  return *fields;
}

}  // namespace tl::server
