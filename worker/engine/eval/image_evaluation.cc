#include "eval/image_evaluation.h"

#include <filesystem>
#include <map>

#include "base/errors.h"
#include "data/dataset_check.h"
#include "eval/confusion_matrix_image.h"

namespace tl::engine {

std::vector<ImageSample> SamplesLabelledByName(const std::string& dir, const std::string& field,
                                               const std::vector<std::string>& class_names) {
  ImageFolderIndex index = ScanImageFolder(dir);
  std::map<std::string, int64_t> label_of;
  for (size_t i = 0; i < class_names.size(); ++i) label_of[class_names[i]] = i;
  std::vector<ImageSample> samples;
  samples.reserve(index.samples.size());
  for (ImageSample sample : index.samples) {
    const std::string& name = index.class_names[sample.label];
    auto it = label_of.find(name);
    if (it == label_of.end()) {
      throw InvalidArgument(field + " " + dir + " has class \"" + name +
                            "\", which the model does not know");
    }
    sample.label = it->second;
    samples.push_back(std::move(sample));
  }
  return samples;
}

OrStopped<EvaluationReport> EvaluateImages(
    std::vector<ImageSample> samples, const Preprocessing& preprocessing,
    const ImageFolderSourceOptions& options, const std::vector<std::string>& class_names,
    const std::function<EvaluationStats(BatchSource&)>& evaluate, const std::string& split,
    const std::string& dir, const std::string& field,
    const std::function<bool()>& stop_requested) {
  if (samples.empty()) throw InvalidArgument(field + " " + dir + " holds no images");
  ImageFolderSource source(std::move(samples), preprocessing, options);
  source.Preload(options.threads, stop_requested);
  if (stop_requested && stop_requested()) {
    return RunOutcome::Cancelled("stopped on request while decoding " + field);
  }
  EvaluationStats stats = evaluate(source);
  // Skipped files are known once every image has been through the source.
  CheckMostlyReadable(source, field + " " + dir);
  return MakeEvaluationReport(stats, class_names, split);
}

ReportFiles WriteReportFiles(const std::vector<EvaluationReport>& reports,
                             const std::string& output_dir) {
  ReportFiles files;
  if (reports.empty()) return files;
  const std::filesystem::path out(output_dir);
  files.report_path = (out / "report.json").string();
  files.confusion_matrix_path = (out / "confusion_matrix.png").string();
  WriteReportJson(files.report_path, reports);
  DrawConfusionMatrix(reports.back(), files.confusion_matrix_path);
  return files;
}

}  // namespace tl::engine
