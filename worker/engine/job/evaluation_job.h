// An evaluation job (JobSpec.evaluate): an exported model on labelled image
// folders, leaving only its reports behind.
#pragma once

#include "job/image_job.h"

namespace tl::engine {

// Runs when config.evaluate_model_path is set: the exported model
// classifies the labelled images of config.test_dir (else train_dir), with
// its own preprocessing and class names; report.json and
// confusion_matrix.png go to output_dir. The result holds the model's class
// names (no training or validation images), one report ("test") and the
// report files; no model and no epochs. Throws and stops as RunImageJob does.
ImageJobResult RunEvaluationJob(const ImageJobConfig& config, ImageJobObserver& observer);

}  // namespace tl::engine
