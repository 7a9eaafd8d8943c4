#include "common/confined_path.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/path_inside.h"

namespace tl {
namespace {

namespace fs = std::filesystem;

}  // namespace

absl::StatusOr<ConfinedPath> ConfinePath(const std::string& root, const std::string& path,
                                         const std::string& field) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  if (path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, " holds a NUL character"));
  }
  std::error_code error;
  const fs::path canonical_root = fs::weakly_canonical(fs::absolute(root), error);
  if (error) {
    return absl::FailedPreconditionError(absl::StrCat("root ", root, " cannot be resolved"));
  }
  fs::path given(path);
  for (const fs::path& part : given) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " \"", path, "\" must not contain \"..\""));
    }
  }
  const fs::path joined = (given.is_absolute() ? given : canonical_root / given).lexically_normal();
  if (!IsInsideRoot(canonical_root, joined)) {
    return absl::InvalidArgumentError(absl::StrCat(field, " \"", path,
                                                   "\" is outside its root ",
                                                   canonical_root.string()));
  }
  // Symbolic links are followed for the part that exists: a link inside the
  // root may not lead outside it.
  const fs::path resolved = fs::weakly_canonical(joined, error);
  if (error || !IsInsideRoot(canonical_root, resolved)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " \"", path, "\" leads outside its root ", canonical_root.string()));
  }
  ConfinedPath confined;
  confined.absolute = joined.string();
  confined.relative = joined.lexically_relative(canonical_root).string();
  if (confined.relative == ".") confined.relative.clear();
  return confined;
}

absl::Status CheckSeparateRoots(const std::string& data_root, const std::string& artifact_root) {
  std::error_code data_error;
  std::error_code artifact_error;
  const fs::path data = fs::weakly_canonical(fs::absolute(data_root), data_error);
  const fs::path artifacts = fs::weakly_canonical(fs::absolute(artifact_root), artifact_error);
  if (data_error || artifact_error) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--data_root ", data_root, " or --artifact_root ", artifact_root, " cannot be resolved"));
  }
  if (IsInsideRoot(data, artifacts) || IsInsideRoot(artifacts, data)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--data_root ", data.string(), " and --artifact_root ", artifacts.string(),
        " overlap: a data path would reach every job's outputs; give them separate folders"));
  }
  return absl::OkStatus();
}

}  // namespace tl
