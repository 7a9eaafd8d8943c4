// The stages after training: ExportModel and EvaluateModel.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/errors.h"
#include "job/stages.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;

void WriteModelInfo(const std::string& path, const BackboneManifest& manifest,
                    const Preprocessing& preprocessing,
                    const std::vector<std::string>& class_names, Strategy strategy) {
  nlohmann::json info = {{"format", "tl.model.v1"},
                         {"class_names", class_names},
                         {"architecture", manifest.architecture},
                         {"input_size", preprocessing.crop_size},
                         {"resize_size", preprocessing.resize_size},
                         {"mean", preprocessing.mean},
                         {"std", preprocessing.std},
                         {"strategy", StrategyName(strategy)},
                         {"backbone_source", manifest.source},
                         {"input", "float32 NCHW RGB, resized, center-cropped, normalized"}};
  WriteFileAtomically(path, info.dump(2) + "\n");
}

nlohmann::json EarlyStoppingJson(const EarlyStopping& early_stopping, bool stopped_early) {
  const EarlyStoppingOptions& options = early_stopping.options();
  return {{"metric", MetricName(options.metric)},
          {"mode", options.maximize ? "max" : "min"},
          {"patience", options.patience},
          {"min_delta", options.min_delta},
          {"best_epoch", early_stopping.best_epoch()},
          {"best_value", early_stopping.best_value()},
          {"stopped_early", stopped_early}};
}

void WriteMetrics(const std::string& path, const ImageJobConfig& config, const PreparedJob& job,
                  const TrainedModel& trained, const std::optional<AutoDecision>& decision,
                  const PrecisionChoice& precision) {
  nlohmann::json metrics = nlohmann::json::parse(EpochStatsToJson(trained.epochs));
  if (config.early_stopping.enabled) {
    metrics["early_stopping"] = EarlyStoppingJson(trained.early_stopping, trained.stopped_early);
  }
  if (decision) metrics["auto_strategy"] = nlohmann::json::parse(AutoDecisionToJson(*decision));
  metrics["data_sizing"] = nlohmann::json::parse(DataSizingToJson(job.sizing));
  metrics["precision"] = {{"used", PrecisionName(precision.precision)},
                          {"reason", precision.reason}};
  WriteFileAtomically(path, metrics.dump(2) + "\n");
}

// The exported file must compute what the trained model computes: a job
// whose export differs is a failed job, not a silent wrong model.
void CheckExport(TransferModel& model, const std::string& model_path, BatchSource& source,
                 const torch::Device& device) {
  source.StartEpoch(0);
  std::optional<Batch> batch = source.Next();
  if (!batch) return;
  torch::NoGradGuard no_grad;
  model.SetTraining(false);
  // A few images show a wrong export as well as a batch does; a whole batch
  // through both models costs a job of a few epochs a large share of its
  // time (two forward passes of 32 images at 224 px: seconds on a CPU).
  constexpr int64_t kExportCheckImages = 4;
  torch::Tensor images =
      batch->images.narrow(0, 0, std::min(kExportCheckImages, batch->images.size(0))).to(device);
  torch::Tensor expected = model.Forward(images).to(torch::kFloat32);
  torch::jit::Module exported = torch::jit::load(model_path, device);
  exported.eval();
  torch::Tensor actual = exported.forward({images}).toTensor().to(torch::kFloat32);
  if (!torch::allclose(actual, expected, /*rtol=*/1e-5, /*atol=*/1e-5)) {
    throw EngineError(ErrorKind::kInternal,
                      "exported model " + model_path + " differs from the trained one by up to " +
                          std::to_string((actual - expected).abs().max().item<double>()));
  }
}

}  // namespace

ExportedModel ExportModel(const ImageJobConfig& config, const PreparedJob& job, JobModel& model,
                          JobData& data, const TrainedModel& trained,
                          const std::optional<AutoDecision>& decision,
                          const PrecisionChoice& precision) {
  const fs::path out(config.output_dir);
  ExportedModel exported;
  exported.model_path = (out / "model.pt").string();
  exported.model_info_path = (out / "model.json").string();
  exported.backbone_path = (out / "backbone.pt").string();
  exported.metrics_path = (out / "metrics.json").string();
  model.model->ExportClassifier(exported.model_path, job.class_names);
  WriteModelInfo(exported.model_info_path, job.manifest, job.preprocessing, job.class_names,
                 config.train.strategy);
  model.model->ExportBackbone(exported.backbone_path,
                              config.provenance.empty() ? job.manifest.source : config.provenance);
  WriteMetrics(exported.metrics_path, config, job, trained, decision, precision);
  CheckExport(*model.model, exported.model_path,
              data.val->size() > 0 ? *data.val : *data.train, model.trainer->device());
  return exported;
}

OrStopped<EvaluatedModel> EvaluateModel(const ImageJobConfig& config, const PreparedJob& job,
                                        JobModel& model, JobData& data,
                                        ImageJobObserver& observer) {
  Trainer& trainer = *model.trainer;
  // The reports describe the exported model, which its users run in float32
  // (TorchScript without autocast), whatever precision it trained in.
  const auto evaluate = [&trainer](BatchSource& source) {
    return trainer.Evaluate(source, /*epoch=*/0, Precision::kFloat32);
  };
  EvaluatedModel evaluated;
  if (data.val->size() > 0) {
    evaluated.reports.push_back(
        MakeEvaluationReport(evaluate(*data.val), job.class_names, "validation"));
  }
  if (!config.test_dir.empty()) {
    OrStopped<EvaluationReport> test = EvaluateImages(
        SamplesLabelledByName(config.test_dir, "dataset.test_dir", job.class_names),
        job.preprocessing, data.val_options, job.class_names, evaluate, "test", config.test_dir,
        "dataset.test_dir", [&observer] { return observer.StopRequested(); });
    if (test.stopped()) return test.stop();
    evaluated.reports.push_back(std::move(*test));
  }
  evaluated.files = WriteReportFiles(evaluated.reports, config.output_dir);
  return evaluated;
}

}  // namespace tl::engine
