// The durable job queue: one SQLite file in WAL mode holding every job and
// every stored epoch. A row here is the truth; the scheduler's memory only
// caches it. Every write is committed (synchronous=FULL) before it returns,
// so an acknowledged SubmitJob survives a crash of the process or the host.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tl/v1/service.pb.h"

namespace SQLite {
class Database;
class Statement;
}

namespace tl::server {

class JobStore {
 public:
  // Opens (creating when missing) the database at `path` and its schema.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string& path);
  ~JobStore();

  // Inserts a QUEUED job with a fresh id, attempt 0 and create/update time
  // `now`, and its first event (sequence 1, the job as created), in one
  // transaction. A non-empty request_id must be new for the owner (the
  // caller checks with FindByRequestId; the index refuses a duplicate).
  // Returns the stored row.
  absl::StatusOr<tl::v1::Job> CreateJob(const tl::v1::JobSpec& spec, const std::string& owner,
                                        absl::Time now, const std::string& request_id = "");

  struct NewJob {
    tl::v1::JobSpec spec;
    std::string owner;
    std::string request_id;
    absl::Time now;
  };
  // CreateJob for several jobs in one transaction: all are stored or none.
  absl::StatusOr<std::vector<tl::v1::Job>> CreateJobs(const std::vector<NewJob>& jobs);

  // The job that `owner` submitted with `request_id`, if any.
  absl::StatusOr<std::optional<tl::v1::Job>> FindByRequestId(const std::string& owner,
                                                             const std::string& request_id);

  // NOT_FOUND naming the id when there is no such job.
  absl::StatusOr<tl::v1::Job> GetJob(const std::string& job_id);

  // Replaces the stored row of job.id() with `job` (every column, the spec
  // included). NOT_FOUND when the job does not exist.
  absl::Status UpdateJob(const tl::v1::Job& job);

  // UpdateJob, plus the events (numbered by the caller, following the
  // job's previous last_event_sequence) and, when given, an epoch's metrics
  // (as PutEpoch), all in one transaction: either all are stored or none.
  absl::Status CommitJob(const tl::v1::Job& job, const std::vector<tl::v1::JobEvent>& events,
                         const tl::v1::EpochMetrics* epoch);

  // The job's stored events with a sequence above `after_sequence`, in
  // order. NOT_FOUND when the job does not exist.
  absl::StatusOr<std::vector<tl::v1::JobEvent>> GetEvents(const std::string& job_id,
                                                          int64_t after_sequence);

  // Appends log lines, numbering them after the job's last line, and drops
  // the job's oldest lines beyond `max_lines_kept`. Returns the lines as
  // stored (with their sequence numbers).
  absl::StatusOr<std::vector<tl::v1::LogLine>> AppendLogs(
      const std::string& job_id, const std::vector<tl::v1::LogLine>& lines,
      int64_t max_lines_kept);
  // At most `limit` of the job's kept lines after `after_sequence`, oldest first.
  absl::StatusOr<std::vector<tl::v1::LogLine>> GetLogs(const std::string& job_id,
                                                       int64_t after_sequence, int limit);

  struct Page {
    std::vector<tl::v1::Job> jobs;
    std::string next_page_token;  // empty on the last page
  };
  // Newest first. `states` empty means every state. page_size in [1, 1000].
  // A page token is opaque to callers; a malformed one is INVALID_ARGUMENT.
  // `owner` non-empty: only that owner's jobs. A page ends early (with a token) before the
  // job that would take its serialized size past `max_page_bytes`; it holds one job at least.
  absl::StatusOr<Page> ListJobs(const std::vector<tl::v1::Job::State>& states, int page_size,
                                const std::string& page_token, const std::string& owner = "",
                                size_t max_page_bytes = SIZE_MAX);

  // Every job in one of `states`, oldest first (for the scheduler's startup).
  absl::StatusOr<std::vector<tl::v1::Job>> JobsInStates(
      const std::vector<tl::v1::Job::State>& states);

  // Stores an epoch's metrics, keyed by (job_id, metrics.epoch()): a later
  // attempt's report of the same epoch replaces the earlier one, so every
  // epoch is stored once.
  absl::Status PutEpoch(const std::string& job_id, const tl::v1::EpochMetrics& metrics);

  // One stored epoch of the job; nullopt when that epoch is not stored.
  absl::StatusOr<std::optional<tl::v1::EpochMetrics>> GetEpoch(const std::string& job_id,
                                                               int epoch);

  // The job's stored epochs, in epoch order.
  absl::StatusOr<std::vector<tl::v1::EpochMetrics>> GetEpochs(const std::string& job_id);

  // Number of jobs in each state that has any.
  absl::StatusOr<std::map<tl::v1::Job::State, int64_t>> CountByState();

  // Prepared statements by SQL text, made on first use.
  using StatementCache = std::map<std::string, std::unique_ptr<SQLite::Statement>>;

 private:
  explicit JobStore(std::unique_ptr<SQLite::Database> db);

  std::mutex mutex_;  // SQLite connection objects are not safe to share unguarded
  std::unique_ptr<SQLite::Database> db_;
  StatementCache statements_;  // after db_: destroyed before the connection closes
};

// NOT_FOUND for `job_id`. Also the answer to a user about another owner's job, so that the
// ids of others' jobs cannot be told from ids that do not exist.
absl::Status JobNotFound(absl::string_view job_id);

}  // namespace tl::server
