// A classifier evaluated on labelled images, and the files its reports
// leave in a job's output folder: the final reports of a training job
// (validation split and test set) and of an evaluation job alike.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/run_outcome.h"
#include "data/image_folder.h"
#include "eval/evaluation_report.h"

namespace tl::engine {

// The images of `dir` (a folder per class) labelled by their class name's
// position in class_names, whatever order or subset of those classes the
// folder holds. Throws EngineError(kInvalidArgument) naming `field` for a
// class the model does not know.
std::vector<ImageSample> SamplesLabelledByName(const std::string& dir, const std::string& field,
                                               const std::vector<std::string>& class_names);

// Decodes `samples` (no augmentation), runs `evaluate` over them and makes
// the report of `split`. Fails naming `field` and `dir` when most images
// cannot be read; stops (cancelled) when `stop_requested` says so while
// decoding.
OrStopped<EvaluationReport> EvaluateImages(
    std::vector<ImageSample> samples, const Preprocessing& preprocessing,
    const ImageFolderSourceOptions& options, const std::vector<std::string>& class_names,
    const std::function<EvaluationStats(BatchSource&)>& evaluate, const std::string& split,
    const std::string& dir, const std::string& field,
    const std::function<bool()>& stop_requested);

struct ReportFiles {
  std::string report_path;            // report.json: every report
  std::string confusion_matrix_path;  // confusion_matrix.png: the last report's
};

// Writes both into output_dir. The picture is of the last report (the test
// set when there is one), since that is the figure people judge a model by.
ReportFiles WriteReportFiles(const std::vector<EvaluationReport>& reports,
                             const std::string& output_dir);

}  // namespace tl::engine
