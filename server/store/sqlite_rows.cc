#include "server/store/sqlite_rows.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"

namespace tl::server::sqlite_rows {

using ::google::protobuf::Timestamp;
using ::google::protobuf::util::TimeUtil;
using ::tl::v1::Job;
using ::tl::v1::JobEvent;

int64_t StoredMicros(bool is_set, const Timestamp& time) {
  return is_set ? TimeUtil::TimestampToMicroseconds(time) : 0;
}

std::optional<Timestamp> LoadedTime(const SQLite::Column& column) {
  const int64_t micros = column.getInt64();
  if (micros == 0) return std::nullopt;
  return TimeUtil::MicrosecondsToTimestamp(micros);
}

// Blobs are bound by pointer and size: binding the std::string itself would store TEXT.
void BindBlob(SQLite::Statement& statement, const char* name, const std::string& bytes) {
  statement.bind(name, bytes.data(), static_cast<int>(bytes.size()));
}

void BindJobColumns(const JobRecord& job, SQLite::Statement& statement) {
  statement.bind(":id", job.id());
  statement.bind(":state", static_cast<int>(job.state()));
  statement.bind(":priority", job.spec().priority());
  statement.bind(":owner", job.owner());
  statement.bind(":attempt", job.attempt());
  statement.bind(":worker_id", job.worker_id());
  statement.bind(":epoch", job.epoch());
  statement.bind(":cancel_requested", job.cancel_requested() ? 1 : 0);
  statement.bind(":error", job.error());
  statement.bind(":create_time_us", StoredMicros(job.has_create_time(), job.create_time()));
  statement.bind(":start_time_us", StoredMicros(job.has_start_time(), job.start_time()));
  statement.bind(":end_time_us", StoredMicros(job.has_end_time(), job.end_time()));
  statement.bind(":update_time_us", StoredMicros(job.has_update_time(), job.update_time()));
  BindBlob(statement, ":spec", job.spec().SerializeAsString());
  if (job.has_result()) {
    BindBlob(statement, ":result", job.result().SerializeAsString());
  } else {
    statement.bind(":result");  // NULL
  }
  statement.bind(":request_id", job.request_id());
  statement.bind(":pause_requested", job.pause_requested() ? 1 : 0);
  statement.bind(":failures", job.failures());
  statement.bind(":last_event_sequence", static_cast<int64_t>(job.last_event_sequence()));
  statement.bind(":replica_worker_ids", JoinedWorkerIds(job.replica_worker_ids()));
  statement.bind(":sweep_id", job.sweep_id());
  statement.bind(":sweep_trial", job.sweep_trial());
  statement.bind(":stop_early_requested", job.stop_early_requested() ? 1 : 0);
}

void BindSweepColumns(const SweepRecord& sweep, SQLite::Statement& statement) {
  statement.bind(":id", sweep.id());
  statement.bind(":state", static_cast<int>(sweep.state()));
  BindBlob(statement, ":record", sweep.SerializeAsString());
}

absl::StatusOr<SweepRecord> RowToSweep(const SQLite::Statement& row) {
  SweepRecord sweep;
  if (!ParseBlob(row.getColumn(kSweepRecordColumn), &sweep)) {
    return absl::InternalError(
        absl::StrCat("sweep ", row.getColumn(kSweepRowIdColumn).getString(), " has a corrupt row"));
  }
  return sweep;
}

std::string JoinedWorkerIds(const google::protobuf::RepeatedPtrField<std::string>& ids) {
  return absl::StrJoin(ids, "\n", [](std::string* out, const std::string& id) {
    out->append(absl::CEscape(id));
  });
}

std::vector<std::string> SplitWorkerIds(const std::string& column) {
  std::vector<std::string> ids;
  for (absl::string_view escaped : absl::StrSplit(column, '\n', absl::SkipEmpty())) {
    std::string id;
    // A row this store wrote always unescapes; keep the text as it is otherwise.
    if (!absl::CUnescape(escaped, &id)) id = std::string(escaped);
    ids.push_back(std::move(id));
  }
  return ids;
}

void InsertEvent(SQLite::Statement& insert, const std::string& job_id, const JobEvent& event) {
  insert.reset();
  insert.bind(1, job_id);
  insert.bind(2, static_cast<int64_t>(event.sequence()));
  const std::string bytes = event.SerializeAsString();
  insert.bind(3, bytes.data(), static_cast<int>(bytes.size()));
  insert.exec();
}

absl::StatusOr<Job::State> StoredState(int value) {
  if (!Job::State_IsValid(value)) {
    return absl::InternalError(absl::StrCat("stored job state ", value, " is not a known state"));
  }
  return static_cast<Job::State>(value);
}

bool ParseBlob(const SQLite::Column& column, google::protobuf::MessageLite* message) {
  // getBlob before getBytes: SQLite sizes the value in the form last asked for.
  const void* data = column.getBlob();
  return message->ParseFromArray(data, column.getBytes());
}

// Reads the current row of a statement that selected kJobColumns.
absl::StatusOr<JobRecord> RowToRecord(const SQLite::Statement& row) {
  JobRecord job;
  job.set_id(row.getColumn(kIdColumn).getString());
  TL_ASSIGN_OR_RETURN(Job::State state, StoredState(row.getColumn(kStateColumn).getInt()));
  job.set_state(state);
  job.set_owner(row.getColumn(kOwnerColumn).getString());
  job.set_attempt(row.getColumn(kAttemptColumn).getInt());
  job.set_worker_id(row.getColumn(kWorkerIdColumn).getString());
  job.set_epoch(row.getColumn(kEpochColumn).getInt());
  job.set_cancel_requested(row.getColumn(kCancelRequestedColumn).getInt() != 0);
  job.set_error(row.getColumn(kErrorColumn).getString());
  job.set_request_id(row.getColumn(kRequestIdColumn).getString());
  job.set_pause_requested(row.getColumn(kPauseRequestedColumn).getInt() != 0);
  job.set_failures(row.getColumn(kFailuresColumn).getInt());
  job.set_last_event_sequence(row.getColumn(kLastEventSequenceColumn).getInt64());
  if (auto time = LoadedTime(row.getColumn(kCreateTimeColumn))) *job.mutable_create_time() = *time;
  if (auto time = LoadedTime(row.getColumn(kStartTimeColumn))) *job.mutable_start_time() = *time;
  if (auto time = LoadedTime(row.getColumn(kEndTimeColumn))) *job.mutable_end_time() = *time;
  if (auto time = LoadedTime(row.getColumn(kUpdateTimeColumn))) *job.mutable_update_time() = *time;
  const SQLite::Column result = row.getColumn(kResultColumn);
  if (!ParseBlob(row.getColumn(kSpecColumn), job.mutable_spec()) ||
      (!result.isNull() && !ParseBlob(result, job.mutable_result()))) {
    return absl::InternalError(absl::StrCat("job ", job.id(), " has a corrupt spec or result"));
  }
  for (std::string& id : SplitWorkerIds(row.getColumn(kReplicaWorkerIdsColumn).getString())) {
    job.add_replica_worker_ids(std::move(id));
  }
  job.set_sweep_id(row.getColumn(kSweepIdColumn).getString());
  job.set_sweep_trial(row.getColumn(kSweepTrialColumn).getInt());
  job.set_stop_early_requested(row.getColumn(kStopEarlyRequestedColumn).getInt() != 0);
  return job;
}

// Reads every row a job query returns.
absl::StatusOr<std::vector<JobRecord>> AllRowsToRecords(SQLite::Statement& query) {
  std::vector<JobRecord> jobs;
  while (query.executeStep()) {
    TL_ASSIGN_OR_RETURN(JobRecord job, RowToRecord(query));
    jobs.push_back(std::move(job));
  }
  return jobs;
}

}  // namespace tl::server::sqlite_rows
