#include "train/class_weights.h"

#include "base/errors.h"

namespace tl::engine {

std::vector<double> ResolveClassWeights(const std::vector<std::string>& class_names,
                                        const std::vector<int64_t>& train_counts,
                                        const std::map<std::string, double>& by_name,
                                        bool balanced) {
  if (balanced && !by_name.empty()) {
    throw InvalidArgument(
        "training.class_weights and training.balanced_class_weights cannot both be set");
  }
  if (train_counts.size() != class_names.size()) {
    throw InvalidArgument("class counts (" + std::to_string(train_counts.size()) +
                          ") do not match the classes (" + std::to_string(class_names.size()) +
                          ")");
  }
  if (balanced) {
    int64_t images = 0;
    for (int64_t count : train_counts) images += count;
    std::vector<double> weights;
    for (int64_t count : train_counts) {
      weights.push_back(count > 0 ? static_cast<double>(images) /
                                        static_cast<double>(class_names.size() * count)
                                  : 1.0);
    }
    return weights;
  }
  if (by_name.empty()) return {};
  std::map<std::string, size_t> label_of;
  for (size_t i = 0; i < class_names.size(); ++i) label_of[class_names[i]] = i;
  std::vector<double> weights(class_names.size(), 1.0);
  for (const auto& [name, weight] : by_name) {
    auto it = label_of.find(name);
    if (it == label_of.end()) {
      throw InvalidArgument("training.class_weights names class \"" + name +
                            "\", which dataset.train_dir does not have");
    }
    weights[it->second] = weight;
  }
  return weights;
}

}  // namespace tl::engine
