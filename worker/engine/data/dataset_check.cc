#include "data/dataset_check.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <tuple>
#include <utility>

#include "base/confined_file.h"
#include "base/errors.h"
#include "base/fnv1a.h"
#include "base/parallel_for.h"

namespace tl::engine {
namespace {

// A file's size and FNV-1a hash: files that differ in either differ.
struct Fingerprint {
  uint64_t size = 0;
  uint64_t hash = 0;
  bool operator<(const Fingerprint& other) const {
    return std::tie(size, hash) < std::tie(other.size, other.hash);
  }
};

std::optional<std::string> ReadBytes(const std::string& path, const ImageReadRules& rules) {
  const ConfinedFile file = ConfinedFile::Open(path, rules.root);
  std::string bytes;
  if (file.size() > MaxImageFileBytes(rules.max_pixels) || !file.ReadAll(bytes)) {
    return std::nullopt;
  }
  return bytes;
}

std::optional<Fingerprint> FingerprintOf(const std::string& path, const ImageReadRules& rules) {
  const std::optional<std::string> bytes = ReadBytes(path, rules);
  if (!bytes) return std::nullopt;
  return Fingerprint{bytes->size(), Fnv1a(*bytes)};
}

// Fingerprints of all `samples`, computed on `threads` threads; empty
// entries for files that cannot be read. False when stopped early.
bool Fingerprints(const std::vector<ImageSample>& samples, const ImageReadRules& rules,
                  int threads, const std::function<bool()>& stop_requested,
                  std::vector<std::optional<Fingerprint>>& out) {
  out.assign(samples.size(), std::nullopt);
  return ParallelFor(
      static_cast<int64_t>(samples.size()), threads,
      [&](int64_t i) { out[i] = FingerprintOf(samples[i].path, rules); }, stop_requested);
}

}  // namespace

std::vector<int64_t> ImagesPerClass(const std::vector<ImageSample>& samples, size_t class_count) {
  std::vector<int64_t> counts(class_count, 0);
  for (const ImageSample& sample : samples) {
    if (sample.label >= 0 && static_cast<size_t>(sample.label) < class_count) ++counts[sample.label];
  }
  return counts;
}

double ImbalanceRatio(const std::vector<int64_t>& per_class) {
  int64_t largest = 0;
  int64_t smallest = 0;
  for (int64_t count : per_class) {
    if (count == 0) continue;
    largest = std::max(largest, count);
    smallest = smallest == 0 ? count : std::min(smallest, count);
  }
  return smallest == 0 ? 0.0 : static_cast<double>(largest) / static_cast<double>(smallest);
}

bool FindDuplicates(const std::vector<ImageSample>& train, const std::vector<ImageSample>& val,
                    int threads, const std::function<bool()>& stop_requested,
                    const std::function<std::string(const std::string&)>& display,
                    DatasetCheck& check, const ImageReadRules& rules) {
  check.duplicate_images = 0;
  check.duplicate_examples.clear();
  if (val.empty()) return true;
  std::vector<std::optional<Fingerprint>> train_prints;
  std::vector<std::optional<Fingerprint>> val_prints;
  if (!Fingerprints(train, rules, threads, stop_requested, train_prints) ||
      !Fingerprints(val, rules, threads, stop_requested, val_prints)) {
    return false;
  }
  std::multimap<Fingerprint, size_t> train_by_print;
  for (size_t i = 0; i < train.size(); ++i) {
    if (train_prints[i]) train_by_print.emplace(*train_prints[i], i);
  }
  for (size_t v = 0; v < val.size(); ++v) {
    if (!val_prints[v]) continue;
    auto [begin, end] = train_by_print.equal_range(*val_prints[v]);
    if (begin == end) continue;
    // Equal fingerprints are compared byte by byte: "exact" means exact.
    const std::optional<std::string> val_bytes = ReadBytes(val[v].path, rules);
    for (auto it = begin; val_bytes && it != end; ++it) {
      if (ReadBytes(train[it->second].path, rules) != val_bytes) continue;
      ++check.duplicate_images;
      if (check.duplicate_examples.size() < kDatasetCheckExamples) {
        check.duplicate_examples.push_back(display(val[v].path) + " = " +
                                           display(train[it->second].path));
      }
      break;
    }
  }
  return true;
}

void CheckMostlyReadable(const ImageFolderSource& source, const std::string& where) {
  if (source.size() == 0 || source.skipped() * 2 <= source.size()) return;
  std::string reasons;
  for (const auto& [skip, reason] : {std::pair{ImageSkip::kUnreadable, "unreadable"},
                                     std::pair{ImageSkip::kOutsideRoot, "outside the data root"},
                                     std::pair{ImageSkip::kTooLarge, "above the pixel limit"}}) {
    const int64_t count = source.skipped(skip);
    if (count == 0) continue;
    reasons += (reasons.empty() ? "" : ", ") + std::to_string(count) + " " + reason;
  }
  throw FailedPrecondition(where + ": " + std::to_string(source.skipped()) + " of " +
                           std::to_string(source.size()) + " images could not be read (" +
                           reasons + ")");
}

std::string DatasetCheckToJson(const std::vector<std::string>& class_names, int64_t unreadable,
                               const DatasetCheck& check) {
  nlohmann::json classes = nlohmann::json::array();
  for (size_t i = 0; i < class_names.size(); ++i) {
    classes.push_back(
        {{"name", class_names[i]},
         {"train_images", i < check.train_per_class.size() ? check.train_per_class[i] : 0},
         {"val_images", i < check.val_per_class.size() ? check.val_per_class[i] : 0}});
  }
  const nlohmann::json report = {{"classes", classes},
                                 {"imbalance_ratio", check.imbalance_ratio},
                                 {"unreadable_images", unreadable},
                                 {"unreadable_examples", check.unreadable_examples},
                                 {"duplicate_images", check.duplicate_images},
                                 {"duplicate_examples", check.duplicate_examples}};
  return report.dump(2);
}

}  // namespace tl::engine
