#include "model/predictor.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/confined_file.h"
#include "base/errors.h"

namespace tl::engine {

namespace fs = std::filesystem;

std::string ModelInfoPathFor(const std::string& model_path) {
  return fs::path(model_path).replace_extension(".json").string();
}

ModelInfo ReadModelInfo(const std::string& path) { return ReadModelInfo(path, ""); }

ModelInfo ReadModelInfo(const std::string& path, const std::string& root) {
  const std::string text = ReadConfinedFile(path, root, "model info");
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& error) {
    throw InvalidArgument("model info " + path + " is not JSON: " + error.what());
  }
  ModelInfo info;
  std::string field;
  try {
    field = "format";
    if (json.at(field).get<std::string>() != "tl.model.v1") {
      throw InvalidArgument("model info " + path + ": format is not tl.model.v1");
    }
    field = "class_names";
    info.class_names = json.at(field).get<std::vector<std::string>>();
    field = "input_size";
    info.preprocessing.crop_size = json.at(field).get<int>();
    field = "resize_size";
    info.preprocessing.resize_size = json.at(field).get<int>();
    field = "mean";
    info.preprocessing.mean = json.at(field).get<std::array<float, 3>>();
    field = "std";
    info.preprocessing.std = json.at(field).get<std::array<float, 3>>();
    field = "architecture";
    info.architecture = json.value(field, "");
  } catch (const nlohmann::json::exception&) {
    throw InvalidArgument("model info " + path + ": " + field + " is missing or of the wrong type");
  }
  if (info.class_names.size() < 2) {
    throw InvalidArgument("model info " + path + ": class_names must hold at least 2 names");
  }
  if (info.preprocessing.crop_size < 1 ||
      info.preprocessing.resize_size < info.preprocessing.crop_size) {
    throw InvalidArgument("model info " + path +
                          ": input_size must be positive and at most resize_size");
  }
  return info;
}

Predictor::Predictor(const std::string& model_path, const std::string& device,
                     const std::string& root)
    : model_path_(model_path), device_(device) {
  if (!fs::is_regular_file(model_path)) {
    throw InvalidArgument("model " + model_path + " does not exist");
  }
  info_ = ReadModelInfo(ModelInfoPathFor(model_path), root);
  const ConfinedFile model = OpenConfinedOrThrow(model_path, root, "model");
  try {
    module_ = torch::jit::load(model.OpenedPath(), device_);
  } catch (const c10::Error& error) {
    const std::string text = error.what();
    throw InvalidArgument("model " + model_path +
                          " is not a TorchScript file: " + text.substr(0, text.find('\n')));
  }
  module_.eval();
}

torch::Tensor Predictor::Logits(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  return module_.forward({images.to(device_)}).toTensor();
}

std::vector<Prediction> Predictor::Classify(const std::string& image_path, int k) {
  const int side = info_.preprocessing.crop_size;
  torch::Tensor image = torch::empty({1, 3, side, side}, torch::kFloat32);
  std::string why_not;
  if (!LoadImage(image_path, info_.preprocessing, /*flip=*/false, image.data_ptr<float>(),
                 ImageReadRules{}, &why_not)) {
    throw InvalidArgument("image " + image_path + " cannot be read" +
                          (why_not.empty() ? "" : ": " + why_not));
  }
  const torch::Tensor probabilities =
      torch::softmax(Logits(image).to(torch::kCPU, torch::kFloat32), 1)[0];
  if (probabilities.size(0) != static_cast<int64_t>(info_.class_names.size())) {
    throw InvalidArgument("model " + model_path_ + " gives " +
                          std::to_string(probabilities.size(0)) + " scores but its model.json names " +
                          std::to_string(info_.class_names.size()) + " classes");
  }
  const int64_t top = std::clamp<int64_t>(k, 1, probabilities.size(0));
  const auto [values, labels] = probabilities.topk(top);
  std::vector<Prediction> predictions;
  for (int64_t i = 0; i < top; ++i) {
    Prediction prediction;
    prediction.label = labels[i].item<int64_t>();
    prediction.class_name = info_.class_names.at(prediction.label);
    prediction.probability = values[i].item<double>();
    predictions.push_back(std::move(prediction));
  }
  return predictions;
}

}  // namespace tl::engine
