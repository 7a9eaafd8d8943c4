// The AUTO strategy: whether a job should train only a head on the frozen
// backbone, fine-tune its last layer groups, or train everything, decided
// from the job's own data. A probe on a small held-out slice of the training
// images compares a linear head on frozen features with a short fine-tune;
// how far fine-tuning gets ahead says how far the data is from what the
// backbone learned, and the images per class say whether there is enough
// data to train the whole backbone. The decision is kept in the job's
// output folder (auto.json), so a resumed job trains as it started.
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

// What the probe measured, and the size of the job's data.
struct AutoProbeFigures {
  // Accuracy on the probe's held-out slice after the last probe epoch.
  double feature_extraction_accuracy = 0;  // linear head, frozen backbone
  double fine_tune_accuracy = 0;           // head and last layer group(s)
  double images_per_class = 0;             // the job's training images / classes
  int64_t probe_train_images = 0;
  int64_t probe_holdout_images = 0;
};

// The rule's thresholds. Accuracies are fractions (0.03 is 3 points).
struct AutoRule {
  // Fine-tuning must beat the frozen head by more than this to be chosen.
  double fine_tune_margin = 0.03;
  // FULL needs a gap above this and at least full_images_per_class images
  // per class: training every layer on little data overfits.
  double full_margin = 0.10;
  double full_images_per_class = 1000;
};

struct AutoDecision {
  Strategy strategy = Strategy::kFeatureExtraction;
  AutoProbeFigures figures;
  std::string reason;   // one sentence for people
  double seconds = 0;   // the probe's
  bool probed = true;   // false: too few images to probe, the default was taken
  bool reused = false;  // read back from auto.json rather than probed now
};

// The rule, a pure function of the figures: FINE_TUNE when fine-tuning beats
// the frozen head by more than fine_tune_margin, FULL when in addition the
// gap exceeds full_margin and there are full_images_per_class images per
// class, else FEATURE_EXTRACTION.
AutoDecision DecideStrategy(const AutoProbeFigures& figures, const AutoRule& rule = {});

// The backbone_lr_scale of an AUTO job whose spec leaves it unset, by the
// strategy the probe chose: 1 for FULL, which trains the backbone as the
// head, else 0.1. The strategy is chosen here on the worker, so the rule has
// to live in the engine too; the server's table (server/spec/spec_fields.cc,
// BackboneLrScaleFor) states the same rule for strategies named at submit,
// and docs/API.md's training.backboneLrScale row documents it.
double DefaultBackboneLrScale(Strategy strategy);

// How an AUTO job probes, and what it keeps of the spec for the strategy it
// chooses. The worker sets enabled and backbone_lr_scale from the stored
// spec; the probe's bounds below are the engine's own.
struct AutoStrategyOptions {
  bool enabled = false;
  // The spec's training.backbone_lr_scale; absent: the chosen strategy's,
  // DefaultBackboneLrScale.
  std::optional<double> backbone_lr_scale;
  // Share of the probe's images held out (stratified, seeded) to score it.
  double holdout_fraction = 0.2;
  // The probe's cost bound: at most this many training images (a stratified
  // subset), a head trained for head_epochs on features computed once, and
  // fine_tune_epochs epochs of fine-tuning. The two get the same number of
  // epochs: with 10 against 2 the frozen head won every probe of
  // docs/RESULTS.md while fine-tuning won every real job.
  int64_t max_probe_images = 1000;
  int head_epochs = 5;
  int fine_tune_epochs = 5;
  AutoRule rule;
};

// Everything a probe needs of the job.
struct AutoProbeJob {
  std::string backbone_path;
  BackboneManifest manifest;
  size_t class_count = 0;
  std::vector<ImageSample> train;  // the job's training split
  Preprocessing preprocessing;
  // The job's training options: optimizer, learning rate, unfreeze_groups
  // (the fine-tune probe's), seed, device. Schedules and weights are not used.
  TrainOptions train_options;
  int batch_size = 32;
  int decode_threads = 1;
  int loader_threads = 1;
  std::function<bool()> stop_requested;  // true: the probe stops, cancelled
  // The name the backbone is loaded by (TransferModel's open_as); empty:
  // backbone_path.
  std::string backbone_open_as;
  ImageReadRules read_rules;  // the job's (image_file.h)
};

// Runs the probe and applies the rule; stops (cancelled) on a stop request.
OrStopped<AutoDecision> ProbeStrategy(const AutoProbeJob& job, const AutoStrategyOptions& options);

// The decision in output_dir/auto.json when there is one (a resumed job),
// else a new probe's, written there before training starts.
OrStopped<AutoDecision> DecideOrReuseStrategy(const AutoProbeJob& job,
                                              const AutoStrategyOptions& options,
                                              const std::string& output_dir);

// The chosen strategy and its defaults applied to a job's training options.
void ApplyAutoDecision(const AutoDecision& decision, const AutoStrategyOptions& options,
                       TrainOptions& train);

std::string AutoDecisionToJson(const AutoDecision& decision);
// Throws EngineError(kInvalidArgument) naming `origin` for bad JSON.
AutoDecision AutoDecisionFromJson(const std::string& text, const std::string& origin);
// One line for logs: the chosen strategy, the figures and why.
std::string DescribeAutoDecision(const AutoDecision& decision);

}  // namespace tl::engine
