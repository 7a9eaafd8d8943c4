// Early return on a failed absl::Status or absl::StatusOr<T>, for functions
// that themselves return absl::Status or absl::StatusOr<U>:
//
//   TL_RETURN_IF_ERROR(store.UpdateJob(job));
//   TL_ASSIGN_OR_RETURN(ConfinedPath output, ConfinePath(root, dir,
//   "output_dir")); TL_ASSIGN_OR_RETURN(config.threads, ThreadsFor(spec));
//
// The status is returned unchanged (code and message), so callers see exactly
// the error the failing call made. Each macro evaluates its expression once.
// TL_ASSIGN_OR_RETURN expands to several statements: it cannot be the body of
// an unbraced `if`, and a left-hand side with a comma in it (a template with
// two arguments) needs a type alias first.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tl::status_macros_internal {

inline const absl::Status& StatusOf(const absl::Status& status) { return status; }
inline absl::Status StatusOf(absl::Status&& status) { return std::move(status); }

template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

template <typename T>
absl::Status StatusOf(absl::StatusOr<T>&& status_or) {
  return std::move(status_or).status();
}

}  // namespace tl::status_macros_internal

#define TL_RETURN_IF_ERROR(expr)                                                           \
  do {                                                                                     \
    ::absl::Status tl_status_macros_status = ::tl::status_macros_internal::StatusOf(expr); \
    if (!tl_status_macros_status.ok()) return tl_status_macros_status;                     \
  } while (false)

// A name of its own for every use, so that several in one scope do not collide.
#define TL_STATUS_MACROS_CONCAT_INNER(a, b) a##b
#define TL_STATUS_MACROS_CONCAT(a, b) TL_STATUS_MACROS_CONCAT_INNER(a, b)

#define TL_ASSIGN_OR_RETURN(lhs, expr) \
  TL_ASSIGN_OR_RETURN_IMPL(TL_STATUS_MACROS_CONCAT(tl_status_macros_or_, __COUNTER__), lhs, expr)

#define TL_ASSIGN_OR_RETURN_IMPL(status_or, lhs, expr)       \
  auto status_or = (expr);                                   \
  if (!status_or.ok()) return std::move(status_or).status(); \
  lhs = std::move(status_or).value()
