// tlpredict: classifies image files with a model a tl job exported
// (model.pt and model.json beside it), on this machine's CPU.
//   tlpredict MODEL IMAGE... [--top K] [--json] [--precision auto|fp32|bf16]
// --precision follows a job's training.precision rule (train/precision.h):
// auto, the default, takes bf16 autocast on a CPU with bf16 instructions.
// `tlctl predict` runs this program: it links LibTorch and OpenCV, which
// tlctl (a small gRPC client meant for any machine) does not.
// Exit status: 0 every image classified, 2 bad usage, a model that cannot
// be loaded or an image that cannot be read (the others are still printed).
#include <CLI/CLI.hpp>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/str_format.h"
#include "base/errors.h"
#include "model/predictor.h"
#include "train/precision.h"

int main(int argc, char** argv) {
  CLI::App app{"tlpredict: classify images with an exported tl model"};
  std::string model_path;
  std::vector<std::string> images;
  int top = 5;
  bool as_json = false;
  app.add_option("model", model_path, "model.pt of a finished job (model.json beside it)")
      ->required();
  app.add_option("images", images, "image files")->required();
  app.add_option("--top", top, "classes shown per image, most probable first")
      ->check(CLI::PositiveNumber);
  app.add_flag("--json", as_json, "print a JSON array, one object per image");
  std::string precision_name = "auto";
  app.add_option("--precision", precision_name,
                 "auto (bf16 autocast on a CPU with bf16 instructions, else fp32), fp32 or bf16")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }

  std::optional<tl::engine::Predictor> predictor;
  try {
    predictor.emplace(model_path);
  } catch (const tl::engine::EngineError& error) {
    std::cerr << "tlpredict: " << error.what() << "\n";
    return 2;
  }
  const tl::engine::PrecisionRequest request = tl::engine::PrecisionRequestNamed(precision_name);
  const torch::Device cpu(torch::kCPU);
  const tl::engine::PrecisionChoice choice =
      tl::engine::ChoosePrecision(request, cpu, tl::engine::DetectBf16Hardware(cpu));
  const tl::engine::Precision precision = choice.precision;
  // Said in the output (a first line of text; a field of each JSON object): probabilities
  // under bf16 differ from a float32 run in their third digit.
  if (!as_json) std::cout << "precision: " << choice.reason << "\n";
  const char* used = tl::engine::PrecisionName(precision);
  int status = 0;
  nlohmann::json all = nlohmann::json::array();
  for (const std::string& image : images) {
    std::vector<tl::engine::Prediction> predictions;
    try {
      const tl::engine::AutocastScope autocast(precision, cpu);
      predictions = predictor->Classify(image, top);
    } catch (const tl::engine::EngineError& error) {
      std::cerr << "tlpredict: " << error.what() << "\n";
      if (as_json) all.push_back({{"image", image}, {"error", error.what()}});
      status = 2;
      continue;
    }
    if (as_json) {
      nlohmann::json rows = nlohmann::json::array();
      for (const tl::engine::Prediction& p : predictions) {
        rows.push_back(
            {{"class_name", p.class_name}, {"label", p.label}, {"probability", p.probability}});
      }
      all.push_back({{"image", image}, {"precision", used}, {"predictions", rows}});
      continue;
    }
    std::cout << image << "\n";
    for (size_t i = 0; i < predictions.size(); ++i) {
      std::cout << absl::StrFormat("  %2d. %-24s %.4f\n", i + 1, predictions[i].class_name,
                                   predictions[i].probability);
    }
  }
  if (as_json) std::cout << all.dump(2) << "\n";
  return status;
}
