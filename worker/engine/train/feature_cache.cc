#include "train/feature_cache.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "base/atomic_file.h"
#include "base/confined_file.h"
#include "base/errors.h"
#include "base/fnv1a.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;

std::string Hex(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(value));
  return text;
}

}  // namespace

bool FeatureCacheApplies(Strategy strategy, bool random_augmentation, bool channels_last) {
  return strategy == Strategy::kFeatureExtraction && !random_augmentation && !channels_last;
}

std::string FileDigest(const std::string& path, const std::string& root) {
  const ConfinedFile file = OpenConfinedOrThrow(path, root, "file");
  std::ifstream in(file.OpenedPath(), std::ios::binary);
  if (!in) throw InvalidArgument("file " + path + " cannot be read");
  uint64_t hash = kFnv1aOffset;
  std::vector<char> buffer(1 << 16);
  while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
    AddToFnv1a(hash, buffer.data(), static_cast<size_t>(in.gcount()));
  }
  return Hex(hash);
}

std::string FeatureCacheKey(const std::string& backbone_digest, const Preprocessing& preprocessing,
                            const std::vector<ImageSample>& samples, const std::string& root) {
  std::ostringstream parts;
  parts << "tl.features.v1 " << backbone_digest << " " << preprocessing.resize_size << " "
        << preprocessing.crop_size;
  for (int c = 0; c < 3; ++c) parts << " " << preprocessing.mean[c] << " " << preprocessing.std[c];
  for (const ImageSample& sample : samples) {
    // An unreadable or refused file has no digest; it is skipped either way.
    std::string digest;
    try {
      digest = FileDigest(sample.path, root);
    } catch (const EngineError&) {
      digest = "unreadable";
    }
    parts << "\n" << sample.label << " " << digest << " " << sample.path;
  }
  const std::string text = parts.str();
  return Hex(Fnv1a(text));
}

CachedFeatures LoadOrComputeFeatures(TransferModel& model, BatchSource& images,
                                     const torch::Device& device, const std::string& cache_dir,
                                     const std::string& key) {
  const auto start = std::chrono::steady_clock::now();
  CachedFeatures cached;
  const fs::path file = cache_dir.empty() ? fs::path() : fs::path(cache_dir) / (key + ".pt");
  if (!file.empty() && fs::is_regular_file(file)) {
    std::vector<torch::Tensor> saved;
    try {
      torch::load(saved, file.string());
    } catch (const c10::Error&) {
      saved.clear();  // a damaged file is computed again and replaced
    }
    if (saved.size() == 2) {
      cached.features = saved[0];
      cached.labels = saved[1];
      cached.from_disk = true;
    }
  }
  if (!cached.from_disk) {
    model.SetTraining(false);
    images.StartEpoch(0);
    std::vector<torch::Tensor> features;
    std::vector<torch::Tensor> labels;
    while (std::optional<Batch> batch = images.Next()) {
      features.push_back(model.Features(batch->images.to(device)).to(torch::kCPU, torch::kFloat32));
      labels.push_back(batch->labels);
    }
    if (features.empty()) {
      cached.features = torch::empty({0, model.manifest().feature_dim}, torch::kFloat32);
      cached.labels = torch::empty({0}, torch::kInt64);
    } else {
      cached.features = torch::cat(features);
      cached.labels = torch::cat(labels);
    }
    if (!file.empty()) {
      fs::create_directories(cache_dir);
      // Two jobs may compute the same features at once; each writes its own
      // temporary file and the last rename wins (both hold the same figures).
      WriteFileAtomically(file.string(), [&cached](std::ostream& out) {
        torch::save(std::vector<torch::Tensor>{cached.features, cached.labels}, out);
      });
    }
  }
  cached.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return cached;
}

FeatureTraining::FeatureTraining(TransferModel& model, const std::vector<ImageSample>& train,
                                 const std::vector<ImageSample>& val, const Options& options)
    : model_(model) {
  const std::string backbone_digest = FileDigest(options.backbone_path);
  const auto cached = [&](const std::vector<ImageSample>& samples) {
    ImageFolderSource images(samples, options.preprocessing, options.decode);
    CachedFeatures features =
        LoadOrComputeFeatures(model, images, options.device, options.cache_dir,
                              FeatureCacheKey(backbone_digest, options.preprocessing, samples,
                                              options.decode.read_rules.root));
    from_disk_ = from_disk_ && features.from_disk;
    seconds_ += features.seconds;
    return features;
  };
  const CachedFeatures train_features = cached(train);
  const CachedFeatures val_features = cached(val);
  train_ = std::make_unique<TensorSource>(train_features.features, train_features.labels,
                                          options.batch_size, /*shuffle=*/true, options.seed);
  val_ = std::make_unique<TensorSource>(val_features.features, val_features.labels,
                                        options.batch_size, /*shuffle=*/false, options.seed);
  model_.SetFeatureInput(true);
}

FeatureTraining::~FeatureTraining() { model_.SetFeatureInput(false); }

}  // namespace tl::engine
