#include "server/spec/spec_validation.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/confined_path.h"
#include "common/image_files.h"
#include "server/spec/caller_text.h"
#include "server/spec/csv_dataset_check.h"

namespace tl::server {
namespace {

// More GPUs than one machine holds today; a bound so that a typo is caught at submit.
constexpr int kMaxGpuCount = 64;
constexpr int kMaxReplicas = 64;
// Owners one job may be shared with by name.
constexpr int kMaxShareWith = 100;

namespace fs = std::filesystem;
using ::tl::v1::Job;
using ::tl::v1::JobSpec;
using ::tl::v1::TrainingSpec;

absl::Status Invalid(const std::string& field, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", problem));
}

template <typename Number>
absl::Status CheckRange(const std::string& field, Number value, Number low, Number high) {
  if (!(value >= low && value <= high)) {  // also refuses NaN
    std::ostringstream message;
    message << "is " << value << "; it must lie in [" << low << ", " << high << "]";
    return Invalid(field, message.str());
  }
  return absl::OkStatus();
}

// For the bounds CheckRange cannot say: an open end. `interval` is how the
// message writes it, "(0, 1]".
absl::Status OutOfInterval(const std::string& field, double value, const std::string& interval) {
  std::ostringstream message;
  message << "is " << value << "; it must lie in " << interval;
  return Invalid(field, message.str());
}

// The number of class folders of `dir` that hold at least one image. Stops
// looking inside a class at its first image, so that a large dataset costs
// one directory listing per class.
int CountClassFoldersWithImages(const fs::path& dir) {
  int classes = 0;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    if (!entry.is_directory() || entry.path().filename().string().front() == '.') continue;
    for (const fs::directory_entry& file : fs::directory_iterator(entry.path(), error)) {
      if (file.is_regular_file() && HasImageExtension(file.path().filename().string())) {
        ++classes;
        break;
      }
    }
  }
  return classes;
}

absl::StatusOr<std::string> CheckImageFolder(const std::string& field, const std::string& path,
                                             int min_classes, const SpecContext& context) {
  absl::StatusOr<ConfinedPath> confined = ConfinePath(context.data_root, path, field);
  if (!confined.ok()) return confined.status();
  if (!fs::is_directory(confined->absolute)) {
    return Invalid(field, absl::StrCat("\"", path, "\": folder ", confined->absolute,
                                       " does not exist"));
  }
  // A class folder may be a symbolic link, but not one that leads out of the data root.
  std::error_code error;
  const fs::path root = fs::weakly_canonical(context.data_root, error);
  for (const fs::directory_entry& entry : fs::directory_iterator(confined->absolute, error)) {
    if (!entry.is_symlink(error)) continue;
    const fs::path target = fs::weakly_canonical(entry.path(), error);
    const fs::path inside = target.lexically_relative(root);
    if (error || inside.empty() || *inside.begin() == "..") {
      return Invalid(field, absl::StrCat("\"", path, "\": class folder ",
                                         entry.path().filename().string(),
                                         " is a symbolic link leading out of the data root"));
    }
  }
  const int classes = CountClassFoldersWithImages(confined->absolute);
  if (classes < min_classes) {
    return Invalid(field, absl::StrCat("\"", path, "\" has ", classes,
                                       " class folder(s) with images; at least ", min_classes,
                                       " are needed (one subfolder of images per class)"));
  }
  return confined->relative;
}

absl::Status CheckManifestFile(const std::string& field, const fs::path& backbone) {
  fs::path manifest = backbone;
  manifest.replace_extension(".json");
  std::ifstream in(manifest);
  if (!in) {
    return Invalid(field, absl::StrCat("backbone ", backbone.string(), " has no manifest ",
                                       manifest.string()));
  }
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json parsed = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("format") ||
      parsed["format"] != "tl.backbone.v1") {
    return Invalid(field, absl::StrCat("manifest ", manifest.string(),
                                       " is not a tl.backbone.v1 JSON document"));
  }
  return absl::OkStatus();
}

// The job a spec names as the source of its backbone or model, if the submitter may use it.
// A user gets the same answer for another owner's unshared job as for one that does not exist,
// so that ids of others' jobs cannot be probed.
absl::StatusOr<Job> FindSourceJob(const std::string& field, const std::string& job_id,
                                  const SpecContext& context) {
  absl::StatusOr<Job> source = context.find_job(job_id);
  if (source.ok()) return source;
  if (source.status().code() == absl::StatusCode::kPermissionDenied) {
    return absl::PermissionDeniedError(absl::StrCat(field, ": ", source.status().message()));
  }
  if (source.status().code() != absl::StatusCode::kNotFound) return source.status();
  return Invalid(field, absl::StrCat("\"", job_id, "\" is not a known job"));
}

absl::Status CheckShareWith(const JobSpec& spec) {
  if (spec.share_with_size() > kMaxShareWith) {
    return Invalid("share_with", absl::StrCat("names ", spec.share_with_size(),
                                              " owners; at most ", kMaxShareWith,
                                              " are allowed (\"*\" shares with everyone)"));
  }
  for (int i = 0; i < spec.share_with_size(); ++i) {
    const std::string field = absl::StrCat("share_with[", i, "]");
    if (spec.share_with(i).empty()) return Invalid(field, "is empty");
    absl::Status status = CheckCallerText(field, spec.share_with(i), kMaxOwnerCharacters);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status CheckBackbone(JobSpec& spec, const SpecContext& context) {
  tl::v1::BackboneSpec& backbone = *spec.mutable_backbone();
  switch (backbone.source_case()) {
    case tl::v1::BackboneSpec::kPath: {
      absl::StatusOr<ConfinedPath> confined =
          ConfinePath(context.data_root, backbone.path(), "backbone.path");
      if (!confined.ok()) return confined.status();
      if (!fs::is_regular_file(confined->absolute)) {
        return Invalid("backbone.path", absl::StrCat("\"", backbone.path(), "\": file ",
                                                     confined->absolute, " does not exist"));
      }
      absl::Status manifest = CheckManifestFile("backbone.path", confined->absolute);
      if (!manifest.ok()) return manifest;
      backbone.set_path(confined->relative);
      return absl::OkStatus();
    }
    case tl::v1::BackboneSpec::kFromJob: {
      absl::StatusOr<Job> source = FindSourceJob("backbone.from_job", backbone.from_job(), context);
      if (!source.ok()) return source.status();
      if (source->state() != Job::SUCCEEDED || source->result().backbone_path().empty()) {
        // The spec is fine; the job it names is not there yet.
        return absl::FailedPreconditionError(absl::StrCat(
            "backbone.from_job: job ", backbone.from_job(), " is ",
            Job::State_Name(source->state()),
            "; only a SUCCEEDED job has a backbone to start from"));
      }
      // The path came from a worker's report: it is held to the artifact
      // root like any path a user gives.
      absl::StatusOr<ConfinedPath> confined = ConfinePath(
          context.artifact_root, source->result().backbone_path(), "backbone.from_job");
      if (!confined.ok()) return confined.status();
      const fs::path file = confined->absolute;
      if (!fs::is_regular_file(file)) {
        return Invalid("backbone.from_job", absl::StrCat("backbone of job ", backbone.from_job(),
                                                         " is gone from ", file.string()));
      }
      return CheckManifestFile("backbone.from_job", file);
    }
    case tl::v1::BackboneSpec::SOURCE_NOT_SET:
      break;
  }
  return Invalid("backbone", "is missing: set backbone.path or backbone.from_job");
}

absl::Status CheckDataset(JobSpec& spec, const SpecContext& context) {
  tl::v1::DatasetSpec& dataset = *spec.mutable_dataset();
  if (!dataset.train_csv().empty()) {
    if (!dataset.train_dir().empty()) {
      return Invalid("dataset.train_csv", "and dataset.train_dir cannot both be set");
    }
    absl::StatusOr<CheckedCsvDataset> train =
        CheckCsvDataset("dataset.train_csv", dataset.train_csv(), 2, context.data_root);
    if (!train.ok()) return train.status();
    dataset.set_train_csv(train->relative);
  } else {
    if (dataset.train_dir().empty()) {
      return Invalid("dataset.train_dir", "is missing (or set dataset.train_csv)");
    }
    absl::StatusOr<std::string> train =
        CheckImageFolder("dataset.train_dir", dataset.train_dir(), 2, context);
    if (!train.ok()) return train.status();
    dataset.set_train_dir(*train);
  }
  if (!dataset.test_dir().empty()) {
    absl::StatusOr<std::string> test =
        CheckImageFolder("dataset.test_dir", dataset.test_dir(), 1, context);
    if (!test.ok()) return test.status();
    dataset.set_test_dir(*test);
  }
  if (!dataset.val_csv().empty()) {
    if (!dataset.val_dir().empty()) {
      return Invalid("dataset.val_csv", "and dataset.val_dir cannot both be set");
    }
    absl::StatusOr<CheckedCsvDataset> val =
        CheckCsvDataset("dataset.val_csv", dataset.val_csv(), 1, context.data_root);
    if (!val.ok()) return val.status();
    dataset.set_val_csv(val->relative);
    dataset.clear_val_fraction();
    return absl::OkStatus();
  }
  if (!dataset.val_dir().empty()) {
    absl::StatusOr<std::string> val =
        CheckImageFolder("dataset.val_dir", dataset.val_dir(), 1, context);
    if (!val.ok()) return val.status();
    dataset.set_val_dir(*val);
    dataset.clear_val_fraction();
    return absl::OkStatus();
  }
  if (!dataset.has_val_fraction()) dataset.set_val_fraction(0.2);
  return CheckRange("dataset.val_fraction", dataset.val_fraction(), 0.0, 0.9);
}

// Random resized crop (defaults filled in when present), rotation, colour
// jitter: the bounds the engine checks again.
absl::Status CheckAugmentation(tl::v1::PreprocessingSpec& preprocessing) {
  if (preprocessing.has_random_resized_crop()) {
    tl::v1::PreprocessingSpec::RandomResizedCrop& crop = *preprocessing.mutable_random_resized_crop();
    if (!crop.has_min_scale()) crop.set_min_scale(0.08);
    if (!crop.has_max_scale()) crop.set_max_scale(1.0);
    if (!crop.has_min_aspect_ratio()) crop.set_min_aspect_ratio(3.0 / 4.0);
    if (!crop.has_max_aspect_ratio()) crop.set_max_aspect_ratio(4.0 / 3.0);
    const std::string field = "preprocessing.random_resized_crop.";
    for (absl::Status status : {
             CheckRange(field + "min_scale", crop.min_scale(), 0.001, 1.0),
             CheckRange(field + "max_scale", crop.max_scale(), crop.min_scale(), 1.0),
             CheckRange(field + "min_aspect_ratio", crop.min_aspect_ratio(), 0.1, 10.0),
             CheckRange(field + "max_aspect_ratio", crop.max_aspect_ratio(),
                        crop.min_aspect_ratio(), 10.0),
         }) {
      if (!status.ok()) return status;
    }
  }
  for (absl::Status status : {
           CheckRange("preprocessing.rotation_degrees", preprocessing.rotation_degrees(), 0.0, 180.0),
           CheckRange("preprocessing.brightness", preprocessing.brightness(), 0.0, 1.0),
           CheckRange("preprocessing.contrast", preprocessing.contrast(), 0.0, 1.0),
           CheckRange("preprocessing.saturation", preprocessing.saturation(), 0.0, 1.0),
       }) {
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status CheckPreprocessing(JobSpec& spec) {
  tl::v1::PreprocessingSpec& preprocessing = *spec.mutable_preprocessing();
  if (preprocessing.image_size() != 0) {
    absl::Status status = CheckRange("preprocessing.image_size", preprocessing.image_size(), 8, 1024);
    if (!status.ok()) return status;
  }
  if (preprocessing.resize_size() != 0) {
    const int low = std::max(8, preprocessing.image_size());
    absl::Status status =
        CheckRange("preprocessing.resize_size", preprocessing.resize_size(), low, 2048);
    if (!status.ok()) return status;
  }
  if (!preprocessing.has_horizontal_flip()) preprocessing.set_horizontal_flip(true);
  return CheckAugmentation(preprocessing);
}

// Defaults and bounds of training.early_stopping, when present.
absl::Status CheckEarlyStopping(TrainingSpec& training) {
  if (!training.has_early_stopping()) return absl::OkStatus();
  TrainingSpec::EarlyStopping& stopping = *training.mutable_early_stopping();
  if (!TrainingSpec::EarlyStopping::Metric_IsValid(stopping.metric())) {
    return Invalid("training.early_stopping.metric", "is not a known metric");
  }
  if (!TrainingSpec::EarlyStopping::Mode_IsValid(stopping.mode())) {
    return Invalid("training.early_stopping.mode", "is not MIN or MAX");
  }
  if (stopping.metric() == TrainingSpec::EarlyStopping::METRIC_UNSPECIFIED) {
    stopping.set_metric(TrainingSpec::EarlyStopping::VAL_LOSS);
  }
  if (stopping.mode() == TrainingSpec::EarlyStopping::MODE_UNSPECIFIED) {
    // Loss falls as the model improves; accuracy and F1 rise.
    stopping.set_mode(stopping.metric() == TrainingSpec::EarlyStopping::VAL_LOSS
                          ? TrainingSpec::EarlyStopping::MIN
                          : TrainingSpec::EarlyStopping::MAX);
  }
  if (!stopping.has_patience()) stopping.set_patience(5);
  absl::Status status =
      CheckRange("training.early_stopping.patience", stopping.patience(), 1, 1000);
  if (!status.ok()) return status;
  return CheckRange("training.early_stopping.min_delta", stopping.min_delta(), 0.0, 1000.0);
}

// Staged fine-tuning: FINE_TUNE only, and the backbone gets at least one epoch.
absl::Status CheckStagedFineTuning(const TrainingSpec& training) {
  for (const auto& [field, value] :
       {std::pair{"training.head_only_epochs", training.head_only_epochs()},
        std::pair{"training.unfreeze_every_epochs", training.unfreeze_every_epochs()}}) {
    if (value != 0 && training.strategy() != TrainingSpec::FINE_TUNE) {
      return Invalid(field, "applies to the FINE_TUNE strategy only");
    }
  }
  absl::Status status = CheckRange("training.head_only_epochs", training.head_only_epochs(), 0,
                                   training.epochs() - 1);
  if (!status.ok()) return status;
  return CheckRange("training.unfreeze_every_epochs", training.unfreeze_every_epochs(), 0, 1000);
}

// Early stopping watches validation metrics, so it needs validation images.
absl::Status CheckEarlyStoppingHasValidation(const JobSpec& spec) {
  const tl::v1::DatasetSpec& dataset = spec.dataset();
  if (!spec.training().has_early_stopping() || !dataset.val_dir().empty() ||
      !dataset.val_csv().empty() || dataset.val_fraction() > 0) {
    return absl::OkStatus();
  }
  return Invalid("training.early_stopping",
                 "needs validation images: set dataset.val_dir or dataset.val_csv, or a "
                 "dataset.val_fraction above 0");
}

// Optimizer variant, schedule, clipping, smoothing and class weights; runs
// after the basic fields have their defaults and bounds.
absl::Status CheckTrainingRecipe(TrainingSpec& training) {
  if (training.nesterov() && training.optimizer() != TrainingSpec::SGD) {
    return Invalid("training.nesterov", "applies to the SGD optimizer only");
  }
  if (training.nesterov() && !(training.momentum() > 0)) {
    return Invalid("training.nesterov", "needs training.momentum above 0");
  }
  if (!TrainingSpec::LrSchedule_IsValid(training.lr_schedule())) {
    return Invalid("training.lr_schedule", "is not a known schedule");
  }
  if (training.lr_schedule() == TrainingSpec::LR_SCHEDULE_UNSPECIFIED) {
    training.set_lr_schedule(TrainingSpec::CONSTANT);
  }
  const std::string schedule = TrainingSpec::LrSchedule_Name(training.lr_schedule());
  absl::Status status =
      CheckRange("training.warmup_epochs", training.warmup_epochs(), 0, training.epochs());
  if (!status.ok()) return status;
  if (training.lr_schedule() == TrainingSpec::STEP) {
    if (!training.has_step_epochs()) {
      training.set_step_epochs(std::max(1, (training.epochs() - training.warmup_epochs()) / 3));
    }
    if (!training.has_step_gamma()) training.set_step_gamma(0.1);
    status = CheckRange("training.step_epochs", training.step_epochs(), 1, 1000);
    if (!status.ok()) return status;
    if (!(training.step_gamma() > 0 && training.step_gamma() <= 1)) {
      return OutOfInterval("training.step_gamma", training.step_gamma(), "(0, 1]");
    }
  } else {
    for (const auto& [field, set] : {std::pair{"training.step_epochs", training.has_step_epochs()},
                                     std::pair{"training.step_gamma", training.has_step_gamma()}}) {
      if (set) return Invalid(field, "applies to the STEP lr_schedule only, not " + schedule);
    }
  }
  if (training.lr_schedule() == TrainingSpec::COSINE) {
    if (!training.has_min_learning_rate()) training.set_min_learning_rate(0);
    status = CheckRange("training.min_learning_rate", training.min_learning_rate(), 0.0,
                        training.learning_rate());
    if (!status.ok()) return status;
  } else if (training.has_min_learning_rate()) {
    return Invalid("training.min_learning_rate",
                   "applies to the COSINE lr_schedule only, not " + schedule);
  }
  status = CheckRange("training.clip_grad_norm", training.clip_grad_norm(), 0.0, 1e6);
  if (!status.ok()) return status;
  if (!(training.label_smoothing() >= 0 && training.label_smoothing() < 1)) {
    return OutOfInterval("training.label_smoothing", training.label_smoothing(), "[0, 1)");
  }
  if (training.balanced_class_weights() && !training.class_weights().empty()) {
    return Invalid("training.balanced_class_weights",
                   "and training.class_weights cannot both be set");
  }
  bool any_positive = training.class_weights().empty();
  for (const auto& [name, weight] : training.class_weights()) {
    const std::string field = absl::StrCat("training.class_weights[\"", name, "\"]");
    if (name.empty() || name.find('/') != std::string::npos) {
      return Invalid(field, "is not a class folder name");
    }
    status = CheckRange(field, weight, 0.0, 1000.0);
    if (!status.ok()) return status;
    any_positive = any_positive || weight > 0;
  }
  if (!any_positive) return Invalid("training.class_weights", "are all 0");
  status = CheckStagedFineTuning(training);
  if (!status.ok()) return status;
  return CheckEarlyStopping(training);
}

// Every class a weight is given for must be a class of the training set.
absl::Status CheckClassWeightNames(const JobSpec& spec, const SpecContext& context) {
  if (spec.training().class_weights().empty()) return absl::OkStatus();
  const fs::path train_dir = fs::path(context.data_root) / spec.dataset().train_dir();
  std::set<std::string> csv_classes;
  if (!spec.dataset().train_csv().empty()) {
    absl::StatusOr<CheckedCsvDataset> train =
        CheckCsvDataset("dataset.train_csv", spec.dataset().train_csv(), 2, context.data_root);
    if (!train.ok()) return train.status();
    csv_classes = train->class_names;
  }
  for (const auto& [name, weight] : spec.training().class_weights()) {
    const bool known = spec.dataset().train_csv().empty() ? fs::is_directory(train_dir / name)
                                                          : csv_classes.count(name) > 0;
    if (!known) {
      return Invalid(absl::StrCat("training.class_weights[\"", name, "\"]"),
                     absl::StrCat("names a class that the training set \"",
                                  spec.dataset().train_dir(), spec.dataset().train_csv(),
                                  "\" does not have"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTraining(JobSpec& spec) {
  TrainingSpec& training = *spec.mutable_training();
  if (!TrainingSpec::Strategy_IsValid(training.strategy())) {
    return Invalid("training.strategy", "is not a known strategy");
  }
  if (training.strategy() == TrainingSpec::STRATEGY_UNSPECIFIED) {
    training.set_strategy(TrainingSpec::FINE_TUNE);
  }
  if (!TrainingSpec::Optimizer_IsValid(training.optimizer())) {
    return Invalid("training.optimizer", "is not a known optimizer");
  }
  if (training.optimizer() == TrainingSpec::OPTIMIZER_UNSPECIFIED) {
    training.set_optimizer(TrainingSpec::ADAM);
  }
  // AUTO may choose FINE_TUNE, so its unfreeze_groups is kept for that.
  if (training.strategy() == TrainingSpec::FINE_TUNE ||
      training.strategy() == TrainingSpec::AUTO) {
    if (!training.has_unfreeze_groups()) training.set_unfreeze_groups(1);
    absl::Status status =
        CheckRange("training.unfreeze_groups", training.unfreeze_groups(), 1, 64);
    if (!status.ok()) return status;
  } else if (training.has_unfreeze_groups()) {
    return Invalid("training.unfreeze_groups", "applies to the FINE_TUNE and AUTO strategies only");
  }
  if (!training.has_epochs()) training.set_epochs(10);
  if (!training.has_batch_size()) training.set_batch_size(32);
  if (!training.has_learning_rate()) {
    training.set_learning_rate(training.optimizer() == TrainingSpec::SGD ? 0.01 : 0.001);
  }
  // Under AUTO an unset scale stays unset: the chosen strategy's default applies.
  if (!training.has_backbone_lr_scale() && training.strategy() != TrainingSpec::AUTO) {
    training.set_backbone_lr_scale(training.strategy() == TrainingSpec::FULL ? 1.0 : 0.1);
  }
  if (!training.has_momentum()) training.set_momentum(0.9);
  if (!training.has_weight_decay()) {
    // AdamW's decay is decoupled from the gradient and meant to be on.
    training.set_weight_decay(training.optimizer() == TrainingSpec::ADAMW ? 0.01 : 0.0);
  }
  if (!training.has_seed()) training.set_seed(1);

  if (training.epochs() <= 0) return Invalid("training.epochs", "must be positive");
  if (training.batch_size() <= 0) return Invalid("training.batch_size", "must be positive");
  if (!(training.learning_rate() > 0)) {
    return Invalid("training.learning_rate", "must be positive");
  }
  for (absl::Status status : {
           CheckRange("training.epochs", training.epochs(), 1, 1000),
           CheckRange("training.batch_size", training.batch_size(), 1, 4096),
           CheckRange("training.learning_rate", training.learning_rate(), 1e-12, 10.0),
           CheckRange("training.backbone_lr_scale", training.backbone_lr_scale(), 0.0, 100.0),
           CheckRange("training.momentum", training.momentum(), 0.0, 0.999),
           CheckRange("training.weight_decay", training.weight_decay(), 0.0, 1.0),
           CheckRange("training.threads", training.threads(), 0, 256),
       }) {
    if (!status.ok()) return status;
  }
  return CheckTrainingRecipe(training);
}

// An evaluation job needs a finished model and one labelled folder; the
// model's own model.json decides the preprocessing and the class names.
absl::Status CheckEvaluation(JobSpec& spec, const SpecContext& context) {
  tl::v1::EvaluateSpec& evaluate = *spec.mutable_evaluate();
  std::string field = "evaluate.model_path";
  if (!evaluate.from_job().empty()) {
    field = "evaluate.from_job";
    absl::StatusOr<Job> source = FindSourceJob(field, evaluate.from_job(), context);
    if (!source.ok()) return source.status();
    if (source->state() != Job::SUCCEEDED || source->result().model_path().empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(field, ": job ", evaluate.from_job(), " is ",
                       Job::State_Name(source->state()), "; only a SUCCEEDED job has a model"));
    }
    evaluate.set_model_path(source->result().model_path());
  } else if (evaluate.model_path().empty()) {
    return Invalid("evaluate", "names no model: set evaluate.model_path or evaluate.from_job");
  }
  absl::StatusOr<ConfinedPath> model = ConfinePath(context.artifact_root, evaluate.model_path(), field);
  if (!model.ok()) return model.status();
  // A model in a job's folder is that job's output: the same rule as for from_job. Elsewhere in
  // the artifact root (no job's folder) only a submitter who may use every job's outputs goes on.
  // The folder is the one the path resolves into, links followed.
  std::error_code resolve_error;
  const fs::path resolved_root =
      fs::weakly_canonical(fs::absolute(context.artifact_root), resolve_error);
  const fs::path resolved = fs::weakly_canonical(model->absolute, resolve_error)
                                .lexically_relative(resolved_root);
  const std::string job_folder =
      resolved.empty() || resolve_error ? std::string() : resolved.begin()->string();
  absl::StatusOr<Job> owner_job = context.find_job(job_folder);
  if (!owner_job.ok() && owner_job.status().code() == absl::StatusCode::kPermissionDenied) {
    return absl::PermissionDeniedError(absl::StrCat(
        field, ": \"", evaluate.model_path(),
        "\" is not in the folder of a job you may use (", owner_job.status().message(), ")"));
  }
  fs::path info = model->absolute;
  info.replace_extension(".json");
  if (!fs::is_regular_file(model->absolute)) {
    return Invalid(field, absl::StrCat("model ", model->absolute, " does not exist"));
  }
  if (!fs::is_regular_file(info)) {
    return Invalid(field, absl::StrCat("model ", model->absolute, " has no ",
                                       info.filename().string(), " beside it"));
  }
  evaluate.set_model_path(model->relative);
  tl::v1::DatasetSpec& dataset = *spec.mutable_dataset();
  const bool on_test = !dataset.test_dir().empty();
  if (!on_test && dataset.train_dir().empty()) {
    return Invalid("dataset.test_dir", "is missing: an evaluation job needs a labelled folder");
  }
  absl::StatusOr<std::string> folder =
      on_test ? CheckImageFolder("dataset.test_dir", dataset.test_dir(), 1, context)
              : CheckImageFolder("dataset.train_dir", dataset.train_dir(), 1, context);
  if (!folder.ok()) return folder.status();
  if (on_test) {
    dataset.set_test_dir(*folder);
  } else {
    dataset.set_train_dir(*folder);
  }
  return absl::OkStatus();
}

// Data-parallel jobs: every replica needs images of each batch, and the
// strategies that decide or evaluate on one worker's view cannot be split.
absl::Status CheckReplicas(const JobSpec& spec) {
  const int replicas = spec.resources().replicas();
  absl::Status status = CheckRange("resources.replicas", replicas, 0, kMaxReplicas);
  if (!status.ok() || replicas <= 1) return status;
  if (spec.has_evaluate()) {
    return Invalid("resources.replicas", "must be 0 or 1 for an evaluation job");
  }
  if (spec.training().strategy() == TrainingSpec::AUTO) {
    return Invalid("resources.replicas",
                   "must be 0 or 1 with the AUTO strategy: choose FEATURE_EXTRACTION, "
                   "FINE_TUNE or FULL");
  }
  if (spec.training().batch_size() > 0 && spec.training().batch_size() < replicas) {
    return Invalid("training.batch_size",
                   absl::StrCat("is ", spec.training().batch_size(),
                                ", fewer than resources.replicas (", replicas,
                                "): it is the batch of all replicas together"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<JobSpec> ValidateJobSpec(const JobSpec& submitted, const SpecContext& context) {
  JobSpec spec = submitted;
  // Fields this server does not know (a newer client, or padding) are not stored.
  spec.DiscardUnknownFields();
  if (spec.ByteSizeLong() > kMaxSpecBytes) {
    return Invalid("spec", absl::StrCat("is ", spec.ByteSizeLong(), " bytes; at most ",
                                        kMaxSpecBytes, " are allowed"));
  }
  absl::Status status = CheckCallerText("name", spec.name(), kMaxJobNameCharacters);
  if (!status.ok()) return status;
  status = CheckShareWith(spec);
  if (!status.ok()) return status;
  status = CheckRange("priority", spec.priority(), -1000, 1000);
  if (!status.ok()) return status;
  // Cheap numeric checks first: a typo in a number should not cost a scan of
  // the dataset folders.
  status = CheckTraining(spec);
  if (!status.ok()) return status;
  status = CheckPreprocessing(spec);
  if (!status.ok()) return status;
  const std::string& device = spec.resources().device();
  if (!device.empty() && device != "cpu" && device != "cuda") {
    return Invalid("resources.device", absl::StrCat("is \"", device,
                                                    "\"; it must be \"cpu\", \"cuda\" or empty"));
  }
  const tl::v1::ResourceRequest& resources = spec.resources();
  if (resources.gpu_count() < 0 || resources.gpu_count() > kMaxGpuCount) {
    return Invalid("resources.gpu_count",
                   absl::StrCat("is ", resources.gpu_count(), "; it must lie in [0, ",
                                kMaxGpuCount, "]"));
  }
  if (resources.gpu_count() > 0 && device == "cpu") {
    return Invalid("resources.gpu_count", "asks for GPUs while resources.device is \"cpu\"");
  }
  if (resources.min_gpu_memory_bytes() < 0) {
    return Invalid("resources.min_gpu_memory_bytes", "must not be negative");
  }
  if (resources.min_gpu_memory_bytes() > 0 && device == "cpu") {
    return Invalid("resources.min_gpu_memory_bytes",
                   "asks for GPU memory while resources.device is \"cpu\"");
  }
  status = CheckReplicas(spec);
  if (!status.ok()) return status;
  if (!TrainingSpec::Precision_IsValid(spec.training().precision())) {
    return Invalid("training.precision", "is not a known precision");
  }
  if (spec.training().precision() == TrainingSpec::BF16 && device != "cuda") {
    return Invalid("training.precision",
                   "BF16 runs on CUDA only: set resources.device to \"cuda\"");
  }
  if (spec.has_evaluate()) {
    status = CheckEvaluation(spec, context);
    if (!status.ok()) return status;
    return spec;
  }
  status = CheckBackbone(spec, context);
  if (!status.ok()) return status;
  status = CheckDataset(spec, context);
  if (!status.ok()) return status;
  status = CheckClassWeightNames(spec, context);
  if (!status.ok()) return status;
  status = CheckEarlyStoppingHasValidation(spec);
  if (!status.ok()) return status;
  return spec;
}

}  // namespace tl::server
