#include "job/auto_strategy.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "base/atomic_file.h"
#include "base/errors.h"
#include "train/feature_cache.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;

constexpr char kDecisionFile[] = "auto.json";

std::string Points(double fraction) {
  std::ostringstream text;
  text.precision(1);
  text << std::fixed << fraction * 100 << " points";
  return text.str();
}

// The probe's runs report nothing to the job's observer (they are not the
// job's epochs); only a stop request reaches them.
class ProbeObserver : public TrainObserver {
 public:
  explicit ProbeObserver(const std::function<bool()>& stop_requested)
      : stop_requested_(stop_requested) {}
  bool StopRequested() override { return stop_requested_ && stop_requested_(); }

 private:
  const std::function<bool()>& stop_requested_;
};

// Constant learning rate, no warmup, no class weights or smoothing: the
// probe compares strategies, not recipes.
TrainOptions ProbeTrainOptions(const TrainOptions& job, Strategy strategy, int epochs) {
  TrainOptions options;
  options.strategy = strategy;
  options.unfreeze_groups = job.unfreeze_groups;
  options.epochs = epochs;
  options.optimizer = job.optimizer;
  options.learning_rate = job.learning_rate;
  options.momentum = job.momentum;
  options.nesterov = job.nesterov;
  options.weight_decay = job.weight_decay;
  options.seed = job.seed;
  options.device = job.device;
  return options;
}

double LastAccuracy(const std::vector<EpochStats>& epochs) {
  return epochs.empty() ? 0 : epochs.back().val_accuracy;
}

// Runs one probe; the accuracy it reached on the held-out slice.
OrStopped<double> ProbeAccuracy(Trainer& trainer, BatchSource& train, BatchSource* holdout,
                                TrainObserver& observer) {
  const Trainer::RunResult run = trainer.Run(train, holdout, observer);
  if (!run.outcome.finished()) return run.outcome;
  return LastAccuracy(run.epochs);
}

Strategy StrategyFromName(const std::string& name, const std::string& origin) {
  for (Strategy strategy : {Strategy::kFeatureExtraction, Strategy::kFineTune, Strategy::kFull}) {
    if (name == StrategyName(strategy)) return strategy;
  }
  throw InvalidArgument(origin + ": unknown strategy \"" + name + "\"");
}

}  // namespace

AutoDecision DecideStrategy(const AutoProbeFigures& figures, const AutoRule& rule) {
  AutoDecision decision;
  decision.figures = figures;
  const double gap = figures.fine_tune_accuracy - figures.feature_extraction_accuracy;
  if (gap > rule.full_margin && figures.images_per_class >= rule.full_images_per_class) {
    decision.strategy = Strategy::kFull;
    decision.reason = "fine-tuning beat the frozen backbone by " + Points(gap) + " (over " +
                      Points(rule.full_margin) + ") with " +
                      std::to_string(static_cast<int64_t>(figures.images_per_class)) +
                      " images per class (at least " +
                      std::to_string(static_cast<int64_t>(rule.full_images_per_class)) +
                      "): the data is far from the backbone's and enough to train every layer";
  } else if (gap > rule.fine_tune_margin) {
    decision.strategy = Strategy::kFineTune;
    decision.reason = "fine-tuning beat the frozen backbone by " + Points(gap) + " (over " +
                      Points(rule.fine_tune_margin) + "): the backbone's features need adapting";
  } else {
    decision.strategy = Strategy::kFeatureExtraction;
    decision.reason = "fine-tuning gained " + Points(gap) + " over the frozen backbone (not over " +
                      Points(rule.fine_tune_margin) + "): its features already fit the data";
  }
  return decision;
}

OrStopped<AutoDecision> ProbeStrategy(const AutoProbeJob& job,
                                      const AutoStrategyOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  AutoProbeFigures figures;
  figures.images_per_class =
      job.class_count > 0 ? static_cast<double>(job.train.size()) / job.class_count : 0;

  // A stratified subset bounds the probe's cost on large datasets; its own
  // seeds keep it apart from the job's validation split.
  std::vector<ImageSample> pool = job.train;
  const uint64_t seed = job.train_options.seed;
  if (static_cast<int64_t>(pool.size()) > options.max_probe_images) {
    pool = StratifiedSplit(pool, 1.0 - static_cast<double>(options.max_probe_images) / pool.size(),
                           seed + 101)
               .first;
  }
  auto [probe_train, holdout] = StratifiedSplit(pool, options.holdout_fraction, seed + 202);
  figures.probe_train_images = static_cast<int64_t>(probe_train.size());
  figures.probe_holdout_images = static_cast<int64_t>(holdout.size());
  std::set<int64_t> trained_classes;
  for (const ImageSample& sample : probe_train) trained_classes.insert(sample.label);
  if (holdout.empty() || trained_classes.size() < 2) {
    AutoDecision decision;
    decision.figures = figures;
    decision.strategy = Strategy::kFineTune;
    decision.probed = false;
    decision.reason = "too few images to probe (" + std::to_string(pool.size()) +
                      "); FINE_TUNE, the default strategy";
    return decision;
  }

  ImageFolderSourceOptions train_options;
  train_options.batch_size = job.batch_size;
  train_options.shuffle = true;
  train_options.drop_singleton_batch = true;
  train_options.seed = seed;
  train_options.threads = job.loader_threads;
  train_options.read_rules = job.read_rules;
  const ImageFolderSourceOptions holdout_options = EvaluationOptions(train_options);
  ProbeObserver observer(job.stop_requested);
  const std::string& backbone_bytes =
      job.backbone_open_as.empty() ? job.backbone_path : job.backbone_open_as;

  {  // (a) a linear head on features computed once
    TransferModel model(job.backbone_path, job.manifest, static_cast<int64_t>(job.class_count),
                        seed, job.backbone_open_as);
    Trainer trainer(model, ProbeTrainOptions(job.train_options, Strategy::kFeatureExtraction,
                                             options.head_epochs));
    FeatureTraining features(model, probe_train, holdout,
                             FeatureTraining::Options{"", backbone_bytes, job.preprocessing,
                                                      holdout_options, job.batch_size, seed,
                                                      trainer.device()});
    const OrStopped<double> accuracy =
        ProbeAccuracy(trainer, features.train(), features.validation(), observer);
    if (accuracy.stopped()) return accuracy.stop();
    figures.feature_extraction_accuracy = *accuracy;
  }
  {  // (b) a short fine-tune of the last layer group(s) with the head
    TransferModel model(job.backbone_path, job.manifest, static_cast<int64_t>(job.class_count),
                        seed, job.backbone_open_as);
    Trainer trainer(model, ProbeTrainOptions(job.train_options, Strategy::kFineTune,
                                             options.fine_tune_epochs));
    ImageFolderSource train_source(probe_train, job.preprocessing, train_options);
    ImageFolderSource holdout_source(holdout, job.preprocessing, holdout_options);
    train_source.Preload(job.decode_threads, job.stop_requested);
    holdout_source.Preload(job.decode_threads, job.stop_requested);
    const OrStopped<double> accuracy =
        ProbeAccuracy(trainer, train_source, &holdout_source, observer);
    if (accuracy.stopped()) return accuracy.stop();
    figures.fine_tune_accuracy = *accuracy;
  }

  AutoDecision decision = DecideStrategy(figures, options.rule);
  decision.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return decision;
}

OrStopped<AutoDecision> DecideOrReuseStrategy(const AutoProbeJob& job,
                                              const AutoStrategyOptions& options,
                                              const std::string& output_dir) {
  const fs::path file = fs::path(output_dir) / kDecisionFile;
  if (fs::exists(file)) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    // A decision that does not read back (damaged on disk) is probed again.
    try {
      AutoDecision decision = AutoDecisionFromJson(text.str(), file.string());
      decision.reused = true;
      return decision;
    } catch (const EngineError&) {
    }
  }
  OrStopped<AutoDecision> decision = ProbeStrategy(job, options);
  if (decision.stopped()) return decision;
  fs::create_directories(output_dir);
  WriteFileAtomically(file.string(), AutoDecisionToJson(*decision) + "\n");
  return decision;
}

double DefaultBackboneLrScale(Strategy strategy) {
  return strategy == Strategy::kFull ? 1.0 : 0.1;
}

void ApplyAutoDecision(const AutoDecision& decision, const AutoStrategyOptions& options,
                       TrainOptions& train) {
  train.strategy = decision.strategy;
  train.backbone_lr_scale =
      options.backbone_lr_scale.value_or(DefaultBackboneLrScale(decision.strategy));
  if (decision.strategy != Strategy::kFineTune) {
    train.head_only_epochs = 0;
    train.unfreeze_every_epochs = 0;
  }
}

std::string AutoDecisionToJson(const AutoDecision& decision) {
  const AutoProbeFigures& f = decision.figures;
  const nlohmann::json json = {{"strategy", StrategyName(decision.strategy)},
                               {"reason", decision.reason},
                               {"probed", decision.probed},
                               {"feature_extraction_accuracy", f.feature_extraction_accuracy},
                               {"fine_tune_accuracy", f.fine_tune_accuracy},
                               {"images_per_class", f.images_per_class},
                               {"probe_train_images", f.probe_train_images},
                               {"probe_holdout_images", f.probe_holdout_images},
                               {"probe_seconds", decision.seconds}};
  return json.dump(2);
}

AutoDecision AutoDecisionFromJson(const std::string& text, const std::string& origin) {
  try {
    const nlohmann::json json = nlohmann::json::parse(text);
    AutoDecision decision;
    decision.strategy = StrategyFromName(json.at("strategy").get<std::string>(), origin);
    decision.reason = json.at("reason").get<std::string>();
    decision.probed = json.at("probed").get<bool>();
    AutoProbeFigures& f = decision.figures;
    f.feature_extraction_accuracy = json.at("feature_extraction_accuracy").get<double>();
    f.fine_tune_accuracy = json.at("fine_tune_accuracy").get<double>();
    f.images_per_class = json.at("images_per_class").get<double>();
    f.probe_train_images = json.at("probe_train_images").get<int64_t>();
    f.probe_holdout_images = json.at("probe_holdout_images").get<int64_t>();
    decision.seconds = json.at("probe_seconds").get<double>();
    return decision;
  } catch (const nlohmann::json::exception& error) {
    throw InvalidArgument(origin + " is not a strategy decision: " + error.what());
  }
}

std::string DescribeAutoDecision(const AutoDecision& decision) {
  const AutoProbeFigures& f = decision.figures;
  std::ostringstream text;
  text.precision(4);
  text << "auto strategy: " << StrategyName(decision.strategy);
  if (decision.probed) {
    text << " (frozen head " << f.feature_extraction_accuracy << ", fine-tune "
         << f.fine_tune_accuracy << " on " << f.probe_holdout_images << " held-out of "
         << f.probe_train_images + f.probe_holdout_images << " probe images; "
         << f.images_per_class << " images per class";
    if (decision.reused) text << "; decided by an earlier attempt";
    text << ")";
  }
  text << ": " << decision.reason;
  return text.str();
}

}  // namespace tl::engine
