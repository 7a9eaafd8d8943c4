// Paths that users hand the server (datasets, backbones) must stay inside a
// configured root: no "..", no absolute path elsewhere, no symbolic link
// that leads out.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace tl {

struct ConfinedPath {
  std::string relative;  // normalized, relative to the root ("a/b"); "" is the root itself
  std::string absolute;  // root joined with relative
};

// `field` names the spec field in errors ("dataset.train_dir"). A path may be
// relative to the root or absolute inside it. The path need not exist; where
// it exists, its resolved location must be inside the root too.
absl::StatusOr<ConfinedPath> ConfinePath(const std::string& root, const std::string& path,
                                         const std::string& field);

// INVALID_ARGUMENT naming both flags when one root lies inside the other (resolved): a
// dataset or backbone path would then reach every owner's job outputs, past the rule that
// only their owners (and those they share with) may use them.
absl::Status CheckSeparateRoots(const std::string& data_root, const std::string& artifact_root);

}  // namespace tl
