#include "eval/evaluation_report.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/errors.h"

namespace tl::engine {
namespace {

nlohmann::json ReportToJson(const EvaluationReport& report) {
  nlohmann::json classes = nlohmann::json::array();
  for (size_t c = 0; c < report.per_class.size(); ++c) {
    const ClassScore& score = report.per_class[c];
    classes.push_back({{"class_name", report.class_names.at(c)},
                       {"precision", score.precision},
                       {"recall", score.recall},
                       {"f1", score.f1},
                       {"support", score.support}});
  }
  return {{"images", report.images},
          {"loss", report.loss},
          {"accuracy", report.accuracy},
          {"top_k", report.top_k},
          {"top_k_accuracy", report.top_k_accuracy},
          {"macro_precision", report.macro_precision},
          {"macro_recall", report.macro_recall},
          {"macro_f1", report.macro_f1},
          {"weighted_precision", report.weighted_precision},
          {"weighted_recall", report.weighted_recall},
          {"weighted_f1", report.weighted_f1},
          {"class_names", report.class_names},
          {"per_class", classes},
          {"confusion_matrix", report.confusion}};
}

}  // namespace

EvaluationStats EvaluateLogits(
    BatchSource& source, int epoch, int64_t num_classes,
    const std::function<torch::Tensor(const torch::Tensor& images)>& logits_of) {
  torch::NoGradGuard no_grad;
  source.StartEpoch(epoch);
  ConfusionMatrix confusion(num_classes);
  const int64_t top_k = std::min(kTopK, num_classes);
  int64_t top_k_correct = 0;
  double loss_sum = 0;
  std::vector<uint8_t> correct;
  while (std::optional<Batch> batch = source.Next()) {
    const torch::Tensor logits = AtLeastFloat32(logits_of(batch->images));
    const torch::Tensor labels = batch->labels.to(logits.device());
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, labels,
                    torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    const torch::Tensor predicted = logits.argmax(1);
    confusion.Add(predicted, labels);
    top_k_correct += TopKCorrect(logits, labels, top_k);
    const torch::Tensor hits = predicted.eq(labels).to(torch::kCPU, torch::kUInt8).contiguous();
    const uint8_t* hit = hits.data_ptr<uint8_t>();
    correct.insert(correct.end(), hit, hit + hits.numel());
  }
  EvaluationStats stats;
  stats.correct = std::move(correct);
  stats.images = confusion.total();
  stats.loss = stats.images > 0 ? loss_sum / static_cast<double>(stats.images) : 0.0;
  stats.accuracy = confusion.accuracy();
  stats.macro_precision = confusion.macro_precision();
  stats.macro_recall = confusion.macro_recall();
  stats.macro_f1 = confusion.macro_f1();
  stats.top_k = top_k;
  stats.top_k_accuracy =
      stats.images > 0 ? static_cast<double>(top_k_correct) / static_cast<double>(stats.images)
                       : 0.0;
  stats.confusion = std::move(confusion);
  return stats;
}

EvaluationReport MakeEvaluationReport(const EvaluationStats& stats,
                                      const std::vector<std::string>& class_names,
                                      std::string split) {
  const ConfusionMatrix& confusion = stats.confusion;
  if (confusion.num_classes() != static_cast<int64_t>(class_names.size())) {
    throw EngineError(ErrorKind::kInternal,
                      "evaluation has " + std::to_string(confusion.num_classes()) +
                          " classes but the model has " + std::to_string(class_names.size()));
  }
  EvaluationReport report;
  report.split = std::move(split);
  report.class_names = class_names;
  report.images = stats.images;
  report.loss = stats.loss;
  report.accuracy = stats.accuracy;
  report.top_k = stats.top_k;
  report.top_k_accuracy = stats.top_k_accuracy;
  report.macro_precision = stats.macro_precision;
  report.macro_recall = stats.macro_recall;
  report.macro_f1 = stats.macro_f1;
  report.weighted_precision = confusion.weighted_precision();
  report.weighted_recall = confusion.weighted_recall();
  report.weighted_f1 = confusion.weighted_f1();
  report.per_class = confusion.per_class();
  report.confusion = confusion.counts();
  return report;
}

void WriteReportJson(const std::string& path, const std::vector<EvaluationReport>& reports) {
  nlohmann::json root = {{"format", "tl.report.v1"}};
  for (const EvaluationReport& report : reports) root[report.split] = ReportToJson(report);
  WriteFileAtomically(path, root.dump(2) + "\n");
}

}  // namespace tl::engine
