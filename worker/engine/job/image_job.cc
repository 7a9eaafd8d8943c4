#include "job/image_job.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>

#include "job/distributed_job.h"
#include "job/evaluation_job.h"
#include "job/stages.h"

namespace tl::engine {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

ImageJobResult Stopped(const RunOutcome& outcome) {
  ImageJobResult result;
  result.outcome = outcome;
  return result;
}

// The stages of stages.h, one after the other; a stop ends the job there.
ImageJobResult RunJob(const ImageJobConfig& spec, ImageJobObserver& observer) {
  CheckDistributedJob(spec);
  if (!spec.evaluate_model_path.empty()) return RunEvaluationJob(spec, observer);
  const Clock::time_point start = Clock::now();
  const PreparedJob job = PrepareJob(spec);
  observer.OnDataSizing(job.sizing);
  ImageJobConfig sized = WithDataSizing(spec, job);
  const torch::Device device = ParseDevice(sized.train.device);
  const PrecisionChoice precision =
      ChoosePrecision(sized.precision, device, DetectBf16Hardware(device));
  sized.train.precision = precision.precision;
  observer.OnNotice("precision: " + precision.reason);
  // LibTorch starts with one intra-op thread here; that halves throughput on
  // two cores, so the job sets the count itself.
  at::set_num_threads(ComputeThreadsOf(sized));
  OrStopped<ChosenStrategy> chosen = ChooseStrategy(sized, job, observer);
  if (chosen.stopped()) return Stopped(chosen.stop());
  const ImageJobConfig& config = chosen->config;
  JobModel model = BuildModel(config, job);
  OrStopped<JobData> data = LoadData(config, job, observer);
  if (data.stopped()) return Stopped(data.stop());
  OrStopped<TrainedModel> trained = TrainModel(config, job, model, *data, observer);
  if (trained.stopped()) return Stopped(trained.stop());
  const ExportedModel exported =
      ExportModel(config, job, model, *data, *trained, chosen->decision, precision);
  OrStopped<EvaluatedModel> evaluated = EvaluateModel(config, job, model, *data, observer);
  if (evaluated.stopped()) return Stopped(evaluated.stop());
  RemoveTrainingState(config.output_dir);

  ImageJobResult result;
  result.dataset = data->dataset;
  result.epochs = trained->epochs;
  result.first_epoch_run = trained->first_epoch_run;
  result.best_epoch = trained->best_epoch;
  result.stopped_early = trained->stopped_early;
  result.features_cached = trained->features_cached;
  result.features_from_disk = trained->features_from_disk;
  result.model_path = exported.model_path;
  result.model_info_path = exported.model_info_path;
  result.backbone_path = exported.backbone_path;
  result.metrics_path = exported.metrics_path;
  result.reports = std::move(evaluated->reports);
  result.report_path = evaluated->files.report_path;
  result.confusion_matrix_path = evaluated->files.confusion_matrix_path;
  result.auto_decision = chosen->decision;
  result.sizing = job.sizing;
  result.precision = precision;
  result.seconds = SecondsSince(start);
  return result;
}

}  // namespace

ImageReadRules ImageReadRulesOf(const ImageJobConfig& config) {
  return ImageReadRules{config.data_root, config.max_image_pixels};
}

const std::string& BackboneRootOf(const ImageJobConfig& config) {
  return config.backbone_from_artifacts ? config.artifact_root : config.data_root;
}

int DefaultResizeSize(int image_size) { return std::max(image_size, image_size * 8 / 7); }

ImageJobResult RunImageJob(const ImageJobConfig& config, ImageJobObserver& observer) {
  if (config.distributed.world_size <= 1 || config.distributed.rank == 0) {
    return RunJob(config, observer);
  }
  return RunWithPrivateOutput(
      config, [&observer](const ImageJobConfig& own) { return RunJob(own, observer); });
}

}  // namespace tl::engine
