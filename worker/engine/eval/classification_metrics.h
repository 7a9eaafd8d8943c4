// Classification figures from a confusion matrix: accuracy, per-class
// precision, recall and F1, and their macro and support-weighted averages.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace tl::engine {

struct ClassScore {
  double precision = 0;
  double recall = 0;
  double f1 = 0;
  int64_t support = 0;  // images whose label is the class
  bool occurs = false;  // among the labels or the predictions
};

// The loss of reduced-precision logits (autocast) is computed in fp32;
// fp32 and fp64 logits keep their precision.
torch::Tensor AtLeastFloat32(const torch::Tensor& logits);

// How many rows of `logits` [N, C] have their label among the k highest
// scores; k is capped at C.
int64_t TopKCorrect(const torch::Tensor& logits, const torch::Tensor& labels, int64_t k);

class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(int64_t num_classes);

  // predictions and labels: int64 [N] class indices, on any device.
  void Add(const torch::Tensor& predictions, const torch::Tensor& labels);

  int64_t total() const;
  double accuracy() const;
  // Averages over the classes that occur among the labels or the
  // predictions; a class's precision (recall) is 0 when it was never
  // predicted (never present) but counts in the average.
  double macro_precision() const;
  double macro_recall() const;
  double macro_f1() const;
  // Averages over all classes weighted by their support, so that a class
  // counts as often as it occurs among the labels.
  double weighted_precision() const;
  double weighted_recall() const;
  double weighted_f1() const;
  std::vector<ClassScore> per_class() const;
  int64_t num_classes() const { return num_classes_; }
  // counts()[true_class][predicted_class]
  std::vector<std::vector<int64_t>> counts() const;

 private:
  double MacroAverage(double ClassScore::*field) const;
  double WeightedAverage(double ClassScore::*field) const;

  int64_t num_classes_;
  torch::Tensor counts_;  // int64 [num_classes * num_classes], on the CPU
};

}  // namespace tl::engine
