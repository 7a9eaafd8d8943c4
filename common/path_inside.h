// The confinement rule for every path a user hands tl (datasets, CSV
// entries, backbones, models): it must lie inside its root. Header-only and
// free of dependencies, so that the scheduler (checking a spec) and the
// engine (checking each file as it opens it) apply one rule.
#pragma once

#include <filesystem>

namespace tl {

// True when `candidate` is `root` or lies below it, compared component by
// component (so "/data2" is not inside "/data"). Both must be absolute and
// already resolved (symbolic links followed, no "." or ".."): the rule is
// about where a path really leads, which only resolution can tell.
inline bool IsInsideRoot(const std::filesystem::path& root,
                         const std::filesystem::path& candidate) {
  auto candidate_part = candidate.begin();
  for (const std::filesystem::path& root_part : root) {
    if (root_part.empty()) continue;  // a trailing separator
    if (candidate_part == candidate.end() || *candidate_part != root_part) return false;
    ++candidate_part;
  }
  return true;
}

}  // namespace tl
