#include "job/evaluation_job.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include "base/errors.h"
#include "eval/confusion_matrix_image.h"
#include "model/predictor.h"

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

EvaluationReport EvaluateImages(std::vector<ImageSample> samples,
                                const Preprocessing& preprocessing,
                                const ImageFolderSourceOptions& options,
                                const std::vector<std::string>& class_names,
                                const std::function<EvaluationStats(BatchSource&)>& evaluate,
                                const std::string& split, const std::string& dir,
                                const std::string& field,
                                const std::function<bool()>& stop_requested) {
  if (samples.empty()) throw InvalidArgument(field + " " + dir + " holds no images");
  ImageFolderSource source(std::move(samples), preprocessing, options);
  source.Preload(options.threads, stop_requested);
  if (stop_requested && stop_requested()) {
    throw EngineError(ErrorKind::kCancelled, "stopped on request while decoding " + field);
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

ImageJobResult RunEvaluationJob(const ImageJobConfig& config, ImageJobObserver& observer) {
  const auto start = std::chrono::steady_clock::now();
  if (config.batch_size < 1) throw InvalidArgument("training.batch_size must be positive");
  if (config.output_dir.empty()) throw InvalidArgument("output directory is empty");
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(config.threads > 0 ? config.threads : cores);
  Predictor predictor(config.evaluate_model_path, config.train.device, config.artifact_root);
  const std::vector<std::string>& class_names = predictor.info().class_names;
  const bool on_test = !config.test_dir.empty();
  const std::string& dir = on_test ? config.test_dir : config.train_dir;
  const std::string field = on_test ? "dataset.test_dir" : "dataset.train_dir";
  std::vector<ImageSample> samples = SamplesLabelledByName(dir, field, class_names);

  ImageJobResult result;
  result.dataset.class_names = class_names;
  observer.OnDataset(result.dataset);
  ImageFolderSourceOptions options;
  options.batch_size = config.batch_size;
  options.threads = config.loader_threads > 0 ? config.loader_threads : std::clamp(cores / 2, 1, 4);
  options.read_rules = ImageReadRulesOf(config);
  const auto num_classes = static_cast<int64_t>(class_names.size());
  const auto evaluate = [&](BatchSource& source) {
    return EvaluateLogits(source, /*epoch=*/0, num_classes,
                          [&](const torch::Tensor& images) { return predictor.Logits(images); });
  };
  result.reports.push_back(EvaluateImages(std::move(samples), predictor.info().preprocessing,
                                          options, class_names, evaluate, "test", dir, field,
                                          [&observer] { return observer.StopRequested(); }));
  std::filesystem::create_directories(config.output_dir);
  const ReportFiles files = WriteReportFiles(result.reports, config.output_dir);
  result.report_path = files.report_path;
  result.confusion_matrix_path = files.confusion_matrix_path;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace tl::engine
