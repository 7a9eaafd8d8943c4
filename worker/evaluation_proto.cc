#include "worker/evaluation_proto.h"

#include <tuple>

#include "common/confined_path.h"
#include "common/status_macros.h"

namespace tl::worker {

tl::v1::EvaluationReport EvaluationReportProto(const engine::EvaluationReport& report) {
  tl::v1::EvaluationReport proto;
  proto.set_images(report.images);
  proto.set_loss(report.loss);
  proto.set_accuracy(report.accuracy);
  proto.set_top_k(static_cast<int32_t>(report.top_k));
  proto.set_top_k_accuracy(report.top_k_accuracy);
  proto.set_macro_precision(report.macro_precision);
  proto.set_macro_recall(report.macro_recall);
  proto.set_macro_f1(report.macro_f1);
  proto.set_weighted_precision(report.weighted_precision);
  proto.set_weighted_recall(report.weighted_recall);
  proto.set_weighted_f1(report.weighted_f1);
  for (size_t c = 0; c < report.per_class.size(); ++c) {
    tl::v1::ClassEvaluation& row = *proto.add_classes();
    row.set_class_name(report.class_names.at(c));
    row.set_precision(report.per_class[c].precision);
    row.set_recall(report.per_class[c].recall);
    row.set_f1(report.per_class[c].f1);
    row.set_support(report.per_class[c].support);
  }
  if (report.confusion.size() <= kMaxClassesWithMatrix) {
    for (const std::vector<int64_t>& row : report.confusion) {
      for (int64_t count : row) proto.add_confusion(count);
    }
  }
  return proto;
}

void SetReports(const std::vector<engine::EvaluationReport>& reports, tl::v1::JobResult& result) {
  for (const engine::EvaluationReport& report : reports) {
    *(report.split == "test" ? result.mutable_test_report() : result.mutable_val_report()) =
        EvaluationReportProto(report);
  }
}

absl::StatusOr<engine::ImageJobConfig> EvaluationConfigFor(const tl::v1::Assignment& assignment,
                                                           const WorkerSettings& settings) {
  const tl::v1::JobSpec& spec = assignment.spec();
  engine::ImageJobConfig config;
  TL_ASSIGN_OR_RETURN(
      const ConfinedPath model,
      ConfinePath(settings.artifact_root, spec.evaluate().model_path(), "evaluate.model_path"));
  config.evaluate_model_path = model.absolute;
  for (auto [dir, field, target] :
       {std::tuple{spec.dataset().test_dir(), "dataset.test_dir", &config.test_dir},
        std::tuple{spec.dataset().train_dir(), "dataset.train_dir", &config.train_dir}}) {
    if (dir.empty()) continue;
    TL_ASSIGN_OR_RETURN(const ConfinedPath confined, ConfinePath(settings.data_root, dir, field));
    *target = confined.absolute;
  }
  TL_ASSIGN_OR_RETURN(const ConfinedPath output,
                      ConfinePath(settings.artifact_root, assignment.output_dir(), "output_dir"));
  config.output_dir = output.absolute;
  config.batch_size = spec.training().batch_size() > 0 ? spec.training().batch_size() : 32;
  config.threads = spec.training().threads() > 0 ? spec.training().threads() : settings.threads;
  config.loader_threads = settings.loader_threads;
  config.train.device = spec.resources().device() == "cpu" ? "cpu" : settings.device;
  return config;
}

}  // namespace tl::worker
