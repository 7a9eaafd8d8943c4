// The jobs database's schema: what a new file gets, how an older file is
// moved forward (versions 1 and 2 to 3), and how every connection is set up.
#pragma once

#include <SQLiteCpp/SQLiteCpp.h>

#include "absl/status/status.h"

namespace tl::server {

// How long a statement waits for another connection's lock before failing with SQLITE_BUSY.
inline constexpr int kBusyTimeoutMs = 5000;

// WAL journal, full syncs, foreign keys; FAILED_PRECONDITION where WAL is impossible.
absl::Status ConfigureConnection(SQLite::Database& db);
// Creates the schema in a new file, or moves an older one forward; a file of a newer schema
// is refused rather than misread.
absl::Status CreateOrCheckSchema(SQLite::Database& db);

}  // namespace tl::server
