#include "job/evaluation_job.h"

#include <ATen/Parallel.h>

#include <chrono>
#include <filesystem>

#include "base/errors.h"
#include "eval/image_evaluation.h"
#include "job/stages.h"
#include "model/predictor.h"
#include "train/precision.h"
#include "train/trainer.h"

namespace tl::engine {

ImageJobResult RunEvaluationJob(const ImageJobConfig& config, ImageJobObserver& observer) {
  const auto start = std::chrono::steady_clock::now();
  if (config.batch_size < 1) throw InvalidArgument("training.batch_size must be positive");
  if (config.output_dir.empty()) throw InvalidArgument("output directory is empty");
  at::set_num_threads(ComputeThreadsOf(config));
  Predictor predictor(config.evaluate_model_path, config.train.device, config.artifact_root);
  // The forward passes follow the job's training.precision by the rule a
  // training job uses (bf16 where the device runs it fast, under AUTO).
  const torch::Device device = ParseDevice(config.train.device);
  const PrecisionChoice precision = ChoosePrecision(config.precision, device, DetectBf16Hardware(device));
  observer.OnNotice("precision: " + precision.reason);
  const std::vector<std::string>& class_names = predictor.info().class_names;
  const bool on_test = !config.test_dir.empty();
  const std::string& dir = on_test ? config.test_dir : config.train_dir;
  const std::string field = on_test ? "dataset.test_dir" : "dataset.train_dir";
  std::vector<ImageSample> samples = SamplesLabelledByName(dir, field, class_names);

  ImageJobResult result;
  result.precision = precision;
  result.dataset.class_names = class_names;
  observer.OnDataset(result.dataset);
  ImageFolderSourceOptions options;
  options.batch_size = config.batch_size;
  options.threads = LoaderThreadsOf(config);
  options.read_rules = ImageReadRulesOf(config);
  const auto num_classes = static_cast<int64_t>(class_names.size());
  const auto evaluate = [&](BatchSource& source) {
    return EvaluateLogits(source, /*epoch=*/0, num_classes,
                          [&](const torch::Tensor& images) {
                            const AutocastScope autocast(precision.precision, device);
                            return predictor.Logits(images).to(torch::kFloat32);
                          });
  };
  OrStopped<EvaluationReport> report =
      EvaluateImages(std::move(samples), predictor.info().preprocessing, options, class_names,
                     evaluate, "test", dir, field, [&observer] { return observer.StopRequested(); });
  if (report.stopped()) {
    ImageJobResult stopped;
    stopped.outcome = report.stop();
    stopped.precision = precision;
    return stopped;
  }
  result.reports.push_back(std::move(*report));
  std::filesystem::create_directories(config.output_dir);
  const ReportFiles files = WriteReportFiles(result.reports, config.output_dir);
  result.report_path = files.report_path;
  result.confusion_matrix_path = files.confusion_matrix_path;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace tl::engine
