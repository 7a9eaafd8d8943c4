#include "server/store/sqlite_schema.h"

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/record/job_view.h"
#include "server/store/sqlite_rows.h"

namespace tl::server {
namespace {

using sqlite_rows::kJobColumns;
using sqlite_rows::kPutEventSql;
using sqlite_rows::InsertEvent;
using sqlite_rows::JoinedWorkerIds;
using sqlite_rows::ParseBlob;
using sqlite_rows::RowToRecord;
using ::tl::v1::Job;
using ::tl::v1::JobEvent;

// Bump together with a migration in CreateOrCheckSchema; files written by a newer binary are
// refused rather than misread.
constexpr int kSchemaVersion = 5;

// Time columns hold microseconds since the Unix epoch, 0 for "unset". seq orders jobs by
// insertion (listing, page tokens, FIFO among equal priorities); AUTOINCREMENT keeps a seq from
// ever being reused, so a page token can never point into a different set of jobs. Columns that
// queries filter or sort on are real columns; everything else rides in the spec/result blobs.
// result is NULL while the job has none, so that has_result() reads back as it was written.
constexpr char kCreateSchemaSql[] = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  state INTEGER NOT NULL,
  priority INTEGER NOT NULL,
  owner TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  worker_id TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  cancel_requested INTEGER NOT NULL,
  error TEXT NOT NULL,
  create_time_us INTEGER NOT NULL,
  start_time_us INTEGER NOT NULL,
  end_time_us INTEGER NOT NULL,
  update_time_us INTEGER NOT NULL,
  spec BLOB NOT NULL,
  result BLOB
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
CREATE INDEX IF NOT EXISTS jobs_queue_order ON jobs (state, priority DESC, seq);
CREATE TABLE IF NOT EXISTS epochs (
  job_id TEXT NOT NULL REFERENCES jobs (id),
  epoch INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  metrics BLOB NOT NULL,
  PRIMARY KEY (job_id, epoch)
) WITHOUT ROWID;
)sql";

// Version 2: idempotent submits, pause, retry counting, the event log behind WatchJob's
// sequence numbers, and job logs. Applied to new files after kCreateSchemaSql and to version 1
// files as their migration.
constexpr char kSchemaV2Sql[] = R"sql(
ALTER TABLE jobs ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN pause_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN last_event_sequence INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX jobs_by_request ON jobs (owner, request_id) WHERE request_id != '';
CREATE INDEX jobs_by_owner ON jobs (owner, seq);
CREATE TABLE events (
  job_id TEXT NOT NULL REFERENCES jobs (id),
  sequence INTEGER NOT NULL,
  event BLOB NOT NULL,
  PRIMARY KEY (job_id, sequence)
) WITHOUT ROWID;
CREATE TABLE logs (
  job_id TEXT NOT NULL REFERENCES jobs (id),
  sequence INTEGER NOT NULL,
  time_us INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  worker_id TEXT NOT NULL,
  text TEXT NOT NULL,
  PRIMARY KEY (job_id, sequence)
) WITHOUT ROWID;
)sql";

// Version 3: data-parallel gangs. The workers of a job's current attempt, by rank, as a
// serialized Job holding only replica_worker_ids.
constexpr char kSchemaV3Sql[] = R"sql(
ALTER TABLE jobs ADD COLUMN replicas BLOB;
)sql";

// Version 4: the job row is the server's own record (server/record/job_record.proto), not the
// API's Job. A gang's worker ids move from a serialized tl.v1.Job to a column of their own.
constexpr char kSchemaV4AddSql[] = R"sql(
ALTER TABLE jobs ADD COLUMN replica_worker_ids TEXT NOT NULL DEFAULT '';
)sql";
constexpr char kSchemaV4DropSql[] = R"sql(
ALTER TABLE jobs DROP COLUMN replicas;
)sql";

// Version 5: sweeps. A trial is a job with its sweep's id and its index there (and whether ASHA
// is stopping it); a sweep's row
// holds its record (server/record/sweep_record.proto) beside the columns queries filter on.
constexpr char kSchemaV5Sql[] = R"sql(
ALTER TABLE jobs ADD COLUMN sweep_id TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN sweep_trial INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN stop_early_requested INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_by_sweep ON jobs (sweep_id, sweep_trial) WHERE sweep_id != '';
CREATE TABLE sweeps (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  state INTEGER NOT NULL,
  owner TEXT NOT NULL,
  request_id TEXT NOT NULL,
  create_time_us INTEGER NOT NULL,
  record BLOB NOT NULL
);
CREATE INDEX sweeps_by_state ON sweeps (state, seq);
CREATE INDEX sweeps_by_owner ON sweeps (owner, seq);
CREATE UNIQUE INDEX sweeps_by_request ON sweeps (owner, request_id) WHERE request_id != '';
)sql";

// Copies every version 3 replica list (a tl.v1.Job holding only replica_worker_ids) into the
// version 4 column.
void MoveReplicaLists(SQLite::Database& db) {
  std::vector<std::pair<std::string, std::string>> moved;  // job id, joined worker ids
  {
    SQLite::Statement query(db, "SELECT id, replicas FROM jobs WHERE replicas IS NOT NULL");
    while (query.executeStep()) {
      Job stored;
      if (!ParseBlob(query.getColumn(1), &stored)) {
        throw std::runtime_error(
            absl::StrCat("job ", query.getColumn(0).getString(), " has a corrupt replica list"));
      }
      moved.emplace_back(query.getColumn(0).getString(),
                         JoinedWorkerIds(stored.replica_worker_ids()));
    }
  }
  SQLite::Statement update(db, "UPDATE jobs SET replica_worker_ids = ? WHERE id = ?");
  for (const auto& [id, worker_ids] : moved) {
    update.reset();
    update.bind(1, worker_ids);
    update.bind(2, id);
    update.exec();
  }
}

}  // namespace

absl::Status ConfigureConnection(SQLite::Database& db) {
  // WAL lets readers run during a write. journal_mode answers with the mode in force, which
  // stays the old one where WAL is impossible (some network file systems), so check it.
  const std::string journal_mode = db.execAndGet("PRAGMA journal_mode = WAL").getString();
  if (journal_mode != "wal") {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot switch to WAL journal mode (still \"", journal_mode, "\")"));
  }
  // In WAL mode only FULL syncs the log at every commit; NORMAL could lose the last commits on
  // power loss, and the store promises that an acknowledged write is durable.
  db.exec("PRAGMA synchronous = FULL");
  // SQLite leaves foreign keys off unless each connection turns them on.
  db.exec("PRAGMA foreign_keys = ON");
  return absl::OkStatus();
}

// Gives every job of a version 1 file the one event that version 2 would have written for it:
// its row as it stands, so that a watcher of an old job still sees it.
void AddSnapshotEvents(SQLite::Database& db) {
  std::vector<JobRecord> jobs;
  {
    SQLite::Statement query(db, absl::StrCat("SELECT ", kJobColumns, " FROM jobs ORDER BY seq"));
    while (query.executeStep()) {
      absl::StatusOr<JobRecord> job = RowToRecord(query);
      if (!job.ok()) throw std::runtime_error(std::string(job.status().message()));
      jobs.push_back(*std::move(job));
    }
  }
  for (const JobRecord& job : jobs) {
    JobEvent event;
    event.set_sequence(1);
    *event.mutable_job() = ToApiJob(job);
    SQLite::Statement insert(db, kPutEventSql);
    InsertEvent(insert, job.id(), event);
    SQLite::Statement update(db, "UPDATE jobs SET last_event_sequence = 1 WHERE id = ?");
    update.bind(1, job.id());
    update.exec();
  }
}

absl::Status CreateOrCheckSchema(SQLite::Database& db) {
  // IMMEDIATE takes the write lock before reading the version, so two processes opening a new
  // file cannot both see version 0 and interleave their schema creation.
  SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
  const int version = db.execAndGet("PRAGMA user_version").getInt();
  if (version == kSchemaVersion) return absl::OkStatus();
  if (version < 0 || version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "schema version ", version, " is not supported (this build knows ", kSchemaVersion, ")"));
  }
  if (version == 0) db.exec(kCreateSchemaSql);
  if (version < 2) db.exec(kSchemaV2Sql);
  if (version < 3) db.exec(kSchemaV3Sql);
  if (version < 4) {
    db.exec(kSchemaV4AddSql);
    MoveReplicaLists(db);
    db.exec(kSchemaV4DropSql);
  }
  db.exec(kSchemaV5Sql);
  // After every column exists: it reads whole job rows.
  if (version == 1) AddSnapshotEvents(db);
  db.exec(absl::StrCat("PRAGMA user_version = ", kSchemaVersion));
  transaction.commit();
  return absl::OkStatus();
}

}  // namespace tl::server
