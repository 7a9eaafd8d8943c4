#include "server/store/sqlite_job_store.h"

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "google/protobuf/message_lite.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/time_util.h"
#include "server/record/job_view.h"
#include "server/store/sqlite_rows.h"
#include "server/store/sqlite_schema.h"

namespace tl::server {
namespace {

using sqlite_rows::kJobColumns;
using sqlite_rows::kSeqColumn;
using sqlite_rows::kInsertJobSql;
using sqlite_rows::kUpdateJobSql;
using sqlite_rows::kPutEpochSql;
using sqlite_rows::kPutEventSql;
using sqlite_rows::StoredMicros;
using sqlite_rows::LoadedTime;
using sqlite_rows::BindBlob;
using sqlite_rows::BindJobColumns;
using sqlite_rows::InsertEvent;
using sqlite_rows::StoredState;
using sqlite_rows::ParseBlob;
using sqlite_rows::RowToRecord;
using sqlite_rows::AllRowsToRecords;
using sqlite_rows::BindSweepColumns;
using sqlite_rows::kInsertSweepSql;
using sqlite_rows::kSweepColumns;
using sqlite_rows::kSweepSeqColumn;
using sqlite_rows::kUpdateSweepSql;
using sqlite_rows::RowToSweep;

using ::google::protobuf::Timestamp;
using ::google::protobuf::util::TimeUtil;
using ::tl::v1::EpochMetrics;
using ::tl::v1::Job;
using ::tl::v1::JobEvent;
using ::tl::v1::JobSpec;
using ::tl::v1::LogLine;

constexpr int kMaxPageSize = 1000;
// 64 random bits collide with vanishing probability; the bound only guarantees termination.
constexpr int kMaxIdAttempts = 8;

// Runs `body` and turns whatever it throws into INTERNAL, so that no exception leaves the store.
template <typename Body>
auto Guarded(absl::string_view operation, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const SQLite::Exception& e) {
    return absl::InternalError(
        absl::StrCat(operation, ": ", e.what(), " (sqlite error ", e.getExtendedErrorCode(), ")"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(operation, ": ", e.what()));
  }
}


std::string NewJobId(absl::BitGen& gen) {
  return absl::StrCat(absl::Hex(absl::Uniform<uint64_t>(gen), absl::kZeroPad16));
}

// A prepared statement from the store's cache, reset when it goes out of scope: a query
// left mid-way would otherwise hold its read snapshot and keep the WAL from being
// checkpointed. Statements are prepared once and reused: parsing SQL for every call cost a
// noticeable share of a submit.
class Reused {
 public:
  explicit Reused(SQLite::Statement& statement) : statement_(statement) {}
  ~Reused() { statement_.tryReset(); }
  Reused(const Reused&) = delete;
  Reused& operator=(const Reused&) = delete;

  template <typename... Args>
  void bind(Args&&... args) {
    statement_.bind(std::forward<Args>(args)...);
  }
  int exec() { return statement_.exec(); }
  bool executeStep() { return statement_.executeStep(); }
  SQLite::Column getColumn(int index) const { return statement_.getColumn(index); }
  void reset() { statement_.reset(); }
  SQLite::Statement& statement() { return statement_; }
  operator SQLite::Statement&() { return statement_; }
  operator const SQLite::Statement&() const { return statement_; }

 private:
  SQLite::Statement& statement_;
};

Reused Prepare(SqliteJobStore::StatementCache& cache, SQLite::Database& db, const std::string& sql) {
  std::unique_ptr<SQLite::Statement>& statement = cache[sql];
  if (statement == nullptr) statement = std::make_unique<SQLite::Statement>(db, sql);
  statement->reset();
  statement->clearBindings();
  return Reused(*statement);
}

bool JobExists(SqliteJobStore::StatementCache& cache, SQLite::Database& db, const std::string& job_id) {
  Reused query = Prepare(cache, db, "SELECT 1 FROM jobs WHERE id = ?");
  query.bind(1, job_id);
  return query.executeStep();
}

// Validates a state filter and drops duplicates, which also bounds the number of SQL
// parameters a caller can make us bind.
absl::StatusOr<std::vector<int>> DistinctStates(const std::vector<Job::State>& states) {
  std::set<int> distinct;
  for (Job::State state : states) {
    if (!Job::State_IsValid(state)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown job state ", state));
    }
    distinct.insert(state);
  }
  return std::vector<int>(distinct.begin(), distinct.end());
}

// "(?, ?, ?)" for three values: the SQL text depends only on how many states there are, and
// the states themselves are bound.
std::string InPlaceholders(size_t count) {
  return absl::StrCat("(", absl::StrJoin(std::vector<std::string>(count, "?"), ", "), ")");
}

absl::StatusOr<std::vector<int>> DistinctSweepStates(
    const std::vector<tl::v1::Sweep::State>& states) {
  std::set<int> distinct;
  for (tl::v1::Sweep::State state : states) {
    if (!tl::v1::Sweep::State_IsValid(state)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown sweep state ", state));
    }
    distinct.insert(state);
  }
  return std::vector<int>(distinct.begin(), distinct.end());
}

// Inserts `job` (spec, owner, request id and sweep fields set by the caller) as a new QUEUED
// job with a fresh id and its first event, inside the caller's transaction.
absl::Status InsertNewJob(absl::BitGen& gen, absl::Time now, Reused& insert,
                          Reused& insert_event, JobRecord& job) {
  job.set_state(Job::QUEUED);
  job.set_last_event_sequence(1);
  // Through microseconds, so the returned job equals what GetJob will read back.
  *job.mutable_create_time() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now));
  *job.mutable_update_time() = job.create_time();
  bool inserted = false;
  for (int attempt = 0; attempt < kMaxIdAttempts && !inserted; ++attempt) {
    job.set_id(NewJobId(gen));
    insert.reset();
    BindJobColumns(job, insert);
    // No row changed means the id was taken: draw another.
    inserted = insert.exec() == 1;
  }
  if (!inserted) return absl::InternalError("no free job id found");
  JobEvent created;
  created.set_sequence(1);
  *created.mutable_job() = ToApiJob(job);
  InsertEvent(insert_event, job.id(), created);
  return absl::OkStatus();
}

// A page token names the seq of the last job on the previous page. The "s" prefix keeps it
// from looking like a bare number callers might be tempted to compute.
std::string MakePageToken(int64_t last_seq) { return absl::StrCat("s", last_seq); }

absl::StatusOr<int64_t> ParsePageToken(absl::string_view token) {
  // Only the exact form MakePageToken writes is accepted: no sign, spaces or leading zeros.
  absl::string_view digits = token;
  int64_t last_seq = 0;
  if (!absl::ConsumePrefix(&digits, "s") || digits.empty() || digits[0] == '0' ||
      !std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(digits, &last_seq)) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed page token \"", absl::CHexEscape(token), "\""));
  }
  return last_seq;
}

}  // namespace


SqliteJobStore::SqliteJobStore(std::unique_ptr<SQLite::Database> db) : db_(std::move(db)) {}

SqliteJobStore::~SqliteJobStore() = default;

absl::StatusOr<std::unique_ptr<SqliteJobStore>> SqliteJobStore::Open(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SqliteJobStore>> store =
      Guarded("open", [&]() -> absl::StatusOr<std::unique_ptr<SqliteJobStore>> {
        // The busy timeout is given to the constructor (it sets what PRAGMA busy_timeout sets)
        // so that it already applies to the locking statements below.
        auto db = std::make_unique<SQLite::Database>(
            path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE, kBusyTimeoutMs);
        TL_RETURN_IF_ERROR(ConfigureConnection(*db));
        TL_RETURN_IF_ERROR(CreateOrCheckSchema(*db));
        return std::unique_ptr<SqliteJobStore>(new SqliteJobStore(std::move(db)));
      });
  if (store.ok()) return store;
  // Every failure to open names the file, whichever step failed.
  return absl::Status(store.status().code(),
                      absl::StrCat("job database ", path, ": ", store.status().message()));
}

absl::StatusOr<JobRecord> SqliteJobStore::CreateJob(const JobSpec& spec, const std::string& owner,
                                        absl::Time now, const std::string& request_id) {
  TL_ASSIGN_OR_RETURN(std::vector<JobRecord> created,
                      CreateJobs({NewJob{spec, owner, request_id, now}}));
  return std::move(created.front());
}

absl::StatusOr<std::vector<JobRecord>> SqliteJobStore::CreateJobs(const std::vector<NewJob>& new_jobs) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("create job", [&]() -> absl::StatusOr<std::vector<JobRecord>> {
    absl::BitGen gen;
    std::vector<JobRecord> jobs;
    jobs.reserve(new_jobs.size());
    // One transaction, so one sync to disk, however many jobs: concurrent submits share it.
    SQLite::Transaction transaction(*db_);
    Reused insert = Prepare(statements_, *db_, kInsertJobSql);
    Reused insert_event = Prepare(statements_, *db_, kPutEventSql);
    for (const NewJob& new_job : new_jobs) {
      JobRecord& job = jobs.emplace_back();
      *job.mutable_spec() = new_job.spec;
      job.set_owner(new_job.owner);
      job.set_request_id(new_job.request_id);
      TL_RETURN_IF_ERROR(InsertNewJob(gen, new_job.now, insert, insert_event, job));
    }
    transaction.commit();
    return jobs;
  });
}

absl::StatusOr<SweepRecord> SqliteJobStore::CreateSweep(const SweepRecord& given) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("create sweep", [&]() -> absl::StatusOr<SweepRecord> {
    absl::BitGen gen;
    SweepRecord sweep = given;
    sweep.set_trials_created(0);
    Reused insert = Prepare(statements_, *db_, kInsertSweepSql);
    for (int attempt = 0; attempt < kMaxIdAttempts; ++attempt) {
      sweep.set_id(NewJobId(gen));
      insert.reset();
      BindSweepColumns(sweep, insert);
      insert.bind(":owner", sweep.owner());
      insert.bind(":request_id", sweep.request_id());
      insert.bind(":create_time_us", StoredMicros(sweep.has_create_time(), sweep.create_time()));
      // No row changed means the id was taken: draw another.
      if (insert.exec() == 1) return sweep;
    }
    return absl::InternalError("no free sweep id found");
  });
}

absl::StatusOr<JobRecord> SqliteJobStore::CreateTrial(const SweepRecord& sweep,
                                                      const JobRecord& trial, absl::Time now) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("create trial", [&]() -> absl::StatusOr<JobRecord> {
    SQLite::Transaction transaction(*db_);
    Reused query = Prepare(statements_, *db_,
                           absl::StrCat("SELECT ", kSweepColumns, " FROM sweeps WHERE id = ?"));
    query.bind(1, sweep.id());
    if (!query.executeStep()) return SweepNotFound(sweep.id());
    TL_ASSIGN_OR_RETURN(const SweepRecord stored, RowToSweep(query));
    query.reset();
    if (stored.trials_created() != trial.sweep_trial() ||
        sweep.trials_created() != trial.sweep_trial() + 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("sweep ", sweep.id(), " has created ", stored.trials_created(),
                       " trials; trial ", trial.sweep_trial(), " is not the next"));
    }
    absl::BitGen gen;
    JobRecord job = trial;
    job.set_sweep_id(sweep.id());
    Reused insert = Prepare(statements_, *db_, kInsertJobSql);
    Reused insert_event = Prepare(statements_, *db_, kPutEventSql);
    TL_RETURN_IF_ERROR(InsertNewJob(gen, now, insert, insert_event, job));
    Reused update = Prepare(statements_, *db_, kUpdateSweepSql);
    BindSweepColumns(sweep, update);
    update.exec();
    transaction.commit();
    return job;
  });
}

absl::Status SqliteJobStore::UpdateSweep(const SweepRecord& sweep) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("update sweep", [&]() -> absl::Status {
    Reused update = Prepare(statements_, *db_, kUpdateSweepSql);
    BindSweepColumns(sweep, update);
    if (update.exec() == 0) return SweepNotFound(sweep.id());
    return absl::OkStatus();
  });
}

absl::StatusOr<SweepRecord> SqliteJobStore::GetSweep(const std::string& sweep_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("get sweep", [&]() -> absl::StatusOr<SweepRecord> {
    Reused query = Prepare(statements_, *db_,
                           absl::StrCat("SELECT ", kSweepColumns, " FROM sweeps WHERE id = ?"));
    query.bind(1, sweep_id);
    if (!query.executeStep()) return SweepNotFound(sweep_id);
    return RowToSweep(query);
  });
}

absl::StatusOr<std::optional<SweepRecord>> SqliteJobStore::FindSweepByRequestId(
    const std::string& owner, const std::string& request_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("find sweep by request id", [&]() -> absl::StatusOr<std::optional<SweepRecord>> {
    Reused query = Prepare(statements_, *db_, absl::StrCat(
        "SELECT ", kSweepColumns,
        " FROM sweeps WHERE owner = ? AND request_id = ? AND request_id != ''"));
    query.bind(1, owner);
    query.bind(2, request_id);
    if (!query.executeStep()) return std::optional<SweepRecord>();
    TL_ASSIGN_OR_RETURN(SweepRecord sweep, RowToSweep(query));
    return std::optional<SweepRecord>(std::move(sweep));
  });
}

absl::StatusOr<JobStore::SweepPage> SqliteJobStore::ListSweeps(
    const std::vector<tl::v1::Sweep::State>& states, int page_size, const std::string& page_token,
    const std::string& owner) {
  if (page_size < 1 || page_size > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size must be in [1, ", kMaxPageSize, "], got ", page_size));
  }
  TL_ASSIGN_OR_RETURN(std::vector<int> filter, DistinctSweepStates(states));
  int64_t before_seq = std::numeric_limits<int64_t>::max();
  if (!page_token.empty()) {
    TL_ASSIGN_OR_RETURN(before_seq, ParsePageToken(page_token));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("list sweeps", [&]() -> absl::StatusOr<SweepPage> {
    const std::string state_clause =
        filter.empty() ? "" : absl::StrCat(" AND state IN ", InPlaceholders(filter.size()));
    const std::string owner_clause = owner.empty() ? "" : " AND owner = ?";
    Reused query = Prepare(statements_, *db_,
                           absl::StrCat("SELECT ", kSweepColumns, " FROM sweeps WHERE seq < ?",
                                        state_clause, owner_clause, " ORDER BY seq DESC LIMIT ?"));
    int parameter = 1;
    query.bind(parameter++, before_seq);
    for (int state : filter) query.bind(parameter++, state);
    if (!owner.empty()) query.bind(parameter++, owner);
    query.bind(parameter++, page_size + 1);
    SweepPage page;
    int64_t last_seq = 0;
    while (query.executeStep()) {
      if (static_cast<int>(page.sweeps.size()) == page_size) {
        page.next_page_token = MakePageToken(last_seq);
        break;
      }
      TL_ASSIGN_OR_RETURN(SweepRecord sweep, RowToSweep(query));
      page.sweeps.push_back(std::move(sweep));
      last_seq = query.getColumn(kSweepSeqColumn).getInt64();
    }
    return page;
  });
}

absl::StatusOr<std::vector<SweepRecord>> SqliteJobStore::SweepsInStates(
    const std::vector<tl::v1::Sweep::State>& states) {
  TL_ASSIGN_OR_RETURN(std::vector<int> filter, DistinctSweepStates(states));
  if (filter.empty()) return std::vector<SweepRecord>();
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("list sweeps by state", [&]() -> absl::StatusOr<std::vector<SweepRecord>> {
    Reused query = Prepare(statements_, *db_,
                           absl::StrCat("SELECT ", kSweepColumns, " FROM sweeps WHERE state IN ",
                                        InPlaceholders(filter.size()), " ORDER BY seq"));
    int parameter = 1;
    for (int state : filter) query.bind(parameter++, state);
    std::vector<SweepRecord> sweeps;
    while (query.executeStep()) {
      TL_ASSIGN_OR_RETURN(SweepRecord sweep, RowToSweep(query));
      sweeps.push_back(std::move(sweep));
    }
    return sweeps;
  });
}

absl::StatusOr<std::vector<JobRecord>> SqliteJobStore::TrialsOf(const std::string& sweep_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("list trials", [&]() -> absl::StatusOr<std::vector<JobRecord>> {
    // The last term repeats the partial index's condition, so that SQLite uses jobs_by_sweep.
    Reused query = Prepare(statements_, *db_, absl::StrCat(
        "SELECT ", kJobColumns,
        " FROM jobs WHERE sweep_id = ? AND sweep_id != '' ORDER BY sweep_trial"));
    query.bind(1, sweep_id);
    return AllRowsToRecords(query);
  });
}

absl::StatusOr<std::optional<JobRecord>> SqliteJobStore::FindByRequestId(const std::string& owner,
                                                             const std::string& request_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("find job by request id", [&]() -> absl::StatusOr<std::optional<JobRecord>> {
    // The last term repeats the partial index's condition: without it SQLite cannot use
    // jobs_by_request and scans the owner's jobs instead.
    Reused query = Prepare(statements_, *db_, absl::StrCat(
        "SELECT ", kJobColumns,
        " FROM jobs WHERE owner = ? AND request_id = ? AND request_id != ''"));
    query.bind(1, owner);
    query.bind(2, request_id);
    if (!query.executeStep()) return std::optional<JobRecord>();
    TL_ASSIGN_OR_RETURN(JobRecord job, RowToRecord(query));
    return std::optional<JobRecord>(std::move(job));
  });
}

absl::StatusOr<JobRecord> SqliteJobStore::GetJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("get job", [&]() -> absl::StatusOr<JobRecord> {
    Reused query = Prepare(statements_, *db_, absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE id = ?"));
    query.bind(1, job_id);
    if (!query.executeStep()) return JobNotFound(job_id);
    return RowToRecord(query);
  });
}

absl::Status SqliteJobStore::UpdateJob(const JobRecord& job) { return CommitJob(job, {}, nullptr); }

absl::Status SqliteJobStore::CommitJob(const JobRecord& job, const std::vector<JobEvent>& events,
                                 const EpochMetrics* epoch) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("update job", [&]() -> absl::Status {
    SQLite::Transaction transaction(*db_);
    Reused update = Prepare(statements_, *db_, kUpdateJobSql);
    BindJobColumns(job, update);
    if (update.exec() == 0) return JobNotFound(job.id());
    if (epoch != nullptr) {
      Reused upsert = Prepare(statements_, *db_, kPutEpochSql);
      upsert.bind(":job_id", job.id());
      upsert.bind(":epoch", epoch->epoch());
      upsert.bind(":attempt", epoch->attempt());
      BindBlob(upsert, ":metrics", epoch->SerializeAsString());
      upsert.exec();
    }
    Reused insert_event = Prepare(statements_, *db_, kPutEventSql);
    for (const JobEvent& event : events) InsertEvent(insert_event, job.id(), event);
    transaction.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<JobEvent>> SqliteJobStore::GetEvents(const std::string& job_id,
                                                          int64_t after_sequence) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("get events", [&]() -> absl::StatusOr<std::vector<JobEvent>> {
    if (!JobExists(statements_, *db_, job_id)) return JobNotFound(job_id);
    SQLite::Statement query(
        *db_, "SELECT event FROM events WHERE job_id = ? AND sequence > ? ORDER BY sequence");
    query.bind(1, job_id);
    query.bind(2, after_sequence);
    std::vector<JobEvent> events;
    while (query.executeStep()) {
      if (!ParseBlob(query.getColumn(0), &events.emplace_back())) {
        return absl::InternalError(absl::StrCat("job ", job_id, " has a corrupt event"));
      }
    }
    return events;
  });
}

absl::StatusOr<std::vector<LogLine>> SqliteJobStore::AppendLogs(const std::string& job_id,
                                                          const std::vector<LogLine>& lines,
                                                          int64_t max_lines_kept) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("append logs", [&]() -> absl::StatusOr<std::vector<LogLine>> {
    if (!JobExists(statements_, *db_, job_id)) return JobNotFound(job_id);
    SQLite::Transaction transaction(*db_);
    Reused last = Prepare(statements_, *db_, "SELECT COALESCE(MAX(sequence), 0) FROM logs WHERE job_id = ?");
    last.bind(1, job_id);
    last.executeStep();
    int64_t sequence = last.getColumn(0).getInt64();
    std::vector<LogLine> stored;
    stored.reserve(lines.size());
    Reused insert = Prepare(statements_, *db_, "INSERT INTO logs (job_id, sequence, time_us, attempt, worker_id, "
                             "text) VALUES (?, ?, ?, ?, ?, ?)");
    for (const LogLine& line : lines) {
      LogLine& copy = stored.emplace_back(line);
      copy.set_sequence(++sequence);
      insert.reset();
      insert.bind(1, job_id);
      insert.bind(2, sequence);
      insert.bind(3, StoredMicros(line.has_time(), line.time()));
      insert.bind(4, line.attempt());
      insert.bind(5, line.worker_id());
      insert.bind(6, line.text());
      insert.exec();
    }
    // The oldest lines go first: a job that logs without end keeps its latest lines.
    Reused prune = Prepare(statements_, *db_, "DELETE FROM logs WHERE job_id = ? AND sequence <= ?");
    prune.bind(1, job_id);
    prune.bind(2, sequence - max_lines_kept);
    prune.exec();
    transaction.commit();
    return stored;
  });
}

absl::StatusOr<std::vector<LogLine>> SqliteJobStore::GetLogs(const std::string& job_id,
                                                       int64_t after_sequence, int limit) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("get logs", [&]() -> absl::StatusOr<std::vector<LogLine>> {
    if (!JobExists(statements_, *db_, job_id)) return JobNotFound(job_id);
    Reused query = Prepare(statements_, *db_, "SELECT sequence, time_us, attempt, worker_id, text FROM logs "
                            "WHERE job_id = ? AND sequence > ? ORDER BY sequence LIMIT ?");
    query.bind(1, job_id);
    query.bind(2, after_sequence);
    query.bind(3, limit);
    std::vector<LogLine> lines;
    while (query.executeStep()) {
      LogLine& line = lines.emplace_back();
      line.set_sequence(query.getColumn(0).getInt64());
      if (auto time = LoadedTime(query.getColumn(1))) *line.mutable_time() = *time;
      line.set_attempt(query.getColumn(2).getInt());
      line.set_worker_id(query.getColumn(3).getString());
      line.set_text(query.getColumn(4).getString());
    }
    return lines;
  });
}

absl::StatusOr<JobStore::Page> SqliteJobStore::ListJobs(const std::vector<Job::State>& states,
                                                  int page_size, const std::string& page_token,
                                                  const std::string& owner,
                                                  size_t max_page_bytes,
                                                  const std::string& sweep_id) {
  if (page_size < 1 || page_size > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size must be in [1, ", kMaxPageSize, "], got ", page_size));
  }
  TL_ASSIGN_OR_RETURN(std::vector<int> filter, DistinctStates(states));
  int64_t before_seq = std::numeric_limits<int64_t>::max();
  if (!page_token.empty()) {
    TL_ASSIGN_OR_RETURN(before_seq, ParsePageToken(page_token));
  }

  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("list jobs", [&]() -> absl::StatusOr<Page> {
    const std::string state_clause =
        filter.empty() ? "" : absl::StrCat(" AND state IN ", InPlaceholders(filter.size()));
    const std::string owner_clause = owner.empty() ? "" : " AND owner = ?";
    const std::string sweep_clause = sweep_id.empty() ? "" : " AND sweep_id = ?";
    Reused query = Prepare(statements_, *db_, absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE seq < ?",
                                               state_clause, owner_clause, sweep_clause,
                                               " ORDER BY seq DESC LIMIT ?"));
    int parameter = 1;
    query.bind(parameter++, before_seq);
    for (int state : filter) query.bind(parameter++, state);
    if (!owner.empty()) query.bind(parameter++, owner);
    if (!sweep_id.empty()) query.bind(parameter++, sweep_id);
    // One row more than the page: its presence is what says another page exists, so a page
    // that happens to hold exactly the rest gets no token.
    query.bind(parameter++, page_size + 1);

    Page page;
    int64_t last_seq = 0;
    size_t page_bytes = 0;
    while (query.executeStep()) {
      if (static_cast<int>(page.jobs.size()) == page_size) {
        page.next_page_token = MakePageToken(last_seq);
        break;
      }
      TL_ASSIGN_OR_RETURN(JobRecord job, RowToRecord(query));
      // Room for the repeated field's tag and length too.
      const size_t job_bytes = job.ByteSizeLong() + 16;
      if (!page.jobs.empty() && page_bytes + job_bytes > max_page_bytes) {
        page.next_page_token = MakePageToken(last_seq);
        break;
      }
      page_bytes += job_bytes;
      page.jobs.push_back(std::move(job));
      last_seq = query.getColumn(kSeqColumn).getInt64();
    }
    return page;
  });
}

absl::StatusOr<std::vector<JobRecord>> SqliteJobStore::JobsInStates(const std::vector<Job::State>& states) {
  TL_ASSIGN_OR_RETURN(std::vector<int> filter, DistinctStates(states));
  // Unlike ListJobs, no states means no jobs: this asks for specific states.
  if (filter.empty()) return std::vector<JobRecord>();

  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("list jobs by state", [&]() -> absl::StatusOr<std::vector<JobRecord>> {
    Reused query = Prepare(statements_, *db_, absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE state IN ",
                                               InPlaceholders(filter.size()), " ORDER BY seq"));
    int parameter = 1;
    for (int state : filter) query.bind(parameter++, state);
    return AllRowsToRecords(query);
  });
}

absl::Status SqliteJobStore::PutEpoch(const std::string& job_id, const EpochMetrics& metrics) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("put epoch", [&]() -> absl::Status {
    // The foreign key would refuse the row too, but as a bare constraint failure; checking
    // first gives the caller NOT_FOUND. The mutex makes check and insert one step.
    if (!JobExists(statements_, *db_, job_id)) return JobNotFound(job_id);
    Reused upsert = Prepare(statements_, *db_, kPutEpochSql);
    upsert.bind(":job_id", job_id);
    upsert.bind(":epoch", metrics.epoch());
    upsert.bind(":attempt", metrics.attempt());
    BindBlob(upsert, ":metrics", metrics.SerializeAsString());
    upsert.exec();
    return absl::OkStatus();
  });
}

absl::StatusOr<std::optional<EpochMetrics>> SqliteJobStore::GetEpoch(const std::string& job_id,
                                                               int epoch) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("get epoch", [&]() -> absl::StatusOr<std::optional<EpochMetrics>> {
    Reused query =
        Prepare(statements_, *db_, "SELECT metrics FROM epochs WHERE job_id = ? AND epoch = ?");
    query.bind(1, job_id);
    query.bind(2, epoch);
    if (!query.executeStep()) return std::optional<EpochMetrics>();
    EpochMetrics metrics;
    if (!ParseBlob(query.getColumn(0), &metrics)) {
      return absl::InternalError(absl::StrCat("job ", job_id, " has corrupt epoch metrics"));
    }
    return std::optional<EpochMetrics>(std::move(metrics));
  });
}

absl::StatusOr<std::vector<EpochMetrics>> SqliteJobStore::GetEpochs(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("get epochs", [&]() -> absl::StatusOr<std::vector<EpochMetrics>> {
    Reused query = Prepare(statements_, *db_, "SELECT metrics FROM epochs WHERE job_id = ? ORDER BY epoch");
    query.bind(1, job_id);
    std::vector<EpochMetrics> epochs;
    while (query.executeStep()) {
      if (!ParseBlob(query.getColumn(0), &epochs.emplace_back())) {
        return absl::InternalError(absl::StrCat("job ", job_id, " has corrupt epoch metrics"));
      }
    }
    // No epochs is a normal answer for a job that has not finished one; not for a job that
    // does not exist.
    if (epochs.empty() && !JobExists(statements_, *db_, job_id)) return JobNotFound(job_id);
    return epochs;
  });
}

absl::StatusOr<std::map<Job::State, int64_t>> SqliteJobStore::CountByState() {
  std::lock_guard<std::mutex> lock(mutex_);
  return Guarded("count jobs", [&]() -> absl::StatusOr<std::map<Job::State, int64_t>> {
    Reused query = Prepare(statements_, *db_, "SELECT state, COUNT(*) FROM jobs GROUP BY state");
    std::map<Job::State, int64_t> counts;
    while (query.executeStep()) {
      TL_ASSIGN_OR_RETURN(Job::State state, StoredState(query.getColumn(0).getInt()));
      counts[state] = query.getColumn(1).getInt64();
    }
    return counts;
  });
}

}  // namespace tl::server
