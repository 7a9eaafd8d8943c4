#include "server/spec/csv_dataset_check.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/confined_path.h"
#include "common/csv_manifest.h"

namespace tl::server {

namespace fs = std::filesystem;

absl::StatusOr<CheckedCsvDataset> CheckCsvDataset(const std::string& field, const std::string& path,
                                                  int min_classes, const std::string& data_root) {
  absl::StatusOr<ConfinedPath> csv = ConfinePath(data_root, path, field);
  if (!csv.ok()) return csv.status();
  const std::string quoted = absl::StrCat("\"", path, "\"");
  if (!fs::is_regular_file(csv->absolute)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " ", quoted, ": file ", csv->absolute, " does not exist"));
  }
  std::ifstream in(csv->absolute, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(field, " ", quoted, " cannot be read"));
  }
  const CsvManifest manifest = ParseCsvManifest(text.str());
  if (!manifest.error.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, " ", quoted, " ", manifest.error));
  }
  CheckedCsvDataset checked;
  checked.relative = csv->relative;
  const fs::path csv_dir = fs::path(csv->relative).parent_path();
  for (const CsvManifestEntry& entry : manifest.entries) {
    // Image paths are relative to the CSV's folder; ".." may climb out of
    // it, but not out of the data root.
    const fs::path given(entry.path);
    const fs::path normal = given.is_absolute() ? given : (csv_dir / given).lexically_normal();
    const bool climbs_out = !normal.empty() && *normal.begin() == "..";
    if (climbs_out || !ConfinePath(data_root, normal.string(), field).ok()) {
      return absl::InvalidArgumentError(absl::StrCat(field, " ", quoted, " line ", entry.line,
                                                     ": \"", entry.path,
                                                     "\" leads outside the data root"));
    }
    checked.class_names.insert(entry.label);
  }
  if (static_cast<int>(checked.class_names.size()) < min_classes) {
    return absl::InvalidArgumentError(absl::StrCat(field, " ", quoted, " has ",
                                                   checked.class_names.size(),
                                                   " class(es); at least ", min_classes,
                                                   " are needed"));
  }
  return checked;
}

}  // namespace tl::server
