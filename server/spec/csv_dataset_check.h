// Submit-time check of a CSV dataset (dataset.train_csv, dataset.val_csv):
// the file is inside the data root and parses, every image path it lists
// stays inside the data root, and it names enough classes. The images
// themselves are not opened; unreadable ones are counted when the job runs.
#pragma once

#include <set>
#include <string>

#include "absl/status/statusor.h"

namespace tl::server {

struct CheckedCsvDataset {
  std::string relative;               // the CSV's path, normalized, relative to the data root
  std::set<std::string> class_names;  // its distinct labels
};

// `field` names the spec field in errors, with the file and line at fault.
absl::StatusOr<CheckedCsvDataset> CheckCsvDataset(const std::string& field, const std::string& path,
                                                  int min_classes, const std::string& data_root);

}  // namespace tl::server
