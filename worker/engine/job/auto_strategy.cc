#include "job/auto_strategy.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "base/atomic_file.h"
#include "base/errors.h"
#include "job/data_sizing.h"
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

// A learning rate as people write it: 0.003, 1e-05.
std::string Rate(double rate) {
  std::ostringstream text;
  text << rate;
  return text.str();
}

// The probe's runs are not the job's epochs: their batches reach the job
// as the probe's progress (run `run` of `runs`), their epochs not at all; a
// stop request reaches them.
class ProbeObserver : public TrainObserver {
 public:
  ProbeObserver(const AutoProbeJob& job, int runs) : job_(job), runs_(runs) {}
  bool StopRequested() override { return job_.stop_requested && job_.stop_requested(); }
  void OnBatch(const BatchProgress& progress) override {
    if (!job_.progress) return;
    BatchProgress probe = progress;
    probe.epoch = run_;
    probe.epochs = runs_;
    probe.auto_probe = true;
    job_.progress(probe);
  }
  void NextRun() { ++run_; }
  // Runs decided on after the count was first shown (a rate check).
  void AddRuns(int runs) { runs_ += runs; }

 private:
  const AutoProbeJob& job_;
  int runs_;
  int run_ = 0;
};

// The candidate's recipe at a constant learning rate, no warmup, no class
// weights or smoothing: the probe compares candidates, not schedules.
TrainOptions ProbeTrainOptions(const TrainOptions& job, const AutoStrategyOptions& auto_options,
                               const AutoCandidate& candidate, int epochs) {
  TrainOptions options;
  options.strategy = candidate.strategy;
  options.unfreeze_groups =
      candidate.strategy == Strategy::kFineTune ? candidate.unfreeze_groups : job.unfreeze_groups;
  options.epochs = epochs;
  options.optimizer = job.optimizer;
  options.learning_rate = candidate.learning_rate;
  options.backbone_lr_scale =
      auto_options.backbone_lr_scale.value_or(DefaultBackboneLrScale(candidate.strategy));
  options.momentum = job.momentum;
  options.nesterov = job.nesterov;
  options.weight_decay = job.weight_decay;
  options.seed = job.seed;
  options.device = job.device;
  options.precision = job.precision;
  return options;
}

// Runs one probe; how it did on the held-out slice, scored once after the
// last epoch (scoring every epoch would cost as much again on small folds).
OrStopped<EvaluationStats> ProbeAccuracy(Trainer& trainer, BatchSource& train,
                                         BatchSource& holdout, TrainObserver& observer) {
  const Trainer::RunResult run = trainer.Run(train, nullptr, observer);
  if (!run.outcome.finished()) return run.outcome;
  const int last_epoch = run.epochs.empty() ? 1 : run.epochs.back().epoch;
  return trainer.Evaluate(holdout, last_epoch);
}

Strategy StrategyFromName(const std::string& name, const std::string& origin) {
  for (Strategy strategy : {Strategy::kFeatureExtraction, Strategy::kFineTune, Strategy::kFull}) {
    if (name == StrategyName(strategy)) return strategy;
  }
  throw InvalidArgument(origin + ": unknown strategy \"" + name + "\"");
}

std::string CandidateName(const AutoCandidate& candidate) {
  std::string name = StrategyName(candidate.strategy);
  if (candidate.strategy == Strategy::kFineTune) {
    name += " (last " + std::to_string(candidate.unfreeze_groups) + " groups)";
  }
  return name + " at " + Rate(candidate.learning_rate);
}

using Fold = std::pair<std::vector<ImageSample>, std::vector<ImageSample>>;  // train, held out

// k stratified folds: each class's images, shuffled by the seed, are dealt
// to the folds in turn, so every image is held out exactly once.
std::vector<Fold> StratifiedFolds(const std::vector<ImageSample>& samples, int folds,
                                  uint64_t seed) {
  std::map<int64_t, std::vector<const ImageSample*>> by_class;
  for (const ImageSample& sample : samples) by_class[sample.label].push_back(&sample);
  std::vector<Fold> out(folds);
  std::mt19937_64 random(seed);
  for (auto& [label, members] : by_class) {
    std::shuffle(members.begin(), members.end(), random);
    for (size_t i = 0; i < members.size(); ++i) {
      for (int fold = 0; fold < folds; ++fold) {
        (static_cast<int>(i % folds) == fold ? out[fold].second : out[fold].first)
            .push_back(*members[i]);
      }
    }
  }
  return out;
}

}  // namespace

int64_t HeldOutImages(const AutoProbeFigures& figures) {
  if (figures.folds <= 0) return 0;
  return figures.folds > 1 ? figures.probe_train_images + figures.probe_holdout_images
                           : figures.probe_holdout_images;
}

double HeldOutDifferenceError(double a, double b, int64_t images) {
  if (images <= 0) return 0;
  const double p = std::clamp((a + b) / 2, 0.0, 1.0);
  return std::sqrt(2 * p * (1 - p) / static_cast<double>(images));
}

DiscordantImages CountDiscordant(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  DiscordantImages counts;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if ((a[i] != 0) == (b[i] != 0)) continue;
    ++(a[i] != 0 ? counts.only_a : counts.only_b);
  }
  return counts;
}

double PairedDifferenceError(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  if (a.size() != b.size() || a.size() < 2) return -1;
  // Each difference is +1 (only a right), -1 (only b) or 0: their sum is
  // only_a - only_b and their squares sum to the discordant count.
  const DiscordantImages counts = CountDiscordant(a, b);
  const auto n = static_cast<double>(a.size());
  const auto sum = static_cast<double>(counts.only_a - counts.only_b);
  const auto squares = static_cast<double>(counts.total());
  const double variance = std::max(0.0, (squares - sum * sum / n) / (n - 1));
  return std::sqrt(variance / n);
}

namespace {

// The strategy half of DecideStrategy: the candidate scored on every fold
// that the rule picks (nullptr: none), and why.
const AutoCandidate* ChooseCandidate(const std::vector<AutoCandidate>& candidates,
                                     const AutoProbeFigures& figures, const AutoRule& rule,
                                     AutoDecision& decision) {
  const AutoCandidate* best = nullptr;
  const AutoCandidate* fine_tune = nullptr;
  for (const AutoCandidate& candidate : candidates) {
    if (candidate.first_fold_only) continue;
    if (best == nullptr || candidate.accuracy > best->accuracy) best = &candidate;
    if (candidate.strategy == Strategy::kFineTune && fine_tune == nullptr) fine_tune = &candidate;
  }
  if (best == nullptr) {
    decision.reason = "no candidate was scored; FINE_TUNE, the default strategy";
    return nullptr;
  }
  if (fine_tune != nullptr && best != fine_tune) {
    const double paired = PairedDifferenceError(best->held_out_correct, fine_tune->held_out_correct);
    const int64_t images = paired >= 0 ? static_cast<int64_t>(best->held_out_correct.size())
                                       : HeldOutImages(figures);
    const double error =
        paired >= 0 ? paired : HeldOutDifferenceError(best->accuracy, fine_tune->accuracy, images);
    const double noise = rule.keep_default_standard_errors * error;
    const double margin = std::max(rule.keep_default_margin, noise);
    if (best->accuracy - fine_tune->accuracy <= margin) {
      std::string why;
      if (noise > rule.keep_default_margin) {
        why = paired >= 0 ? " (the noise of a paired difference on " + std::to_string(images) +
                                " held-out images, " +
                                std::to_string(CountDiscordant(best->held_out_correct,
                                                               fine_tune->held_out_correct)
                                                   .total()) +
                                " of them called differently)"
                          : " (the noise of a difference on " + std::to_string(images) +
                                " held-out images)";
      }
      decision.reason = CandidateName(*best) + " scored " +
                        Points(best->accuracy - fine_tune->accuracy) + " above " +
                        CandidateName(*fine_tune) + ", not over " + Points(margin) + why +
                        ": the default strategy stays";
      return fine_tune;
    }
  }
  std::string others;
  for (const AutoCandidate& candidate : candidates) {
    if (&candidate == best || candidate.first_fold_only) continue;
    others += (others.empty() ? "" : ", ") + CandidateName(candidate) + " by " +
              Points(best->accuracy - candidate.accuracy);
  }
  decision.reason = CandidateName(*best) + " scored best on the held-out images" +
                    (others.empty() ? "" : " (above " + others + ")");
  return best;
}

}  // namespace

AutoDecision DecideStrategy(const std::vector<AutoCandidate>& candidates,
                            const AutoProbeFigures& figures, const AutoRule& rule) {
  AutoDecision decision;
  decision.figures = figures;
  decision.candidates = candidates;
  const AutoCandidate* chosen = ChooseCandidate(candidates, figures, rule, decision);
  if (chosen == nullptr) return decision;
  decision.strategy = chosen->strategy;
  decision.learning_rate = chosen->learning_rate;
  // Its rate: a rate of the same recipe tried on the first fold alone wins
  // where it scored higher there than the chosen candidate did.
  if (chosen->fold_accuracies.empty()) return decision;
  const double first_fold = chosen->fold_accuracies.front();
  const AutoCandidate* faster = nullptr;
  bool checked = false;
  for (const AutoCandidate& candidate : candidates) {
    if (!candidate.first_fold_only || candidate.strategy != chosen->strategy ||
        candidate.unfreeze_groups != chosen->unfreeze_groups ||
        candidate.fold_accuracies.empty()) {
      continue;
    }
    const double score = candidate.fold_accuracies.front();
    std::ostringstream line;
    line.precision(4);
    line << "; " << candidate.learning_rate << " scored " << score << " on the "
         << (figures.folds > 1 ? "first fold" : "held-out slice") << " against " << first_fold
         << " at " << chosen->learning_rate;
    decision.reason += line.str();
    checked = true;
    if (score > (faster == nullptr ? first_fold : faster->fold_accuracies.front())) {
      faster = &candidate;
    }
  }
  if (faster != nullptr) decision.learning_rate = faster->learning_rate;
  if (checked) decision.reason += ": trained at " + Rate(decision.learning_rate);
  return decision;
}

int ProbeRunEpochs(int64_t final_images, int final_epochs, int batch_size, int64_t fold_images,
                   int64_t runs, double probe_budget) {
  const int64_t final_steps =
      static_cast<int64_t>(std::max(final_epochs, 1)) * StepsPerEpoch(final_images, batch_size);
  const int64_t steps_per_run = std::max<int64_t>(
      1, static_cast<int64_t>(probe_budget * final_steps / std::max<int64_t>(runs, 1)));
  const int64_t fold_steps = StepsPerEpoch(fold_images, batch_size);
  const int64_t budget_epochs = (steps_per_run + fold_steps - 1) / fold_steps;
  return static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(budget_epochs, std::max(final_epochs, 1))));
}

OrStopped<AutoDecision> ProbeStrategy(const AutoProbeJob& job,
                                      const AutoStrategyOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const AutoRule& rule = options.rule;
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
  const double pool_per_class =
      job.class_count > 0 ? static_cast<double>(pool.size()) / job.class_count : 0;
  std::vector<Fold> folds;
  if (pool_per_class < rule.kfold_below_images_per_class) {
    folds = StratifiedFolds(pool, rule.folds, seed + 202);
  } else {
    folds.push_back(StratifiedSplit(pool, options.holdout_fraction, seed + 202));
  }
  figures.folds = static_cast<int>(folds.size());
  figures.probe_train_images = static_cast<int64_t>(folds.front().first.size());
  figures.probe_holdout_images = static_cast<int64_t>(folds.front().second.size());
  bool probeable = true;
  for (const Fold& fold : folds) {
    std::set<int64_t> trained_classes;
    for (const ImageSample& sample : fold.first) trained_classes.insert(sample.label);
    probeable = probeable && !fold.second.empty() && trained_classes.size() >= 2;
  }
  if (!probeable) {
    AutoDecision decision;
    decision.figures = figures;
    decision.strategy = Strategy::kFineTune;
    decision.probed = false;
    decision.reason = "too few images to probe (" + std::to_string(pool.size()) +
                      "); FINE_TUNE, the default strategy";
    return decision;
  }

  // The candidates, in the order tried: the head on features, the fine-tune,
  // FULL (unfreezing every group is FULL's candidate), each at its
  // strategy's first rate, on every fold. Then the chosen strategy's other
  // rates (ProbeLearningRates), on the first fold alone.
  const auto rates = [&](Strategy strategy) {
    return options.learning_rate ? std::vector<double>{*options.learning_rate}
                                 : ProbeLearningRates(strategy, job.train_options.optimizer);
  };
  std::vector<AutoCandidate> candidates;
  const int groups = static_cast<int>(job.manifest.layer_groups.size());
  for (Strategy strategy : {Strategy::kFeatureExtraction, Strategy::kFineTune, Strategy::kFull}) {
    if (strategy == Strategy::kFineTune && job.train_options.unfreeze_groups >= groups) continue;
    AutoCandidate candidate;
    candidate.strategy = strategy;
    candidate.learning_rate = rates(strategy).front();
    if (strategy == Strategy::kFineTune) {
      candidate.unfreeze_groups = job.train_options.unfreeze_groups;
    }
    candidates.push_back(candidate);
  }

  // Every run of a candidate that trains backbone layers gets an equal share
  // of the budget; the frozen head gets as many epochs, which cost little.
  // A rate check is one more run of that length, beyond the budget, so that
  // the runs that choose the strategy are as long with it as without.
  const int64_t runs = static_cast<int64_t>(candidates.size() - 1) * figures.folds;
  ImageFolderSourceOptions train_options;
  train_options.batch_size = job.batch_size;
  train_options.shuffle = true;
  train_options.drop_singleton_batch = true;
  train_options.seed = seed;
  train_options.threads = job.loader_threads;
  train_options.read_rules = job.read_rules;
  const ImageFolderSourceOptions holdout_options = EvaluationOptions(train_options);
  ProbeObserver observer(job, static_cast<int>(runs + figures.folds));
  const std::string& backbone_bytes =
      job.backbone_open_as.empty() ? job.backbone_path : job.backbone_open_as;

  std::optional<FeatureTable> pool_features;
  // Trains `candidate` on fold f and scores it on the images the fold held out.
  const auto run_fold = [&](AutoCandidate& candidate, size_t f) -> std::optional<RunOutcome> {
    const auto run_start = std::chrono::steady_clock::now();
    observer.NextRun();
    const auto& [fold_train, fold_holdout] = folds[f];
    const int epochs =
        ProbeRunEpochs(static_cast<int64_t>(job.train.size()), job.train_options.epochs,
                       job.batch_size, static_cast<int64_t>(fold_train.size()), runs,
                       options.probe_budget);
    candidate.epochs = epochs;
    const TrainOptions probe = ProbeTrainOptions(job.train_options, options, candidate, epochs);
    TransferModel model(job.backbone_path, job.manifest, static_cast<int64_t>(job.class_count),
                        seed, job.backbone_open_as);
    Trainer trainer(model, probe);
    OrStopped<EvaluationStats> scored = EvaluationStats{};
    if (candidate.strategy == Strategy::kFeatureExtraction) {
      // A linear head on features computed once for every fold (or found
      // in the worker's cache).
      if (!pool_features) {
        pool_features.emplace(model, pool,
                              FeatureTable::Options{job.feature_cache_dir, backbone_bytes,
                                                    job.preprocessing, holdout_options,
                                                    trainer.device(), job.stop_requested,
                                                    job.feature_cache_max_bytes,
                                                    job.train_options.precision});
        if (pool_features->stopped()) {
          return RunOutcome::Cancelled("stopped on request while computing the features");
        }
      }
      FeatureTraining features(model, *pool_features, fold_train, fold_holdout, job.batch_size,
                               seed);
      // A fold whose held-out images are all unreadable scores nothing.
      scored = features.validation() == nullptr
                   ? OrStopped<EvaluationStats>(EvaluationStats{})
                   : ProbeAccuracy(trainer, features.train(), *features.validation(), observer);
    } else {
      ImageFolderSource train_source(fold_train, job.preprocessing, train_options);
      ImageFolderSource holdout_source(fold_holdout, job.preprocessing, holdout_options);
      train_source.Preload(job.decode_threads, job.stop_requested);
      holdout_source.Preload(job.decode_threads, job.stop_requested);
      scored = ProbeAccuracy(trainer, train_source, holdout_source, observer);
    }
    if (scored.stopped()) return scored.stop();
    const double accuracy = scored->accuracy;
    candidate.fold_accuracies.push_back(accuracy);
    candidate.held_out_correct.insert(candidate.held_out_correct.end(), scored->correct.begin(),
                                      scored->correct.end());
    double sum = 0;
    for (double fold_accuracy : candidate.fold_accuracies) sum += fold_accuracy;
    candidate.accuracy = sum / static_cast<double>(candidate.fold_accuracies.size());
    candidate.seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    if (job.notice) {
      std::ostringstream line;
      line.precision(4);
      line << "auto probe: " << CandidateName(candidate) << ", fold " << f + 1 << " of "
           << folds.size() << ": " << accuracy << " on " << fold_holdout.size()
           << " held-out images after " << epochs << " epochs";
      job.notice(line.str());
    }
    return std::nullopt;
  };

  for (AutoCandidate& candidate : candidates) {
    for (size_t f = 0; f < folds.size(); ++f) {
      if (std::optional<RunOutcome> stop = run_fold(candidate, f)) return *stop;
    }
    switch (candidate.strategy) {
      case Strategy::kFeatureExtraction:
        figures.feature_extraction_accuracy = candidate.accuracy;
        break;
      case Strategy::kFineTune:
        figures.fine_tune_accuracy = candidate.accuracy;
        break;
      case Strategy::kFull:
        figures.full_accuracy = candidate.accuracy;
        break;
    }
  }
  AutoDecision decision = DecideStrategy(candidates, figures, rule);
  // The chosen strategy's other rates, each on the first fold beside its
  // first rate's score there: one rung of successive halving, run only for
  // the strategy that won, so that the choice of strategy rests on each
  // strategy's default alone.
  const std::vector<double> chosen_rates = rates(decision.strategy);
  const auto chosen = std::find_if(candidates.begin(), candidates.end(), [&](const auto& c) {
    return c.strategy == decision.strategy;
  });
  if (chosen_rates.size() > 1 && chosen != candidates.end()) {
    const int unfreeze_groups = chosen->unfreeze_groups;
    observer.AddRuns(static_cast<int>(chosen_rates.size() - 1));
    for (size_t r = 1; r < chosen_rates.size(); ++r) {
      AutoCandidate check;
      check.strategy = decision.strategy;
      check.unfreeze_groups = unfreeze_groups;
      check.learning_rate = chosen_rates[r];
      check.first_fold_only = true;
      if (std::optional<RunOutcome> stop = run_fold(check, 0)) return *stop;
      candidates.push_back(check);
    }
    decision = DecideStrategy(candidates, figures, rule);
  }
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

double DefaultLearningRate(Strategy strategy, OptimizerKind optimizer) {
  if (optimizer == OptimizerKind::kSgd) return 0.01;
  switch (strategy) {
    case Strategy::kFeatureExtraction:
      return 0.01;
    case Strategy::kFull:
      return 0.001;
    default:
      return 0.003;
  }
}

std::vector<double> ProbeLearningRates(Strategy strategy, OptimizerKind optimizer) {
  const double rate = DefaultLearningRate(strategy, optimizer);
  if (strategy == Strategy::kFineTune && optimizer != OptimizerKind::kSgd) return {rate, 0.01};
  return {rate};
}

void ApplyAutoDecision(const AutoDecision& decision, const AutoStrategyOptions& options,
                       TrainOptions& train) {
  train.strategy = decision.strategy;
  train.learning_rate = options.learning_rate.value_or(
      decision.learning_rate > 0 ? decision.learning_rate
                                 : DefaultLearningRate(decision.strategy, train.optimizer));
  train.backbone_lr_scale =
      options.backbone_lr_scale.value_or(DefaultBackboneLrScale(decision.strategy));
  if (decision.strategy != Strategy::kFineTune) {
    train.head_only_epochs = 0;
    train.unfreeze_every_epochs = 0;
  }
}

std::string AutoDecisionToJson(const AutoDecision& decision) {
  const AutoProbeFigures& f = decision.figures;
  nlohmann::json candidates = nlohmann::json::array();
  for (const AutoCandidate& c : decision.candidates) {
    candidates.push_back({{"strategy", StrategyName(c.strategy)},
                          {"unfreeze_groups", c.unfreeze_groups},
                          {"learning_rate", c.learning_rate},
                          {"epochs", c.epochs},
                          {"fold_accuracies", c.fold_accuracies},
                          {"accuracy", c.accuracy},
                          {"seconds", c.seconds},
                          {"first_fold_only", c.first_fold_only}});
  }
  const nlohmann::json json = {{"strategy", StrategyName(decision.strategy)},
                               {"learning_rate", decision.learning_rate},
                               {"reason", decision.reason},
                               {"probed", decision.probed},
                               {"feature_extraction_accuracy", f.feature_extraction_accuracy},
                               {"fine_tune_accuracy", f.fine_tune_accuracy},
                               {"full_accuracy", f.full_accuracy},
                               {"images_per_class", f.images_per_class},
                               {"folds", f.folds},
                               {"probe_train_images", f.probe_train_images},
                               {"probe_holdout_images", f.probe_holdout_images},
                               {"probe_seconds", decision.seconds},
                               {"candidates", candidates}};
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
    // Decisions of earlier versions compared two candidates on one slice.
    f.full_accuracy = json.value("full_accuracy", 0.0);
    f.folds = json.value("folds", 1);
    // And chose no rate.
    decision.learning_rate = json.value("learning_rate", 0.0);
    for (const nlohmann::json& c : json.value("candidates", nlohmann::json::array())) {
      AutoCandidate candidate;
      candidate.strategy = StrategyFromName(c.at("strategy").get<std::string>(), origin);
      candidate.unfreeze_groups = c.at("unfreeze_groups").get<int>();
      candidate.learning_rate = c.at("learning_rate").get<double>();
      candidate.epochs = c.at("epochs").get<int>();
      candidate.fold_accuracies = c.at("fold_accuracies").get<std::vector<double>>();
      candidate.accuracy = c.at("accuracy").get<double>();
      candidate.seconds = c.at("seconds").get<double>();
      candidate.first_fold_only = c.value("first_fold_only", false);
      decision.candidates.push_back(std::move(candidate));
    }
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
  if (decision.learning_rate > 0) text << " at " << decision.learning_rate;
  if (decision.probed) {
    text << " (";
    for (size_t i = 0; i < decision.candidates.size(); ++i) {
      const AutoCandidate& candidate = decision.candidates[i];
      text << (i == 0 ? "" : ", ") << CandidateName(candidate) << ": " << candidate.accuracy
           << (candidate.first_fold_only && f.folds > 1 ? " on the first fold" : "");
    }
    text << "; held-out accuracy over " << f.folds << (f.folds == 1 ? " fold" : " folds")
         << " of " << f.probe_train_images + f.probe_holdout_images << " probe images; "
         << f.images_per_class << " images per class";
    if (decision.reused) text << "; decided by an earlier attempt";
    text << ")";
  }
  text << ": " << decision.reason;
  return text.str();
}

}  // namespace tl::engine
