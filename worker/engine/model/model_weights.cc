#include "model/model_weights.h"

#include <torch/csrc/jit/serialization/pickle.h>

#include <fstream>
#include <iterator>
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

void SaveTrainedTensors(torch::jit::Module& classifier, std::ostream& out) {
  c10::Dict<std::string, torch::Tensor> tensors;
  for (const auto& named : classifier.named_parameters(/*recurse=*/true)) {
    if (named.value.requires_grad()) tensors.insert(named.name, named.value.detach().cpu());
  }
  for (const auto& named : classifier.named_buffers(/*recurse=*/true)) {
    tensors.insert(named.name, named.value.detach().cpu());
  }
  const std::vector<char> bytes = torch::jit::pickle_save(tensors);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void LoadTrainedTensors(const std::string& path, torch::jit::Module& classifier,
                        const torch::Device& device) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FailedPrecondition("weights in " + path + " cannot be read");
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  c10::IValue saved;
  try {
    saved = torch::jit::pickle_load(bytes);
  } catch (const std::exception&) {
    saved = c10::IValue();
  }
  // Not a dictionary of tensors: a whole module, as earlier versions saved.
  if (!saved.isGenericDict()) return LoadClassifierWeights(path, classifier, device);

  std::map<std::string, torch::Tensor> targets;
  for (const auto& named : classifier.named_parameters(/*recurse=*/true)) {
    targets[named.name] = named.value;
  }
  for (const auto& named : classifier.named_buffers(/*recurse=*/true)) {
    targets[named.name] = named.value;
  }
  // Every tensor is matched before any is copied: weights that do not fit
  // leave the model as it was.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  for (const auto& entry : saved.toGenericDict()) {
    const std::string name = entry.key().isString() ? entry.key().toStringRef() : "";
    const auto target = targets.find(name);
    if (!entry.value().isTensor() || target == targets.end() ||
        !target->second.sizes().equals(entry.value().toTensor().sizes())) {
      throw FailedPrecondition("weights in " + path + " do not match the model at " +
                               (name.empty() ? "a tensor without a name" : name));
    }
    copies.emplace_back(target->second, entry.value().toTensor().to(device));
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, value] : copies) target.copy_(value);
}

}  // namespace tl::engine
