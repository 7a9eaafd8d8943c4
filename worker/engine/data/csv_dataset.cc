#include "data/csv_dataset.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>

#include "base/confined_file.h"
#include "base/errors.h"
#include "common/csv_manifest.h"
#include "common/path_inside.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;

}  // namespace

ImageFolderIndex ReadCsvDataset(const std::string& csv_path, const std::string& data_root,
                                const std::string& field) {
  const std::string where = field + " " + csv_path;
  // The list itself is confined as its images are: it is read where it lies
  // now, not where it lay when the job was submitted.
  const ConfinedFile file = ConfinedFile::Open(csv_path, data_root);
  if (file.outcome() == OpenOutcome::kOutsideRoot) {
    throw InvalidArgument(where + " " + file.error());
  }
  std::string text;
  if (!file.ReadAll(text)) throw InvalidArgument(where + " cannot be read");
  const CsvManifest manifest = ParseCsvManifest(text);
  if (!manifest.error.empty()) throw InvalidArgument(where + " " + manifest.error);

  std::error_code error;
  const fs::path csv_dir = fs::absolute(csv_path).parent_path();
  const fs::path root = fs::weakly_canonical(data_root.empty() ? csv_dir : fs::path(data_root), error);
  if (error) throw InvalidArgument(where + ": data root " + data_root + " cannot be resolved");

  std::map<std::string, int64_t> label_of;
  for (const CsvManifestEntry& entry : manifest.entries) label_of.emplace(entry.label, 0);
  ImageFolderIndex index;
  for (auto& [name, label] : label_of) {
    label = static_cast<int64_t>(index.class_names.size());
    index.class_names.push_back(name);
  }
  for (const CsvManifestEntry& entry : manifest.entries) {
    const fs::path given(entry.path);
    const fs::path joined = (given.is_absolute() ? given : csv_dir / given).lexically_normal();
    // Links are followed for the part that exists: a link inside the root
    // may not lead outside it.
    const fs::path resolved = fs::weakly_canonical(joined, error);
    if (error || !IsInsideRoot(root, resolved)) {
      throw InvalidArgument(where + " line " + std::to_string(entry.line) + ": \"" + entry.path +
                            "\" leads outside the data root " + root.string());
    }
    index.samples.push_back({joined.string(), label_of.at(entry.label)});
  }
  return index;
}

}  // namespace tl::engine
