// Evaluation of a classifier on labelled image folders: the final report of
// a training job (validation split and test set), and the files it leaves
// in the job's output folder.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "data/image_folder.h"
#include "eval/evaluation_report.h"
#include "job/image_job.h"

namespace tl::engine {

// The images of `dir` (a folder per class) labelled by their class name's
// position in class_names, whatever order or subset of those classes the
// folder holds. Throws EngineError(kInvalidArgument) naming `field` for a
// class the model does not know.
std::vector<ImageSample> SamplesLabelledByName(const std::string& dir, const std::string& field,
                                               const std::vector<std::string>& class_names);

// Decodes `samples` (no augmentation), runs `evaluate` over them and makes
// the report of `split`. Fails naming `field` and `dir` when most images
// cannot be read; `stop_requested` is honoured while decoding.
EvaluationReport EvaluateImages(std::vector<ImageSample> samples,
                                const Preprocessing& preprocessing,
                                const ImageFolderSourceOptions& options,
                                const std::vector<std::string>& class_names,
                                const std::function<EvaluationStats(BatchSource&)>& evaluate,
                                const std::string& split, const std::string& dir,
                                const std::string& field,
                                const std::function<bool()>& stop_requested);

struct ReportFiles {
  std::string report_path;            // report.json: every report
  std::string confusion_matrix_path;  // confusion_matrix.png: the last report's
};

// Writes both into output_dir. The picture is of the last report (the test
// set when there is one), since that is the figure people judge a model by.
ReportFiles WriteReportFiles(const std::vector<EvaluationReport>& reports,
                             const std::string& output_dir);

// An evaluation job (config.evaluate_model_path set): the exported model
// classifies the labelled images of config.test_dir (else train_dir), with
// its own preprocessing and class names; report.json and
// confusion_matrix.png go to output_dir. The result holds the model's class
// names (no training or validation images), one report ("test") and the
// report files; no model and no epochs. Throws as RunImageJob does.
ImageJobResult RunEvaluationJob(const ImageJobConfig& config, ImageJobObserver& observer);

}  // namespace tl::engine
