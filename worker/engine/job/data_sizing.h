// Defaults sized by the job's data: a spec that leaves training.epochs,
// training.batch_size or dataset.val_fraction unset gets them from the number
// of training images, which only the worker knows (the server sees paths,
// not folders). The rule's constants come from the learning curves in
// docs/RESULTS.md ("How the defaults were chosen", scripts/recipe_study.py);
// docs/API.md states the rule. What was used is kept in the job's result, in
// metrics.json, and in the stored spec (the scheduler fills the unset fields
// in from the worker's report), so a retried attempt trains alike.
#pragma once

#include <cstdint>
#include <string>

namespace tl::engine {

// Which of the three the job leaves to the data.
struct DataSizingRequest {
  bool epochs = false;
  bool batch_size = false;
  bool val_fraction = false;
  // A STEP schedule whose step_epochs the spec left unset (it had no epochs
  // to take a third of at submit): DefaultStepEpochs of the sized epochs.
  bool step_epochs = false;
  bool any() const { return epochs || batch_size || val_fraction; }
};

// The rule's constants.
struct DataSizingRule {
  // No validation slice below this many training images per class: every
  // image is worth more to training than to a score of a few images.
  double min_images_per_class_for_val = 50;
  // The slice held out at and above that size.
  double val_fraction = 0.1;
  // The batch is at most this share of the training images (at least
  // min_batch, at most max_batch), so that an epoch has several steps (the
  // loader deals the images evenly into them, BatchStart), and at least
  // `replicas`, the replicas of a data-parallel job, which each take a
  // share of every batch.
  double max_batch_share = 1.0 / 4;
  int min_batch = 8;
  int max_batch = 32;
  int replicas = 1;
  // Optimizer steps: at least min_steps, and steps_per_image for every
  // training image beyond; epochs are the steps over the steps of one epoch,
  // within [min_epochs, max_epochs].
  int64_t min_steps = 400;
  double steps_per_image = 0.3;
  int min_epochs = 3;
  int max_epochs = 300;
};

// What the rule gave (and the values a spec set, for the fields it set).
struct DataSizing {
  DataSizingRequest sized;  // which fields came from the rule
  int epochs = 0;
  int batch_size = 0;
  double val_fraction = 0;
  int64_t train_images = 0;  // after the validation slice
  int64_t steps = 0;         // optimizer steps of the whole run
  std::string reason;        // one line for people
};

// The validation slice for `images` training images in `classes` classes;
// a job that needs validation images (early stopping) always gets the
// slice.
double SizedValFraction(int64_t images, size_t classes, bool needs_validation = false,
                        const DataSizingRule& rule = {});
// The batch for `train_images` images after the slice.
int SizedBatchSize(int64_t train_images, const DataSizingRule& rule = {});
// The optimizer steps a run of `train_images` images wants.
int64_t SizedSteps(int64_t train_images, const DataSizingRule& rule = {});

// Optimizer steps of one epoch over `images` in batches of `batch_size` (a
// last, shorter batch counts), taking at least one image and a batch of one.
int64_t StepsPerEpoch(int64_t images, int batch_size);
// Epochs of `batch_size` that make SizedSteps (ceil(images / batch) steps
// an epoch), within the rule's bounds.
int SizedEpochs(int64_t train_images, int batch_size, const DataSizingRule& rule = {});

// Batch and epochs for a job of `train_images` training images, given the
// values the spec set for the fields not in `request`.
DataSizing SizeTraining(const DataSizingRequest& request, int64_t train_images,
                        int spec_batch_size, int spec_epochs, double val_fraction,
                        const DataSizingRule& rule = {});

// A third of the epochs after warmup, at least 1: the STEP schedule's
// step_epochs when the spec sets none. The server fills it in at submit when
// the spec sets epochs (server/spec/spec_fields.cc, StepEpochsFor, the same
// rule); here it follows sized epochs.
int DefaultStepEpochs(int epochs, int warmup_epochs);

std::string DataSizingToJson(const DataSizing& sizing);

}  // namespace tl::engine
