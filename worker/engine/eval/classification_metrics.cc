#include "eval/classification_metrics.h"

#include <torch/torch.h>

#include <algorithm>

namespace tl::engine {

ConfusionMatrix::ConfusionMatrix(int64_t num_classes)
    : num_classes_(num_classes), counts_(torch::zeros({num_classes * num_classes}, torch::kInt64)) {}

void ConfusionMatrix::Add(const torch::Tensor& predictions, const torch::Tensor& labels) {
  // One bincount over (label, prediction) pairs instead of a loop per image.
  torch::Tensor cells = (labels.to(torch::kCPU, torch::kInt64) * num_classes_ +
                         predictions.to(torch::kCPU, torch::kInt64))
                            .flatten();
  counts_ += torch::bincount(cells, /*weights=*/{}, num_classes_ * num_classes_);
}

int64_t ConfusionMatrix::total() const { return counts_.sum().item<int64_t>(); }

double ConfusionMatrix::accuracy() const {
  const int64_t all = total();
  if (all == 0) return 0.0;
  const int64_t correct = counts_.view({num_classes_, num_classes_}).diagonal().sum().item<int64_t>();
  return static_cast<double>(correct) / static_cast<double>(all);
}

torch::Tensor AtLeastFloat32(const torch::Tensor& logits) {
  return logits.scalar_type() == torch::kFloat64 ? logits : logits.to(torch::kFloat32);
}

int64_t TopKCorrect(const torch::Tensor& logits, const torch::Tensor& labels, int64_t k) {
  if (logits.size(0) == 0) return 0;
  const int64_t top = std::min<int64_t>(k, logits.size(1));
  const torch::Tensor best = std::get<1>(logits.topk(top, /*dim=*/1));
  return best.eq(labels.to(best.device()).view({-1, 1})).any(1).sum().item<int64_t>();
}

std::vector<ClassScore> ConfusionMatrix::per_class() const {
  const torch::Tensor matrix = counts_.view({num_classes_, num_classes_});
  const torch::Tensor present = matrix.sum(1);    // images whose label is the class
  const torch::Tensor predicted = matrix.sum(0);  // images predicted as the class
  const torch::Tensor hits = matrix.diagonal();
  std::vector<ClassScore> scores(num_classes_);
  for (int64_t c = 0; c < num_classes_; ++c) {
    const double tp = static_cast<double>(hits[c].item<int64_t>());
    const double n_present = static_cast<double>(present[c].item<int64_t>());
    const double n_predicted = static_cast<double>(predicted[c].item<int64_t>());
    ClassScore& score = scores[c];
    score.support = present[c].item<int64_t>();
    score.precision = n_predicted > 0 ? tp / n_predicted : 0.0;
    score.recall = n_present > 0 ? tp / n_present : 0.0;
    const double sum = score.precision + score.recall;
    score.f1 = sum > 0 ? 2.0 * score.precision * score.recall / sum : 0.0;
    score.occurs = n_present > 0 || n_predicted > 0;
  }
  return scores;
}

double ConfusionMatrix::MacroAverage(double ClassScore::*field) const {
  double sum = 0.0;
  int64_t classes = 0;
  for (const ClassScore& score : per_class()) {
    if (!score.occurs) continue;
    sum += score.*field;
    ++classes;
  }
  return classes > 0 ? sum / static_cast<double>(classes) : 0.0;
}

double ConfusionMatrix::WeightedAverage(double ClassScore::*field) const {
  double sum = 0.0;
  int64_t images = 0;
  for (const ClassScore& score : per_class()) {
    sum += score.*field * static_cast<double>(score.support);
    images += score.support;
  }
  return images > 0 ? sum / static_cast<double>(images) : 0.0;
}

double ConfusionMatrix::macro_precision() const { return MacroAverage(&ClassScore::precision); }
double ConfusionMatrix::macro_recall() const { return MacroAverage(&ClassScore::recall); }
double ConfusionMatrix::macro_f1() const { return MacroAverage(&ClassScore::f1); }
double ConfusionMatrix::weighted_precision() const {
  return WeightedAverage(&ClassScore::precision);
}
double ConfusionMatrix::weighted_recall() const { return WeightedAverage(&ClassScore::recall); }
double ConfusionMatrix::weighted_f1() const { return WeightedAverage(&ClassScore::f1); }

std::vector<std::vector<int64_t>> ConfusionMatrix::counts() const {
  std::vector<std::vector<int64_t>> rows(num_classes_, std::vector<int64_t>(num_classes_));
  auto accessor = counts_.accessor<int64_t, 1>();
  for (int64_t t = 0; t < num_classes_; ++t) {
    for (int64_t p = 0; p < num_classes_; ++p) rows[t][p] = accessor[t * num_classes_ + p];
  }
  return rows;
}

}  // namespace tl::engine
