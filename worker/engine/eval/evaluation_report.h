// The evaluation report of a finished model: overall figures (accuracy,
// top-k accuracy, macro and weighted precision/recall/F1), a per-class table
// and the confusion matrix, for the validation split and a test set. Written
// as report.json beside the exported model; the worker also carries it to
// the scheduler so that `tlctl report` needs no files.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/batch_source.h"

#include "eval/classification_metrics.h"

namespace tl::engine {

// The k of top-k accuracy, capped at the number of classes.
constexpr int64_t kTopK = 5;

struct EvaluationStats {
  double loss = 0;
  double accuracy = 0;
  double macro_precision = 0;
  double macro_recall = 0;
  double macro_f1 = 0;
  int64_t images = 0;
  int64_t top_k = 0;  // min(kTopK, classes)
  double top_k_accuracy = 0;
  // Everything else (per-class scores, weighted averages) follows from it.
  ConfusionMatrix confusion{0};
  // Whether each image's top-1 class was right (1) or not (0), in the order
  // the source delivered them: two models scored on the same source can be
  // compared image by image. This process's images only (a data-parallel
  // replica's shard).
  std::vector<uint8_t> correct;
};

// Every batch of `source` (from StartEpoch(epoch)) through `logits_of`
// (images on the CPU in, logits [N, num_classes] on any device out), with
// no gradients: plain cross-entropy loss, confusion matrix and top-k
// accuracy. Shared by the trainer's validation and evaluation jobs.
EvaluationStats EvaluateLogits(
    BatchSource& source, int epoch, int64_t num_classes,
    const std::function<torch::Tensor(const torch::Tensor& images)>& logits_of);

struct EvaluationReport {
  std::string split;  // "validation" or "test"
  std::vector<std::string> class_names;
  int64_t images = 0;
  double loss = 0;
  double accuracy = 0;
  int64_t top_k = 0;
  double top_k_accuracy = 0;
  double macro_precision = 0;
  double macro_recall = 0;
  double macro_f1 = 0;
  double weighted_precision = 0;
  double weighted_recall = 0;
  double weighted_f1 = 0;
  std::vector<ClassScore> per_class;  // by label
  // confusion[true_class][predicted_class]
  std::vector<std::vector<int64_t>> confusion;
};

EvaluationReport MakeEvaluationReport(const EvaluationStats& stats,
                                      const std::vector<std::string>& class_names,
                                      std::string split);

// {"format": "tl.report.v1", "validation": {...}, "test": {...}}, one key per
// report given, each with every figure above. Throws EngineError(kInternal)
// when the file cannot be written.
void WriteReportJson(const std::string& path, const std::vector<EvaluationReport>& reports);

}  // namespace tl::engine
