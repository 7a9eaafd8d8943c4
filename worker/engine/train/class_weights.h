// Cross-entropy class weights from what a job asks for: weights given by
// class name, or "balanced" ones that make every class weigh as much in the
// loss as the others, however many training images it has.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tl::engine {

// Returns one weight per class (in class_names' order), or an empty vector
// when every class weighs 1. Classes missing from `by_name` weigh 1;
// `balanced` gives class c the weight n_images / (n_classes * count_c), from
// the training split's counts (a class without training images gets 1: it
// never meets the loss). Throws EngineError(kInvalidArgument) naming
// training.class_weights for a class the dataset does not have, and for both
// ways at once.
std::vector<double> ResolveClassWeights(const std::vector<std::string>& class_names,
                                        const std::vector<int64_t>& train_counts,
                                        const std::map<std::string, double>& by_name,
                                        bool balanced);

}  // namespace tl::engine
