#include "train/feature_cache.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <unordered_set>

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

// Whether a table read from disk is one this code wrote for `count` images
// of `dim` features; anything else (another version's, a damaged file that
// still loads) is computed again.
bool SavedTableFits(const std::vector<torch::Tensor>& saved, int64_t count, int64_t dim) {
  const torch::Tensor& features = saved[0];
  const torch::Tensor& labels = saved[1];
  const torch::Tensor& rows = saved[2];
  if (features.dim() != 2 || features.size(1) != dim || features.scalar_type() != torch::kFloat32 ||
      labels.dim() != 1 || labels.size(0) != features.size(0) ||
      labels.scalar_type() != torch::kInt64 || rows.dim() != 1 || rows.size(0) != count ||
      rows.scalar_type() != torch::kInt64) {
    return false;
  }
  return count == 0 || (rows.min().item<int64_t>() >= -1 &&
                        rows.max().item<int64_t>() < features.size(0));
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
                            const std::vector<ImageSample>& samples, const ImageReadRules& rules,
                            Precision precision) {
  std::ostringstream parts;
  parts << "tl.features.v2 " << backbone_digest << " " << preprocessing.resize_size << " "
        << preprocessing.crop_size << " " << rules.max_pixels << " " << PrecisionName(precision);
  for (int c = 0; c < 3; ++c) parts << " " << preprocessing.mean[c] << " " << preprocessing.std[c];
  for (const ImageSample& sample : samples) {
    // An unreadable or refused file has no digest; it is skipped either way.
    std::string digest;
    try {
      digest = FileDigest(sample.path, rules.root);
    } catch (const EngineError&) {
      digest = "unreadable";
    }
    parts << "\n" << sample.label << " " << digest << " " << sample.path;
  }
  const std::string text = parts.str();
  return Hex(Fnv1a(text));
}

CachedFeatures LoadOrComputeFeatures(TransferModel& model, const std::vector<ImageSample>& samples,
                                     const Preprocessing& preprocessing,
                                     const ImageFolderSourceOptions& decode,
                                     const torch::Device& device, const std::string& cache_dir,
                                     const std::string& key,
                                     const std::function<bool()>& stop_requested,
                                     int64_t cache_max_bytes, Precision precision) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t count = static_cast<int64_t>(samples.size());
  CachedFeatures cached;
  const fs::path file = cache_dir.empty() ? fs::path() : fs::path(cache_dir) / (key + ".pt");
  if (!file.empty() && fs::is_regular_file(file)) {
    std::vector<torch::Tensor> saved;
    try {
      torch::load(saved, file.string());
    } catch (const c10::Error&) {
      saved.clear();  // a damaged file is computed again and replaced
    }
    if (saved.size() == 3 && SavedTableFits(saved, count, model.manifest().feature_dim)) {
      cached.features = saved[0];
      cached.labels = saved[1];
      cached.rows = saved[2];
      cached.from_disk = true;
      // Used now: the last a bounded folder gives up.
      std::error_code ignored;
      fs::last_write_time(file, fs::file_time_type::clock::now(), ignored);
    }
  }
  if (!cached.from_disk) {
    // Rows follow the samples' order only when nothing is shuffled, dropped
    // or changed: the evaluation form of the caller's decoding options.
    ImageFolderSource images(samples, preprocessing, EvaluationOptions(decode));
    model.SetTraining(false);
    images.StartEpoch(0);
    std::vector<torch::Tensor> features;
    std::vector<torch::Tensor> labels;
    while (!(stop_requested && stop_requested())) {
      std::optional<Batch> batch = images.Next();
      if (!batch) break;
      const AutocastScope autocast(precision, device);
      features.push_back(model.Features(batch->images.to(device)).to(torch::kCPU, torch::kFloat32));
      labels.push_back(batch->labels);
    }
    if (stop_requested && stop_requested()) {
      cached.stopped = true;
      return cached;
    }
    if (features.empty()) {
      cached.features = torch::empty({0, model.manifest().feature_dim}, torch::kFloat32);
      cached.labels = torch::empty({0}, torch::kInt64);
    } else {
      cached.features = torch::cat(features);
      cached.labels = torch::cat(labels);
    }
    // Batches come in sample order with the unreadable images left out.
    const std::vector<std::string> skipped = images.SkippedPaths(samples.size());
    const std::unordered_set<std::string> unreadable(skipped.begin(), skipped.end());
    cached.rows = torch::empty({count}, torch::kInt64);
    int64_t row = 0;
    for (int64_t i = 0; i < count; ++i) {
      cached.rows[i] = unreadable.count(samples[i].path) > 0 ? -1 : row++;
    }
    if (row != cached.features.size(0)) {
      throw EngineError(ErrorKind::kInternal,
                        "feature cache: " + std::to_string(cached.features.size(0)) +
                            " features for " + std::to_string(row) + " readable images");
    }
    if (!file.empty()) {
      fs::create_directories(cache_dir);
      // Two jobs may compute the same features at once; each writes its own
      // temporary file and the last rename wins (both hold the same figures).
      WriteFileAtomically(file.string(), [&cached](std::ostream& out) {
        torch::save(std::vector<torch::Tensor>{cached.features, cached.labels, cached.rows}, out);
      });
      if (cache_max_bytes > 0) PruneFeatureCache(cache_dir, cache_max_bytes, file.filename().string());
    }
  }
  cached.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return cached;
}

int PruneFeatureCache(const std::string& cache_dir, int64_t max_bytes, const std::string& keep) {
  struct Table {
    fs::path path;
    fs::file_time_type used;
    int64_t bytes = 0;
  };
  // A half-written table (a worker killed while writing) is left for an hour,
  // long past any write still going on, then counted and removed as the oldest.
  const auto abandoned_before = fs::file_time_type::clock::now() - std::chrono::hours(1);
  std::vector<Table> tables;
  int64_t total = 0;
  std::error_code error;
  fs::directory_iterator entry(cache_dir, error);
  // Best effort: a folder that cannot be read (or changes under the
  // listing) leaves the job that just wrote its table alone.
  for (; !error && entry != fs::directory_iterator(); entry.increment(error)) {
    std::error_code entry_error;
    const std::string name = entry->path().filename().string();
    const bool table = entry->path().extension() == ".pt";
    const bool partial = name.find(".pt.tmp") != std::string::npos;
    if (!(table || partial) || !entry->is_regular_file(entry_error)) continue;
    Table found{entry->path(), entry->last_write_time(entry_error),
                static_cast<int64_t>(entry->file_size(entry_error))};
    if (entry_error) continue;  // removed by another worker meanwhile
    if (partial && found.used > abandoned_before) continue;
    if (partial) found.used = fs::file_time_type::min();
    total += found.bytes;
    if (name != keep) tables.push_back(std::move(found));
  }
  std::sort(tables.begin(), tables.end(),
            [](const Table& a, const Table& b) { return a.used < b.used; });
  int removed = 0;
  for (const Table& table : tables) {
    if (total <= max_bytes) break;
    std::error_code remove_error;
    if (fs::remove(table.path, remove_error)) ++removed;
    total -= table.bytes;  // gone either way: removed here or by another worker
  }
  return removed;
}

FeatureTable::FeatureTable(TransferModel& model, const std::vector<ImageSample>& samples,
                           const Options& options) {
  std::vector<ImageSample> set;
  set.reserve(samples.size());
  std::unordered_set<std::string> seen;
  for (const ImageSample& sample : samples) {
    if (seen.insert(sample.path).second) set.push_back(sample);
  }
  std::sort(set.begin(), set.end(),
            [](const ImageSample& a, const ImageSample& b) { return a.path < b.path; });
  cached_ = LoadOrComputeFeatures(
      model, set, options.preprocessing, options.decode, options.device, options.cache_dir,
      FeatureCacheKey(FileDigest(options.backbone_path), options.preprocessing, set,
                      options.decode.read_rules, options.precision),
      options.stop_requested, options.cache_max_bytes, options.precision);
  if (cached_.stopped) return;
  const auto rows = cached_.rows.accessor<int64_t, 1>();
  for (size_t i = 0; i < set.size(); ++i) row_of_[set[i].path] = rows[static_cast<int64_t>(i)];
  from_disk_ = cached_.from_disk;
  seconds_ = cached_.seconds;
}

FeatureTable::Rows FeatureTable::RowsOf(const std::vector<ImageSample>& subset) const {
  std::vector<int64_t> picked;
  std::vector<int64_t> labels;
  picked.reserve(subset.size());
  labels.reserve(subset.size());
  for (const ImageSample& sample : subset) {
    const auto found = row_of_.find(sample.path);
    if (found == row_of_.end()) {
      throw EngineError(ErrorKind::kInternal,
                        "feature cache: " + sample.path + " is not among the table's images");
    }
    if (found->second >= 0) {
      picked.push_back(found->second);
      // The subset's own label: a path listed twice (CSV datasets) may carry two.
      labels.push_back(sample.label);
    }
  }
  const torch::Tensor index = torch::tensor(picked, torch::kInt64);
  return Rows{cached_.features.index_select(0, index), torch::tensor(labels, torch::kInt64)};
}

FeatureTraining::FeatureTraining(TransferModel& model, const FeatureTable& table,
                                 const std::vector<ImageSample>& train,
                                 const std::vector<ImageSample>& val, int64_t batch_size,
                                 uint64_t seed)
    : model_(model) {
  FeatureTable::Rows train_rows = table.RowsOf(train);
  FeatureTable::Rows val_rows = table.RowsOf(val);
  train_ = std::make_unique<TensorSource>(train_rows.features, train_rows.labels, batch_size,
                                          /*shuffle=*/true, seed);
  val_ = std::make_unique<TensorSource>(val_rows.features, val_rows.labels, batch_size,
                                        /*shuffle=*/false, seed);
  model_.SetFeatureInput(true);
}

FeatureTraining::~FeatureTraining() { model_.SetFeatureInput(false); }

}  // namespace tl::engine
