#include "model/model_weights.h"

#include <map>
#include <utility>
#include <vector>

#include "base/atomic_file.h"
#include "base/errors.h"

namespace tl::engine {

void SaveClassifierWeights(torch::jit::Module& classifier, const std::string& path) {
  WriteFileAtomically(path, [&classifier](std::ostream& out) { classifier.save(out); });
}

void LoadClassifierWeights(const std::string& path, torch::jit::Module& classifier,
                           const torch::Device& device) {
  torch::jit::Module saved = torch::jit::load(path, device);
  std::map<std::string, torch::Tensor> saved_tensors;
  for (const auto& named : saved.named_parameters(/*recurse=*/true)) {
    saved_tensors[named.name] = named.value;
  }
  for (const auto& named : saved.named_buffers(/*recurse=*/true)) {
    saved_tensors[named.name] = named.value;
  }
  // Every tensor is matched before any is copied: weights that do not fit
  // leave the model as it was.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  auto match = [&](const std::string& name, const torch::Tensor& tensor) {
    auto it = saved_tensors.find(name);
    if (it == saved_tensors.end() || !it->second.sizes().equals(tensor.sizes())) {
      throw FailedPrecondition("weights in " + path + " do not match the model at " + name);
    }
    copies.emplace_back(tensor, it->second);
  };
  for (const auto& named : classifier.named_parameters(/*recurse=*/true)) {
    match(named.name, named.value);
  }
  for (const auto& named : classifier.named_buffers(/*recurse=*/true)) {
    match(named.name, named.value);
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, saved] : copies) target.copy_(saved);
}

}  // namespace tl::engine
