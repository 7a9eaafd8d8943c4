#include "model/transfer_model.h"

#include <torch/torch.h>

#include <cmath>
#include <optional>
#include <set>

#include "base/atomic_file.h"
#include "base/errors.h"

namespace tl::engine {
namespace {

// The classifier's forward, compiled from TorchScript source so that the
// exported file runs anywhere TorchScript runs, Python included.
constexpr char kClassifierSource[] = R"JIT(
def forward(self, images: Tensor) -> Tensor:
    features = torch.flatten(self.backbone.forward(images), 1)
    return torch.linear(features, self.head_weight, self.head_bias)
)JIT";

// What went wrong, in one line. c10 messages carry a C++ backtrace after
// their first line; the TorchScript interpreter's start with a call stack
// and end with "RuntimeError: <what went wrong>".
std::string OneLineReason(const std::exception& error) {
  const std::string message = error.what();
  const std::string marker = "RuntimeError: ";
  const size_t reason = message.rfind(marker);
  if (reason != std::string::npos) {
    const size_t start = reason + marker.size();
    return message.substr(start, message.find('\n', start) - start);
  }
  return message.substr(0, message.find('\n'));
}

torch::jit::Module LoadBackbone(const std::string& path, const std::string& open_as) {
  try {
    return torch::jit::load(open_as.empty() ? path : open_as, torch::kCPU);
  } catch (const std::exception& error) {
    throw InvalidArgument("backbone " + path + " does not load as TorchScript: " +
                          OneLineReason(error));
  }
}

bool StartsWithModule(const std::string& parameter_name, const std::string& module_path) {
  return parameter_name.size() > module_path.size() &&
         parameter_name.compare(0, module_path.size(), module_path) == 0 &&
         parameter_name[module_path.size()] == '.';
}

}  // namespace

const char* StrategyName(Strategy strategy) {
  switch (strategy) {
    case Strategy::kFeatureExtraction:
      return "FEATURE_EXTRACTION";
    case Strategy::kFineTune:
      return "FINE_TUNE";
    case Strategy::kFull:
      return "FULL";
  }
  return "?";
}

TransferModel::TransferModel(const std::string& backbone_path, BackboneManifest manifest,
                             int64_t num_classes, uint64_t seed, const std::string& open_as)
    : manifest_(std::move(manifest)),
      num_classes_(num_classes),
      classifier_(c10::QualifiedName("__torch__.tl.TransferClassifier")) {
  torch::jit::Module backbone = LoadBackbone(backbone_path, open_as);
  // Module::train() walks every module and expects a "training" attribute.
  classifier_.register_attribute("training", c10::BoolType::get(), true);
  classifier_.register_module("backbone", backbone);

  // The head starts as torch.nn.Linear starts: uniform in +-1/sqrt(fan_in).
  torch::manual_seed(seed);
  const double bound = 1.0 / std::sqrt(static_cast<double>(manifest_.feature_dim));
  torch::Tensor weight = torch::empty({num_classes, manifest_.feature_dim}).uniform_(-bound, bound);
  torch::Tensor bias = torch::empty({num_classes}).uniform_(-bound, bound);
  classifier_.register_parameter("head_weight", weight, /*is_buffer=*/false);
  classifier_.register_parameter("head_bias", bias, /*is_buffer=*/false);
  classifier_.define(kClassifierSource);

  for (size_t i = 0; i < manifest_.layer_groups.size(); ++i) {
    for (const std::string& path : manifest_.layer_groups[i].modules) {
      try {
        FindSubmodule(path);
      } catch (const EngineError&) {
        throw InvalidArgument("backbone manifest of " + backbone_path + ": layer_groups[" +
                              std::to_string(i) + "] names module \"" + path +
                              "\", which the backbone does not have");
      }
    }
  }
  CheckFeatureDim(backbone_path);
  Configure(Strategy::kFull, 0);
}

// One forward pass of a blank image through the backbone in eval mode;
// returns the flattened features, or the first line of the failure.
std::optional<torch::Tensor> TransferModel::ProbeFeatures(int side, std::string* failure) const {
  torch::NoGradGuard no_grad;
  torch::jit::Module backbone_module = backbone();
  const bool was_training = backbone_module.is_training();
  backbone_module.eval();
  const torch::Device device = backbone_module.parameters().size() > 0
                                   ? (*backbone_module.parameters().begin()).device()
                                   : torch::Device(torch::kCPU);
  std::optional<torch::Tensor> features;
  try {
    features = backbone_module.forward({torch::zeros({1, 3, side, side}, device)})
                   .toTensor()
                   .flatten(1);
  } catch (const std::exception& error) {
    *failure = OneLineReason(error);
  }
  backbone_module.train(was_training);
  return features;
}

void TransferModel::CheckFeatureDim(const std::string& backbone_path) {
  std::string failure;
  const std::optional<torch::Tensor> features = ProbeFeatures(manifest_.input_size, &failure);
  if (!features) {
    throw InvalidArgument("backbone " + backbone_path + " fails on a " +
                          std::to_string(manifest_.input_size) + " px image: " + failure);
  }
  if (features->size(1) != manifest_.feature_dim) {
    throw InvalidArgument("backbone manifest of " + backbone_path + ": feature_dim is " +
                          std::to_string(manifest_.feature_dim) + " but the backbone yields " +
                          std::to_string(features->size(1)) + " features");
  }
}

void TransferModel::CheckImageSize(int side) const {
  std::string failure;
  const std::optional<torch::Tensor> features = ProbeFeatures(side, &failure);
  const std::string problem = "preprocessing.image_size " + std::to_string(side) +
                              " does not suit the backbone " + manifest_.architecture +
                              " (trained at " + std::to_string(manifest_.input_size) + " px): ";
  if (!features) throw InvalidArgument(problem + "a forward pass fails: " + failure);
  if (features->size(1) != manifest_.feature_dim) {
    throw InvalidArgument(problem + "it yields " + std::to_string(features->size(1)) +
                          " features instead of " + std::to_string(manifest_.feature_dim));
  }
}

torch::jit::Module TransferModel::backbone() const {
  return classifier_.attr("backbone").toModule();
}

torch::jit::Module TransferModel::FindSubmodule(const std::string& dotted_path) const {
  for (const auto& named : backbone().named_modules()) {
    if (named.name == dotted_path) return named.value;
  }
  throw InvalidArgument("no module " + dotted_path);
}

void TransferModel::Configure(Strategy strategy, int unfreeze_groups) {
  const int group_count = static_cast<int>(manifest_.layer_groups.size());
  if (strategy == Strategy::kFineTune && (unfreeze_groups < 1 || unfreeze_groups > group_count)) {
    throw InvalidArgument("training.unfreeze_groups is " + std::to_string(unfreeze_groups) +
                          " but the backbone " + manifest_.architecture + " has " +
                          std::to_string(group_count) + " layer groups");
  }
  strategy_ = strategy;
  frozen_modules_.clear();

  // Module paths whose parameters train.
  std::set<std::string> trainable_modules;
  if (strategy == Strategy::kFineTune) {
    for (int g = group_count - unfreeze_groups; g < group_count; ++g) {
      for (const std::string& path : manifest_.layer_groups[g].modules) trainable_modules.insert(path);
    }
    for (int g = 0; g < group_count - unfreeze_groups; ++g) {
      for (const std::string& path : manifest_.layer_groups[g].modules) {
        frozen_modules_.push_back(FindSubmodule(path));
      }
    }
  }

  for (const auto& named : backbone().named_parameters(/*recurse=*/true)) {
    bool trains = strategy == Strategy::kFull;
    if (strategy == Strategy::kFineTune) {
      for (const std::string& path : trainable_modules) {
        if (StartsWithModule(named.name, path)) trains = true;
      }
    }
    named.value.requires_grad_(trains);
  }
  backbone_frozen_ = strategy == Strategy::kFeatureExtraction;
  if (backbone_frozen_) frozen_modules_.push_back(backbone());
  for (const torch::Tensor& parameter : HeadParameters()) parameter.requires_grad_(true);
}

void TransferModel::SetTraining(bool training) {
  classifier_.train(training);
  if (!training) return;
  for (torch::jit::Module& module : frozen_modules_) module.eval();
}

void TransferModel::To(const torch::Device& device) { classifier_.to(device); }

torch::Tensor TransferModel::Features(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  return backbone().forward({images}).toTensor().flatten(1);
}

torch::Tensor TransferModel::Forward(const torch::Tensor& images) {
  torch::Tensor features;
  if (feature_input_) {
    features = images;
  } else if (backbone_frozen_) {
    torch::NoGradGuard no_grad;
    features = backbone().forward({images}).toTensor();
  } else {
    features = backbone().forward({images}).toTensor();
  }
  return torch::linear(features.flatten(1), classifier_.attr("head_weight").toTensor(),
                       classifier_.attr("head_bias").toTensor());
}

std::vector<torch::Tensor> TransferModel::HeadParameters() const {
  return {classifier_.attr("head_weight").toTensor(), classifier_.attr("head_bias").toTensor()};
}

std::vector<torch::Tensor> TransferModel::TrainableBackboneParameters() const {
  std::vector<torch::Tensor> parameters;
  for (const auto& named : backbone().named_parameters(/*recurse=*/true)) {
    if (named.value.requires_grad()) parameters.push_back(named.value);
  }
  return parameters;
}

void TransferModel::ExportClassifier(const std::string& path,
                                     const std::vector<std::string>& class_names) {
  // Copies made without autograd are plain leaves, saved without history.
  torch::NoGradGuard no_grad;
  // clone() gives new types, so the attributes added below stay off ours.
  torch::jit::Module exported = classifier_.clone();
  exported.to(torch::kCPU);
  exported.eval();
  c10::List<std::string> names;
  for (const std::string& name : class_names) names.push_back(name);
  // Attributes make the file self-describing for any TorchScript runtime.
  exported.register_attribute("class_names", c10::ListType::ofStrings(), names);
  exported.register_attribute("input_size", c10::IntType::get(),
                              static_cast<int64_t>(manifest_.input_size));
  exported.register_attribute("mean", c10::ListType::ofFloats(),
                              c10::List<double>({manifest_.mean[0], manifest_.mean[1], manifest_.mean[2]}));
  exported.register_attribute("std", c10::ListType::ofFloats(),
                              c10::List<double>({manifest_.std[0], manifest_.std[1], manifest_.std[2]}));
  WriteFileAtomically(path, [&exported](std::ostream& out) { exported.save(out); });
}

void TransferModel::ExportBackbone(const std::string& path, const std::string& source_note) {
  torch::NoGradGuard no_grad;
  torch::jit::Module exported = backbone().clone();
  exported.to(torch::kCPU);
  exported.eval();
  WriteFileAtomically(path, [&exported](std::ostream& out) { exported.save(out); });
  BackboneManifest manifest = manifest_;
  manifest.source = source_note;
  WriteManifest(manifest, ManifestPathFor(path));
}

}  // namespace tl::engine
