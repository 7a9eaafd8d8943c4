// How a job is a row of the jobs table (and an event a row of events): the
// columns every job query selects, the statements that write them, and the
// conversions both ways. Shared by the store's operations and the schema's
// migrations.
#pragma once

#include <SQLiteCpp/SQLiteCpp.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/message_lite.h"
#include "google/protobuf/timestamp.pb.h"
#include "server/record/job_record.pb.h"
#include "server/record/sweep_record.pb.h"
#include "tl/v1/service.pb.h"

namespace tl::server::sqlite_rows {

// Every job query selects these columns, in the order of JobColumn.
inline constexpr char kJobColumns[] =
    "seq, id, state, owner, attempt, worker_id, epoch, cancel_requested, error, create_time_us, "
    "start_time_us, end_time_us, update_time_us, spec, result, request_id, pause_requested, "
    "failures, last_event_sequence, replica_worker_ids, sweep_id, sweep_trial, stop_early_requested";
enum JobColumn : int {
  kSeqColumn,
  kIdColumn,
  kStateColumn,
  kOwnerColumn,
  kAttemptColumn,
  kWorkerIdColumn,
  kEpochColumn,
  kCancelRequestedColumn,
  kErrorColumn,
  kCreateTimeColumn,
  kStartTimeColumn,
  kEndTimeColumn,
  kUpdateTimeColumn,
  kSpecColumn,
  kResultColumn,
  kRequestIdColumn,
  kPauseRequestedColumn,
  kFailuresColumn,
  kLastEventSequenceColumn,
  kReplicaWorkerIdsColumn,
  kSweepIdColumn,
  kSweepTrialColumn,
  kStopEarlyRequestedColumn,
};

// INSERT and UPDATE share the named parameters, so BindJobColumns serves both.
inline constexpr char kInsertJobSql[] = R"sql(
INSERT INTO jobs (id, state, priority, owner, attempt, worker_id, epoch, cancel_requested, error,
                  create_time_us, start_time_us, end_time_us, update_time_us, spec, result,
                  request_id, pause_requested, failures, last_event_sequence, replica_worker_ids,
                  sweep_id, sweep_trial, stop_early_requested)
VALUES (:id, :state, :priority, :owner, :attempt, :worker_id, :epoch, :cancel_requested, :error,
        :create_time_us, :start_time_us, :end_time_us, :update_time_us, :spec, :result,
        :request_id, :pause_requested, :failures, :last_event_sequence, :replica_worker_ids,
        :sweep_id, :sweep_trial, :stop_early_requested)
ON CONFLICT (id) DO NOTHING
)sql";
inline constexpr char kUpdateJobSql[] = R"sql(
UPDATE jobs SET state = :state, priority = :priority, owner = :owner, attempt = :attempt,
                worker_id = :worker_id, epoch = :epoch, cancel_requested = :cancel_requested,
                error = :error, create_time_us = :create_time_us, start_time_us = :start_time_us,
                end_time_us = :end_time_us, update_time_us = :update_time_us, spec = :spec,
                result = :result, request_id = :request_id, pause_requested = :pause_requested,
                failures = :failures, last_event_sequence = :last_event_sequence,
                replica_worker_ids = :replica_worker_ids, sweep_id = :sweep_id,
                sweep_trial = :sweep_trial, stop_early_requested = :stop_early_requested
WHERE id = :id
)sql";
inline constexpr char kPutEpochSql[] = R"sql(
INSERT INTO epochs (job_id, epoch, attempt, metrics) VALUES (:job_id, :epoch, :attempt, :metrics)
ON CONFLICT (job_id, epoch) DO UPDATE SET attempt = excluded.attempt, metrics = excluded.metrics
)sql";
inline constexpr char kPutEventSql[] = "INSERT INTO events (job_id, sequence, event) VALUES (?, ?, ?)";

int64_t StoredMicros(bool is_set, const google::protobuf::Timestamp& time);
std::optional<google::protobuf::Timestamp> LoadedTime(const SQLite::Column& column);
// Blobs are bound by pointer and size: binding the std::string itself would store TEXT.
void BindBlob(SQLite::Statement& statement, const char* name, const std::string& bytes);
void BindJobColumns(const JobRecord& job, SQLite::Statement& statement);
void InsertEvent(SQLite::Statement& insert, const std::string& job_id,
                 const tl::v1::JobEvent& event);
absl::StatusOr<tl::v1::Job::State> StoredState(int value);
bool ParseBlob(const SQLite::Column& column, google::protobuf::MessageLite* message);
// Reads the current row of a statement that selected kJobColumns.
absl::StatusOr<JobRecord> RowToRecord(const SQLite::Statement& row);
// Every sweep query selects these columns; the row's record holds the rest.
inline constexpr char kSweepColumns[] = "seq, id, state, owner, request_id, create_time_us, record";
enum SweepColumn : int {
  kSweepSeqColumn,
  kSweepRowIdColumn,
  kSweepStateColumn,
  kSweepOwnerColumn,
  kSweepRequestIdColumn,
  kSweepCreateTimeColumn,
  kSweepRecordColumn,
};
inline constexpr char kInsertSweepSql[] = R"sql(
INSERT INTO sweeps (id, state, owner, request_id, create_time_us, record)
VALUES (:id, :state, :owner, :request_id, :create_time_us, :record)
ON CONFLICT (id) DO NOTHING
)sql";
inline constexpr char kUpdateSweepSql[] = R"sql(
UPDATE sweeps SET state = :state, record = :record WHERE id = :id
)sql";
void BindSweepColumns(const SweepRecord& sweep, SQLite::Statement& statement);
// Reads the current row of a statement that selected kSweepColumns.
absl::StatusOr<SweepRecord> RowToSweep(const SQLite::Statement& row);

// Reads every row a job query returns.
absl::StatusOr<std::vector<JobRecord>> AllRowsToRecords(SQLite::Statement& query);

// A gang's worker ids in their column: one per line, in rank order, each C-escaped (the
// scheduler refuses control characters in a hello, but servers before that check took any id,
// and a line break inside one must not split it in two).
std::string JoinedWorkerIds(const google::protobuf::RepeatedPtrField<std::string>& ids);
std::vector<std::string> SplitWorkerIds(const std::string& column);

}  // namespace tl::server::sqlite_rows
