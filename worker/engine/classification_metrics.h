// Classification figures from a confusion matrix: accuracy and the macro
// averages of per-class precision, recall and F1.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace tl::engine {

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
  // counts()[true_class][predicted_class]
  std::vector<std::vector<int64_t>> counts() const;

 private:
  struct PerClass {
    double precision, recall, f1;
    bool occurs;
  };
  std::vector<PerClass> PerClassScores() const;
  double MacroAverage(double PerClass::*field) const;

  int64_t num_classes_;
  torch::Tensor counts_;  // int64 [num_classes * num_classes], on the CPU
};

}  // namespace tl::engine
