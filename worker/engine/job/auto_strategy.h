// The AUTO strategy: whether a job should train only a head on the frozen
// backbone, fine-tune its last layer groups, or train everything, decided
// from the job's own data. The probe trains each candidate recipe (a linear
// head on frozen features computed once, a fine-tune of the last layer
// groups, the whole network; each at its strategy's learning rate) on folds
// of the training images and scores it on the images each fold held out:
// three folds when there are few images per class, so that every image is
// scored once, else one held-out slice. The strategy chosen, where it has
// more rates to try (ProbeLearningRates), tries them on the first fold and
// takes one that scores higher there than its first rate did. Its optimizer
// steps are bounded by a share of the final run's. The decision is kept in
// the job's output folder (auto.json), so a resumed job trains as it
// started.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/run_outcome.h"
#include "data/image_folder.h"
#include "model/manifest.h"
#include "model/transfer_model.h"
#include "train/trainer.h"

namespace tl::engine {

// One recipe the probe tried, and how it scored.
struct AutoCandidate {
  Strategy strategy = Strategy::kFineTune;
  int unfreeze_groups = 0;  // FINE_TUNE's
  double learning_rate = 0;
  int epochs = 0;  // of each fold's run
  // Accuracy on each fold's held-out images after its last epoch, and their mean.
  std::vector<double> fold_accuracies;
  double accuracy = 0;
  double seconds = 0;
  // A second rate of the chosen strategy, trained and scored on the first
  // fold alone: its accuracy is that fold's, and only the rate choice
  // reads it.
  bool first_fold_only = false;
  // Whether it got each held-out image right, fold after fold, in the same
  // order for every candidate (EvaluationStats.correct): the rule compares
  // two candidates image by image. Not kept in the decision's JSON.
  std::vector<uint8_t> held_out_correct;
};

// What the probe measured, and the size of the job's data. Accuracies are
// the candidates' means over the folds (0 for one not tried).
struct AutoProbeFigures {
  double feature_extraction_accuracy = 0;  // linear head, frozen backbone
  double fine_tune_accuracy = 0;           // head and last layer group(s)
  double full_accuracy = 0;                // every layer
  double images_per_class = 0;             // the job's training images / classes
  int folds = 0;
  // Of the first fold: images trained on and held out.
  int64_t probe_train_images = 0;
  int64_t probe_holdout_images = 0;
};

// The rule's thresholds. Accuracies are fractions (0.01 is 1 point).
struct AutoRule {
  // FINE_TUNE, the default strategy, stays unless another candidate beats
  // it by more than this, and by more than keep_default_standard_errors
  // standard errors of that difference on the probe's held-out images: on
  // a few dozen held-out images a gap of several points can be noise. Both
  // candidates are scored on the same images, so the error is the paired
  // one (PairedDifferenceError), which counts only the images the two call
  // differently; without per-image results it is that of two independent
  // samples (HeldOutDifferenceError), which is larger.
  double keep_default_margin = 0.01;
  double keep_default_standard_errors = 1.0;
  // Folds below this many probe images per class; at and above it one
  // held-out slice scores enough images.
  double kfold_below_images_per_class = 100;
  int folds = 3;
};

struct AutoDecision {
  Strategy strategy = Strategy::kFineTune;
  // The chosen candidate's rate; 0 when none was probed (the strategy's
  // default, or the spec's rate, applies).
  double learning_rate = 0;
  AutoProbeFigures figures;
  std::vector<AutoCandidate> candidates;
  std::string reason;   // one sentence for people
  double seconds = 0;   // the probe's
  bool probed = true;   // false: too few images to probe, the default was taken
  bool reused = false;  // read back from auto.json rather than probed now
};

// The held-out images the candidates' mean accuracies rest on: with folds,
// every image of the probe once; else the one slice. 0 for figures
// without folds (AutoProbeFigures{}).
int64_t HeldOutImages(const AutoProbeFigures& figures);

// One standard error of the difference between two accuracies `a` and `b`,
// each measured on `images` held-out images: sqrt(2 p (1 - p) / images) at
// their mean p. 0 for no images.
double HeldOutDifferenceError(double a, double b, int64_t images);

// Of images scored by two candidates (1 right, 0 wrong; the same images in
// the same order, the shorter list's length compared), those only the first
// got right and those only the second did.
struct DiscordantImages {
  int64_t only_a = 0;
  int64_t only_b = 0;
  int64_t total() const { return only_a + only_b; }
};
DiscordantImages CountDiscordant(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b);

// One standard error of the mean of a_i - b_i over images scored by two
// candidates (1 right, 0 wrong; the same images in the same order):
// sqrt(s^2 / n), s^2 the sample variance of the differences. Only the
// images the two call differently make it. -1 when the two do not cover
// the same number of images (at least 2).
double PairedDifferenceError(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b);

// The rule, a pure function of the candidates: of those scored on every
// fold, the most accurate, unless FINE_TUNE (when tried) is within
// keep_default_margin of it, or within
// keep_default_standard_errors of the difference's standard error: paired
// when both candidates' held_out_correct cover the same images, else
// HeldOutDifferenceError on the figures' HeldOutImages. Its rate is that
// candidate's, unless a first_fold_only candidate of the same recipe scored
// higher on the first fold.
AutoDecision DecideStrategy(const std::vector<AutoCandidate>& candidates,
                            const AutoProbeFigures& figures, const AutoRule& rule = {});

// The backbone_lr_scale of an AUTO job whose spec leaves it unset, by the
// strategy the probe chose: 1 for FULL, which trains the backbone as the
// head, else 0.1. The strategy is chosen here on the worker, so the rule has
// to live in the engine too; the server's table (server/spec/spec_fields.cc,
// BackboneLrScaleFor) states the same rule for strategies named at submit,
// and docs/API.md's training.backboneLrScale row documents it.
double DefaultBackboneLrScale(Strategy strategy);

// A strategy's default learning_rate by the optimizer: the rate each AUTO
// candidate is first tried at, and an AUTO job's rate where its decision
// holds none (no probe). The server's table for strategies named
// at submit (server/spec/spec_fields.cc, LearningRateFor) states the same
// rule, and docs/API.md's training.learningRate row documents it.
double DefaultLearningRate(Strategy strategy, OptimizerKind optimizer);

// The rates AUTO's probe tries for a strategy when the spec sets none, the
// default first (the one the strategy is chosen by). From the learning
// curves in docs/RESULTS.md ("How the defaults were chosen"): with Adam, a
// fine-tune at 0.01 scored within 0.2 points of 0.003 or above it (by up to
// 1.3 on the digits) at every size; FULL at 0.003 won on the digits and
// lost on Fashion-MNIST at 10 and 500 per class after the final run's
// steps while winning the probe's shorter runs there, so FULL keeps one
// rate; a head on features and SGD were not measured at other rates.
std::vector<double> ProbeLearningRates(Strategy strategy, OptimizerKind optimizer);

// How an AUTO job probes, and what it keeps of the spec for the strategy it
// chooses. The worker sets enabled, backbone_lr_scale and learning_rate
// from the stored spec; the probe's bounds below are the engine's own.
struct AutoStrategyOptions {
  bool enabled = false;
  // The spec's training.backbone_lr_scale; absent: the chosen strategy's,
  // DefaultBackboneLrScale.
  std::optional<double> backbone_lr_scale;
  // The spec's training.learning_rate, for every candidate; absent: each
  // candidate's strategy's rates, ProbeLearningRates.
  std::optional<double> learning_rate;
  // Share of the probe's images held out (stratified, seeded) to score it
  // when there are enough images per class for one slice.
  double holdout_fraction = 0.2;
  // At most this many training images (a stratified subset) take part.
  int64_t max_probe_images = 1000;
  // The candidates that train layers of the backbone, over all folds, take
  // at most this many times the final run's optimizer steps; the head on
  // cached features costs little beside them. A FULL step costs more than
  // a fine-tune's, and each fold decodes its images, so with the final run
  // an AUTO job costs 2 to 3 times one that names its strategy.
  // ProbeRunEpochs also caps each run at the final run's epochs.
  double probe_budget = 1.5;
  AutoRule rule;
};

// Everything a probe needs of the job.
struct AutoProbeJob {
  std::string backbone_path;
  BackboneManifest manifest;
  size_t class_count = 0;
  std::vector<ImageSample> train;  // the job's training split
  Preprocessing preprocessing;
  // The job's training options: optimizer, unfreeze_groups (the fine-tune
  // candidate's), epochs (with batch_size: the final run's steps, which
  // bound the probe's), seed, device, precision. Schedules and weights are
  // not used.
  TrainOptions train_options;
  int batch_size = 32;
  int decode_threads = 1;
  int loader_threads = 1;
  std::function<bool()> stop_requested;  // true: the probe stops, cancelled
  // The name the backbone is loaded by (TransferModel's open_as); empty:
  // backbone_path.
  std::string backbone_open_as;
  ImageReadRules read_rules;  // the job's (image_file.h)
  // A line for the job's log as each candidate is scored.
  std::function<void(const std::string&)> notice;
  // Each batch of the probe's runs, with auto_probe set and epoch / epochs
  // counting the runs (every candidate on every fold; a rate check, when
  // the chosen strategy has one, adds to the count as it starts).
  std::function<void(const BatchProgress&)> progress;
  // Where the frozen head's candidate finds or leaves the pool's features
  // (feature_cache.h); empty: computed in memory.
  std::string feature_cache_dir;
  int64_t feature_cache_max_bytes = 0;  // its bound; 0: none
};

// The epochs of one probe run of a candidate that trains backbone layers:
// an equal share, among `runs` such runs, of probe_budget times the final
// run's steps (`final_epochs` over `final_images` in batches of
// `batch_size`), and never more epochs over its `fold_images` than the final
// run makes over the whole set. On a large set the probe's images are a
// subset, and a share of the budget would train a candidate many more
// epochs over them than the final run will: the held-out score would then
// measure a longer regime than the one chosen, at a cost the decision does
// not need. At least one epoch.
int ProbeRunEpochs(int64_t final_images, int final_epochs, int batch_size, int64_t fold_images,
                   int64_t runs, double probe_budget);

// Runs the probe and applies the rule; stops (cancelled) on a stop request.
OrStopped<AutoDecision> ProbeStrategy(const AutoProbeJob& job, const AutoStrategyOptions& options);

// The decision in output_dir/auto.json when there is one (a resumed job),
// else a new probe's, written there before training starts.
OrStopped<AutoDecision> DecideOrReuseStrategy(const AutoProbeJob& job,
                                              const AutoStrategyOptions& options,
                                              const std::string& output_dir);

// The chosen strategy, its rate (unless the spec set one) and its defaults
// applied to a job's training options.
void ApplyAutoDecision(const AutoDecision& decision, const AutoStrategyOptions& options,
                       TrainOptions& train);

std::string AutoDecisionToJson(const AutoDecision& decision);
// Throws EngineError(kInvalidArgument) naming `origin` for bad JSON.
AutoDecision AutoDecisionFromJson(const std::string& text, const std::string& origin);
// One line for logs: the chosen strategy, the figures and why.
std::string DescribeAutoDecision(const AutoDecision& decision);

}  // namespace tl::engine
