#include "worker/job_runner.h"

#include <chrono>
#include <filesystem>
#include <functional>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/errors.h"
#include "common/confined_path.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "worker/epoch_metrics_proto.h"
#include "worker/evaluation_proto.h"

namespace tl::worker {
namespace {

namespace fs = std::filesystem;
using ::tl::v1::JobFinished;
using ::tl::v1::TrainingSpec;
using ::tl::v1::WorkerMessage;
using Clock = std::chrono::steady_clock;

// Progress goes to people watching a bar; a few updates a second is plenty.
constexpr auto kProgressInterval = std::chrono::milliseconds(200);

engine::Strategy StrategyOf(TrainingSpec::Strategy strategy) {
  switch (strategy) {
    case TrainingSpec::FEATURE_EXTRACTION:
      return engine::Strategy::kFeatureExtraction;
    case TrainingSpec::FULL:
      return engine::Strategy::kFull;
    // FINE_TUNE, STRATEGY_UNSPECIFIED (jobs.proto: default FINE_TUNE), and AUTO,
    // which the engine's probe replaces (auto_strategy.enabled).
    default:
      return engine::Strategy::kFineTune;
  }
}

engine::OptimizerKind OptimizerOf(TrainingSpec::Optimizer optimizer) {
  switch (optimizer) {
    case TrainingSpec::SGD:
      return engine::OptimizerKind::kSgd;
    case TrainingSpec::ADAMW:
      return engine::OptimizerKind::kAdamW;
    default:  // ADAM; jobs.proto: OPTIMIZER_UNSPECIFIED is ADAM (its default)
      return engine::OptimizerKind::kAdam;
  }
}

engine::LrSchedule ScheduleOf(TrainingSpec::LrSchedule schedule) {
  switch (schedule) {
    case TrainingSpec::STEP:
      return engine::LrSchedule::kStep;
    case TrainingSpec::COSINE:
      return engine::LrSchedule::kCosine;
    default:  // CONSTANT; jobs.proto: LR_SCHEDULE_UNSPECIFIED is CONSTANT
      return engine::LrSchedule::kConstant;
  }
}

// Fields the server fills in at submit wherever they apply (the table in
// server/spec/spec_fields.cc), and has filled since each was introduced, so
// every stored spec, old databases' included, holds them. A spec without one
// did not come through the server's validation: the worker names the field
// rather than pick a value, which would repeat the server's rule
// (step_epochs, mode) or quietly use the engine's own default. Not listed,
// as they may be legitimately unset: backbone_lr_scale and learning_rate
// under AUTO (the chosen strategy's, engine::DefaultBackboneLrScale and
// DefaultLearningRate); epochs, batch_size and
// val_fraction, which the engine sizes from the data when unset, and a STEP
// schedule's step_epochs with them (engine/job/data_sizing.h); fields of a schedule,
// crop or early stopping the job does not use; and enums whose UNSPECIFIED
// value jobs.proto names one fixed value for, which the mappings above and
// below use (lr_schedule, unset in jobs stored before schedules existed, is
// CONSTANT; precision is FP32, as it was before AUTO).
absl::Status CheckFilledAtSubmit(const tl::v1::JobSpec& spec) {
  const TrainingSpec& training = spec.training();
  const TrainingSpec::Strategy strategy = training.strategy();
  const auto& crop = spec.preprocessing().random_resized_crop();
  const bool has_crop = spec.preprocessing().has_random_resized_crop();
  const TrainingSpec::EarlyStopping& stopping = training.early_stopping();
  const bool has_stopping = training.has_early_stopping();
  // A field is missing when it applies to this spec and is not there.
  const std::pair<const char*, bool> missing[] = {
      {"preprocessing.horizontal_flip", !spec.preprocessing().has_horizontal_flip()},
      {"preprocessing.random_resized_crop.min_scale", has_crop && !crop.has_min_scale()},
      {"preprocessing.random_resized_crop.max_scale", has_crop && !crop.has_max_scale()},
      {"preprocessing.random_resized_crop.min_aspect_ratio",
       has_crop && !crop.has_min_aspect_ratio()},
      {"preprocessing.random_resized_crop.max_aspect_ratio",
       has_crop && !crop.has_max_aspect_ratio()},
      {"training.unfreeze_groups",
       strategy != TrainingSpec::FEATURE_EXTRACTION && strategy != TrainingSpec::FULL &&
           !training.has_unfreeze_groups()},
      {"training.learning_rate", strategy != TrainingSpec::AUTO && !training.has_learning_rate()},
      {"training.backbone_lr_scale",
       strategy != TrainingSpec::AUTO && !training.has_backbone_lr_scale()},
      {"training.momentum", !training.has_momentum()},
      {"training.weight_decay", !training.has_weight_decay()},
      {"training.seed", !training.has_seed()},
      {"training.step_epochs", training.lr_schedule() == TrainingSpec::STEP &&
                                   training.has_epochs() && !training.has_step_epochs()},
      {"training.step_gamma",
       training.lr_schedule() == TrainingSpec::STEP && !training.has_step_gamma()},
      {"training.min_learning_rate",
       training.lr_schedule() == TrainingSpec::COSINE && !training.has_min_learning_rate()},
      {"training.early_stopping.mode",
       has_stopping && stopping.mode() == TrainingSpec::EarlyStopping::MODE_UNSPECIFIED},
      {"training.early_stopping.patience", has_stopping && !stopping.has_patience()},
  };
  for (const auto& [field, is_missing] : missing) {
    if (is_missing) {
      return absl::FailedPreconditionError(
          absl::StrCat("the stored spec has no ", field,
                       ", which the server fills in at submit; submit the job again"));
    }
  }
  return absl::OkStatus();
}

// Fields of a crop or early stopping the spec does not have come from the
// empty message; the engine does not read them then.
engine::Augmentation AugmentationOf(const tl::v1::PreprocessingSpec& preprocessing) {
  const auto& crop = preprocessing.random_resized_crop();
  engine::Augmentation augmentation;
  augmentation.random_resized_crop = preprocessing.has_random_resized_crop();
  augmentation.min_scale = crop.min_scale();
  augmentation.max_scale = crop.max_scale();
  augmentation.min_aspect_ratio = crop.min_aspect_ratio();
  augmentation.max_aspect_ratio = crop.max_aspect_ratio();
  augmentation.rotation_degrees = preprocessing.rotation_degrees();
  augmentation.brightness = preprocessing.brightness();
  augmentation.contrast = preprocessing.contrast();
  augmentation.saturation = preprocessing.saturation();
  return augmentation;
}

engine::EarlyStoppingMetric MetricOf(TrainingSpec::EarlyStopping::Metric metric) {
  switch (metric) {
    case TrainingSpec::EarlyStopping::VAL_ACCURACY:
      return engine::EarlyStoppingMetric::kValAccuracy;
    case TrainingSpec::EarlyStopping::VAL_MACRO_F1:
      return engine::EarlyStoppingMetric::kValMacroF1;
    default:  // VAL_LOSS; jobs.proto: METRIC_UNSPECIFIED is VAL_LOSS
      return engine::EarlyStoppingMetric::kValLoss;
  }
}

engine::EarlyStoppingOptions EarlyStoppingOf(const TrainingSpec& training) {
  const TrainingSpec::EarlyStopping& stopping = training.early_stopping();
  engine::EarlyStoppingOptions options;
  options.enabled = training.has_early_stopping();
  options.metric = MetricOf(stopping.metric());
  options.maximize = stopping.mode() == TrainingSpec::EarlyStopping::MAX;
  options.patience = stopping.patience();
  options.min_delta = stopping.min_delta();
  return options;
}

std::string RelativeTo(const std::string& root, const std::string& path) {
  return fs::path(path).lexically_relative(fs::weakly_canonical(root)).string();
}

TrainingSpec::Strategy StrategyProtoOf(engine::Strategy strategy) {
  switch (strategy) {
    case engine::Strategy::kFeatureExtraction:
      return TrainingSpec::FEATURE_EXTRACTION;
    case engine::Strategy::kFull:
      return TrainingSpec::FULL;
    default:
      return TrainingSpec::FINE_TUNE;
  }
}

tl::v1::AutoStrategyDecision ToProto(const engine::AutoDecision& decision) {
  tl::v1::AutoStrategyDecision out;
  out.set_chosen(StrategyProtoOf(decision.strategy));
  const engine::AutoProbeFigures& figures = decision.figures;
  out.set_feature_extraction_accuracy(figures.feature_extraction_accuracy);
  out.set_fine_tune_accuracy(figures.fine_tune_accuracy);
  out.set_images_per_class(figures.images_per_class);
  out.set_probe_train_images(figures.probe_train_images);
  out.set_probe_holdout_images(figures.probe_holdout_images);
  out.set_reason(decision.reason);
  out.set_probe_seconds(decision.seconds);
  out.set_probed(decision.probed);
  out.set_full_accuracy(figures.full_accuracy);
  out.set_folds(figures.folds);
  out.set_chosen_learning_rate(decision.learning_rate);
  for (const engine::AutoCandidate& candidate : decision.candidates) {
    tl::v1::AutoCandidate& c = *out.add_candidates();
    c.set_strategy(StrategyProtoOf(candidate.strategy));
    c.set_unfreeze_groups(candidate.unfreeze_groups);
    c.set_learning_rate(candidate.learning_rate);
    c.set_epochs(candidate.epochs);
    c.set_first_fold_only(candidate.first_fold_only);
    c.mutable_fold_accuracies()->Add(candidate.fold_accuracies.begin(),
                                     candidate.fold_accuracies.end());
    c.set_accuracy(candidate.accuracy);
    c.set_seconds(candidate.seconds);
  }
  return out;
}

tl::v1::DatasetSummary ToProto(const engine::DatasetInfo& dataset) {
  tl::v1::DatasetSummary summary;
  summary.mutable_class_names()->Add(dataset.class_names.begin(), dataset.class_names.end());
  summary.set_train_images(dataset.train_images);
  summary.set_val_images(dataset.val_images);
  summary.set_skipped_images(dataset.skipped_images);
  const engine::DatasetCheck& check = dataset.check;
  summary.mutable_train_images_per_class()->Add(check.train_per_class.begin(),
                                                check.train_per_class.end());
  summary.mutable_val_images_per_class()->Add(check.val_per_class.begin(),
                                              check.val_per_class.end());
  summary.set_imbalance_ratio(check.imbalance_ratio);
  summary.mutable_unreadable_examples()->Add(check.unreadable_examples.begin(),
                                             check.unreadable_examples.end());
  summary.set_duplicate_images(check.duplicate_images);
  summary.mutable_duplicate_examples()->Add(check.duplicate_examples.begin(),
                                            check.duplicate_examples.end());
  return summary;
}

tl::v1::DataSizing ToProto(const engine::DataSizing& sizing) {
  tl::v1::DataSizing out;
  if (sizing.sized.epochs) out.add_sized_fields("training.epochs");
  if (sizing.sized.batch_size) out.add_sized_fields("training.batch_size");
  if (sizing.sized.val_fraction) out.add_sized_fields("dataset.val_fraction");
  out.set_epochs(sizing.epochs);
  out.set_batch_size(sizing.batch_size);
  out.set_val_fraction(sizing.val_fraction);
  out.set_train_images(sizing.train_images);
  out.set_steps(sizing.steps);
  out.set_reason(sizing.reason);
  return out;
}

class ReportingObserver : public engine::ImageJobObserver {
 public:
  ReportingObserver(const tl::v1::Assignment& assignment, const JobRunner::Report& report,
                    const std::atomic<bool>& cancel_requested,
                    const std::atomic<bool>& pause_requested,
                    std::function<void(const std::string&)> log, JobListener* listener)
      : assignment_(assignment),
        report_(report),
        cancel_requested_(cancel_requested),
        pause_requested_(pause_requested),
        log_(std::move(log)),
        listener_(listener) {}

  void OnDataset(const engine::DatasetInfo& dataset) override {
    if (!reports_job_) return;
    validated_ = dataset.val_images > 0;
    ReportStarted(&dataset);
    log_(absl::StrCat("dataset: ", dataset.class_names.size(), " classes, ",
                      dataset.train_images, " training and ", dataset.val_images,
                      " validation images, ", dataset.skipped_images,
                      " unreadable files skipped; class imbalance ",
                      absl::SixDigits(dataset.check.imbalance_ratio), ", ",
                      dataset.check.duplicate_images,
                      " validation images duplicate training images"));
  }

  void OnNotice(const std::string& line) override { log_(line); }

  // Reported with the dataset (JobStarted), when the scheduler stores the
  // sized fields in the spec.
  void OnDataSizing(const engine::DataSizing& sizing) override {
    sizing_ = ToProto(sizing);
    if (sizing.sized.any()) log_("sized by the data: " + sizing.reason);
  }

  // The probe takes a while: the job is RUNNING, and its data sizing
  // stored, from its start. The dataset follows in a second JobStarted.
  void OnAutoProbeStarting() override {
    if (reports_job_) ReportStarted(nullptr);
  }

  void OnAutoStrategy(const engine::AutoDecision& decision) override {
    log_(engine::DescribeAutoDecision(decision));
  }

  void OnBatch(const engine::BatchProgress& progress) override {
    if (listener_ != nullptr && !progress.auto_probe) {
      listener_->OnBatch(assignment_.job_id(), progress);
    }
    if (!reports_job_) return;
    const Clock::time_point now = Clock::now();
    if (progress.batch != progress.batches && now - last_progress_ < kProgressInterval) return;
    last_progress_ = now;
    WorkerMessage message;
    tl::v1::ProgressReport& report = *message.mutable_progress();
    report.set_job_id(assignment_.job_id());
    report.set_attempt(assignment_.attempt());
    report.mutable_progress()->set_epoch(progress.epoch);
    report.mutable_progress()->set_epochs(progress.epochs);
    report.mutable_progress()->set_batch(static_cast<int32_t>(progress.batch));
    report.mutable_progress()->set_batches(static_cast<int32_t>(progress.batches));
    report.mutable_progress()->set_loss(progress.mean_loss);
    report.mutable_progress()->set_images_per_second(progress.images_per_second);
    if (progress.auto_probe) report.mutable_progress()->set_phase(tl::v1::Progress::AUTO_PROBE);
    report_(message);
  }

  void OnEpoch(const engine::EpochStats& stats) override {
    if (!reports_job_) return;
    WorkerMessage message;
    message.mutable_epoch()->set_job_id(assignment_.job_id());
    *message.mutable_epoch()->mutable_metrics() = EpochMetricsProto(stats, assignment_.attempt());
    report_(message);
    // Without validation images the validation figures are zeros, not measurements.
    log_(absl::StrCat("epoch ", stats.epoch, ": train loss ", stats.train_loss,
                      validated_ ? absl::StrCat(", val loss ", stats.val_loss, ", val accuracy ",
                                                stats.val_accuracy)
                                 : absl::StrCat(", train accuracy ", stats.train_accuracy),
                      ", ", static_cast<int64_t>(stats.images_per_second), " images/s, ",
                      absl::SixDigits(stats.seconds), " s"));
  }

  bool StopRequested() override { return cancel_requested_.load(); }
  bool PauseRequested() override { return pause_requested_.load(); }

 private:
  // JobStarted with the data sizing, and the dataset once it is checked.
  void ReportStarted(const engine::DatasetInfo* dataset) {
    WorkerMessage message;
    tl::v1::JobStarted& started = *message.mutable_started();
    started.set_job_id(assignment_.job_id());
    started.set_attempt(assignment_.attempt());
    if (dataset != nullptr) *started.mutable_dataset() = ToProto(*dataset);
    if (sizing_) *started.mutable_data_sizing() = *sizing_;
    report_(message);
  }

  const tl::v1::Assignment& assignment_;
  const JobRunner::Report& report_;
  const std::atomic<bool>& cancel_requested_;
  const std::atomic<bool>& pause_requested_;
  const std::function<void(const std::string&)> log_;
  // Of a data-parallel gang only rank 0 reports the job; the others' figures are the same.
  const bool reports_job_ = assignment_.replica_rank() == 0;
  Clock::time_point last_progress_{};
  JobListener* const listener_;
  std::optional<tl::v1::DataSizing> sizing_;
  bool validated_ = true;  // the dataset holds validation images (unknown: true)
};

// The engine reads every file confined to the worker's roots at the moment
// it opens it, and decodes no image above the worker's pixel limit.
void SetReadLimits(const tl::v1::Assignment& assignment, const WorkerSettings& settings,
                   engine::ImageJobConfig& config) {
  config.data_root = settings.data_root;
  config.artifact_root = settings.artifact_root;
  config.backbone_from_artifacts = assignment.backbone_from_artifacts();
  config.max_image_pixels = settings.max_image_pixels;
}

}  // namespace

absl::StatusOr<engine::ImageJobConfig> EngineConfigFor(const tl::v1::Assignment& assignment,
                                                       const WorkerSettings& settings) {
  if (assignment.spec().has_evaluate()) {
    absl::StatusOr<engine::ImageJobConfig> config = EvaluationConfigFor(assignment, settings);
    if (config.ok()) SetReadLimits(assignment, settings, *config);
    return config;
  }
  const tl::v1::JobSpec& spec = assignment.spec();
  TL_RETURN_IF_ERROR(CheckFilledAtSubmit(spec));
  engine::ImageJobConfig config;
  // The scheduler checked these paths against its roots; the worker checks
  // again against its own, which may be mounted elsewhere.
  TL_ASSIGN_OR_RETURN(
      const ConfinedPath backbone,
      assignment.backbone_from_artifacts()
          ? ConfinePath(settings.artifact_root, assignment.backbone_path(), "backbone.from_job")
          : ConfinePath(settings.data_root, assignment.backbone_path(), "backbone.path"));
  config.backbone_path = backbone.absolute;
  SetReadLimits(assignment, settings, config);
  // A dataset is a folder per class or a CSV file; the unset one stays empty.
  const tl::v1::DatasetSpec& dataset = spec.dataset();
  for (const auto& [field, given, target, required] :
       {std::tuple{"dataset.train_dir", dataset.train_dir(), &config.train_dir,
                   dataset.train_csv().empty()},
        std::tuple{"dataset.train_csv", dataset.train_csv(), &config.train_csv, false},
        std::tuple{"dataset.val_dir", dataset.val_dir(), &config.val_dir, false},
        std::tuple{"dataset.val_csv", dataset.val_csv(), &config.val_csv, false}}) {
    if (given.empty() && !required) continue;
    TL_ASSIGN_OR_RETURN(const ConfinedPath confined,
                        ConfinePath(settings.data_root, given, field));
    *target = confined.absolute;
  }
  if (!spec.dataset().test_dir().empty()) {
    TL_ASSIGN_OR_RETURN(
        const ConfinedPath test,
        ConfinePath(settings.data_root, spec.dataset().test_dir(), "dataset.test_dir"));
    config.test_dir = test.absolute;
  }
  TL_ASSIGN_OR_RETURN(const ConfinedPath output,
                      ConfinePath(settings.artifact_root, assignment.output_dir(), "output_dir"));
  config.output_dir = output.absolute;
  if (settings.feature_cache) {
    config.feature_cache_dir = (fs::path(settings.artifact_root) / "feature_cache").string();
    config.feature_cache_max_bytes = settings.feature_cache_max_bytes;
  }

  config.val_fraction = spec.dataset().val_fraction();
  // Unset: sized by the data on this worker (engine/job/data_sizing.h); the
  // scheduler stores what was used in the spec when the worker reports it.
  config.sizing.val_fraction = !spec.dataset().has_val_fraction();
  config.sizing.batch_size = !spec.training().has_batch_size();
  config.sizing.epochs = !spec.training().has_epochs();
  config.sizing.step_epochs = spec.training().lr_schedule() == TrainingSpec::STEP &&
                              !spec.training().has_step_epochs();
  config.image_size = spec.preprocessing().image_size();
  config.resize_size = spec.preprocessing().resize_size();
  config.horizontal_flip = spec.preprocessing().horizontal_flip();
  config.augmentation = AugmentationOf(spec.preprocessing());
  const TrainingSpec& training = spec.training();
  config.batch_size = training.batch_size();
  config.seed = training.seed();
  config.threads = training.threads() > 0 ? training.threads() : settings.threads;
  if (settings.max_threads > 0) {
    config.threads = config.threads > 0 ? std::min(config.threads, settings.max_threads)
                                        : settings.max_threads;
  }
  config.loader_threads = settings.loader_threads;
  config.train.strategy = StrategyOf(training.strategy());
  config.train.unfreeze_groups = training.unfreeze_groups();
  config.train.head_only_epochs = training.head_only_epochs();
  config.train.unfreeze_every_epochs = training.unfreeze_every_epochs();
  config.train.epochs = training.epochs();
  config.train.optimizer = OptimizerOf(training.optimizer());
  config.train.learning_rate = training.learning_rate();
  config.train.backbone_lr_scale = training.backbone_lr_scale();
  config.auto_strategy.enabled = training.strategy() == TrainingSpec::AUTO;
  // Unset under AUTO: the chosen strategy's (engine::DefaultBackboneLrScale).
  if (training.has_backbone_lr_scale()) {
    config.auto_strategy.backbone_lr_scale = training.backbone_lr_scale();
  }
  if (training.has_learning_rate()) config.auto_strategy.learning_rate = training.learning_rate();
  config.train.momentum = training.momentum();
  config.train.nesterov = training.nesterov();
  config.train.weight_decay = training.weight_decay();
  config.train.lr_schedule = ScheduleOf(training.lr_schedule());
  config.train.warmup_epochs = training.warmup_epochs();
  // Those of another schedule are unset (0), and the engine does not read them.
  config.train.step_epochs = training.step_epochs();
  config.train.step_gamma = training.step_gamma();
  config.train.min_learning_rate = training.min_learning_rate();
  config.train.clip_grad_norm = training.clip_grad_norm();
  config.train.label_smoothing = training.label_smoothing();
  config.class_weights = {training.class_weights().begin(), training.class_weights().end()};
  config.balanced_class_weights = training.balanced_class_weights();
  config.early_stopping = EarlyStoppingOf(training);
  // A job that asks for the CPU runs there even on a GPU worker.
  config.train.device = spec.resources().device() == "cpu" ? "cpu" : settings.device;
  config.precision = training.precision() == tl::v1::BF16   ? engine::PrecisionRequest::kBFloat16
                     : training.precision() == tl::v1::AUTO ? engine::PrecisionRequest::kAuto
                                                                  : engine::PrecisionRequest::kFloat32;
  config.train.channels_last = training.channels_last();
  if (assignment.replica_count() > 1) {
    // One rank of a gang: peers meet at rank 0's rendezvous store, under a key of this
    // attempt, and this worker's process group binds to its own replica address.
    if (settings.replica_address.empty()) {
      return absl::FailedPreconditionError(
          "a data-parallel assignment reached a worker without --replica_address");
    }
    config.distributed.world_size = assignment.replica_count();
    config.distributed.rank = assignment.replica_rank();
    config.distributed.store_host = assignment.rendezvous_host();
    config.distributed.store_port = assignment.rendezvous_port();
    config.distributed.local_address = settings.replica_address;
    config.distributed.key_prefix = assignment.rendezvous_key();
  }
  config.provenance = absl::StrCat("trained by tl job ", assignment.job_id(), " (",
                                   TrainingSpec::Strategy_Name(training.strategy()), " on ",
                                   spec.dataset().train_dir(), spec.dataset().train_csv(), ")");
  return config;
}

JobRunner::JobRunner(tl::v1::Assignment assignment, WorkerSettings settings, Report report)
    : assignment_(std::move(assignment)), settings_(std::move(settings)), report_(std::move(report)) {}

JobRunner::~JobRunner() {
  Cancel();
  Join();
}

void JobRunner::Start() { thread_ = std::thread([this] { Run(); }); }

void JobRunner::Cancel() { cancel_requested_ = true; }

void JobRunner::Pause() { pause_requested_ = true; }

void JobRunner::Release() {
  release_requested_ = true;
  cancel_requested_ = true;
}

void JobRunner::Log(const std::string& text) {
  LogInfo("job ", assignment_.job_id(), " ", text);
  WorkerMessage message;
  tl::v1::JobLog& log = *message.mutable_log();
  log.set_job_id(assignment_.job_id());
  log.set_attempt(assignment_.attempt());
  tl::v1::LogLine& line = *log.add_lines();
  *line.mutable_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  line.set_text(text);
  report_(message);
}

void JobRunner::Join() {
  if (thread_.joinable()) thread_.join();
}

void JobRunner::SetResult(const engine::ImageJobResult& result, tl::v1::JobResult& out) const {
  out.set_model_path(RelativeTo(settings_.artifact_root, result.model_path));
  out.set_model_info_path(RelativeTo(settings_.artifact_root, result.model_info_path));
  out.set_backbone_path(RelativeTo(settings_.artifact_root, result.backbone_path));
  out.set_metrics_path(RelativeTo(settings_.artifact_root, result.metrics_path));
  *out.mutable_dataset() = ToProto(result.dataset);
  if (!result.epochs.empty()) {
    *out.mutable_final_metrics() = EpochMetricsProto(result.epochs.back(), assignment_.attempt());
  }
  out.set_train_seconds(result.seconds);
  out.set_features_cached(result.features_cached);
  out.set_features_from_disk(result.features_from_disk);
  if (!result.report_path.empty()) {
    out.set_report_path(RelativeTo(settings_.artifact_root, result.report_path));
    out.set_confusion_matrix_path(
        RelativeTo(settings_.artifact_root, result.confusion_matrix_path));
  }
  SetReports(result.reports, out);
  out.set_best_epoch(result.best_epoch);
  out.set_stopped_early(result.stopped_early);
  if (result.auto_decision) *out.mutable_auto_strategy() = ToProto(*result.auto_decision);
  if (result.sizing.epochs > 0) *out.mutable_data_sizing() = ToProto(result.sizing);
  if (!result.precision.reason.empty()) {
    out.set_precision(result.precision.precision == engine::Precision::kBFloat16
                          ? tl::v1::BF16
                          : tl::v1::FP32);
    out.set_precision_reason(result.precision.reason);
  }
}

void JobRunner::Run() {
  WorkerMessage message;
  JobFinished& finished = *message.mutable_finished();
  finished.set_job_id(assignment_.job_id());
  finished.set_attempt(assignment_.attempt());
  Log(absl::StrCat("attempt ", assignment_.attempt(), " starting on ", settings_.device,
                   assignment_.replica_count() > 1
                       ? absl::StrCat(" as rank ", assignment_.replica_rank(), " of ",
                                      assignment_.replica_count())
                       : ""));
  absl::StatusOr<engine::ImageJobConfig> config = EngineConfigFor(assignment_, settings_);
  if (!config.ok()) {
    finished.set_outcome(JobFinished::FAILED);
    finished.set_error(std::string(config.status().message()));
  } else {
    ReportingObserver observer(assignment_, report_, cancel_requested_, pause_requested_,
                               [this](const std::string& text) { Log(text); },
                               settings_.listener.get());
    try {
      const engine::ImageJobResult result = engine::RunImageJob(*config, observer);
      switch (result.outcome.kind) {
        case engine::RunOutcome::Kind::kFinished:
          finished.set_outcome(JobFinished::SUCCEEDED);
          // Rank 0 of a gang reports the result; the others exported nothing.
          if (assignment_.replica_rank() == 0) SetResult(result, *finished.mutable_result());
          break;
        case engine::RunOutcome::Kind::kCancelled:
          if (release_requested_) {
            finished.set_outcome(JobFinished::RELEASED);
            finished.set_error("the worker is shutting down");
          } else {
            finished.set_outcome(JobFinished::CANCELLED);
            finished.set_error(result.outcome.reason);
          }
          break;
        case engine::RunOutcome::Kind::kPaused:
          finished.set_outcome(JobFinished::PAUSED);
          finished.set_error(result.outcome.reason);
          break;
      }
    } catch (const engine::EngineError& error) {
      switch (error.kind()) {
        case engine::ErrorKind::kInternal:
        case engine::ErrorKind::kUnavailable:
          finished.set_outcome(JobFinished::FAILED);
          finished.set_retryable(true);
          break;
        case engine::ErrorKind::kInvalidArgument:
        case engine::ErrorKind::kFailedPrecondition:
          // The spec, the files or the data are at fault: another attempt would fail the same way.
          finished.set_outcome(JobFinished::FAILED);
          break;
      }
      finished.set_error(error.what());
    } catch (const std::exception& error) {
      // LibTorch and OpenCV report their own failures this way; the first
      // line is the useful one, the rest a C++ backtrace. Out of memory, a
      // broken device or a library bug may pass on another worker: retried.
      std::string text = error.what();
      finished.set_outcome(JobFinished::FAILED);
      finished.set_retryable(true);
      finished.set_error("internal error: " + text.substr(0, text.find('\n')));
    }
  }
  if (settings_.listener) settings_.listener->OnJobEnded(assignment_.job_id());
  Log(absl::StrCat(JobFinished::Outcome_Name(finished.outcome()),
                   finished.error().empty() ? "" : ": ", finished.error()));
  // Finished before the report goes out: the scheduler may answer the report
  // with the next assignment at once, and this runner must not look busy then.
  finished_ = true;
  report_(message);
}

}  // namespace tl::worker
