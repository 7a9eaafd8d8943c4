#include "worker/engine/model_weights.h"

#include <filesystem>
#include <map>

#include "worker/engine/errors.h"

namespace tl::engine {

namespace fs = std::filesystem;

void SaveClassifierWeights(torch::jit::Module& classifier, const std::string& path) {
  const std::string temporary = path + ".tmp";
  classifier.save(temporary);
  fs::rename(temporary, path);
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
  torch::NoGradGuard no_grad;
  auto restore = [&](const std::string& name, const torch::Tensor& tensor) {
    auto it = saved_tensors.find(name);
    if (it == saved_tensors.end() || !it->second.sizes().equals(tensor.sizes())) {
      throw FailedPrecondition("weights in " + path + " do not match the model at " + name);
    }
    tensor.copy_(it->second);
  };
  for (const auto& named : classifier.named_parameters(/*recurse=*/true)) {
    restore(named.name, named.value);
  }
  for (const auto& named : classifier.named_buffers(/*recurse=*/true)) {
    restore(named.name, named.value);
  }
}

}  // namespace tl::engine
