// The job repository in one SQLite file in WAL mode. Every write is committed
// (synchronous=FULL) before it returns, so an acknowledged SubmitJob survives
// a crash of the process or the host.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "server/store/job_store.h"

namespace SQLite {
class Database;
class Statement;
}  // namespace SQLite

namespace tl::server {

class SqliteJobStore final : public JobStore {
 public:
  // Opens (creating when missing) the database at `path` and its schema,
  // moving an older schema forward.
  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> Open(const std::string& path);
  ~SqliteJobStore() override;

  absl::StatusOr<JobRecord> CreateJob(const tl::v1::JobSpec& spec, const std::string& owner,
                                        absl::Time now,
                                        const std::string& request_id = "") override;
  absl::StatusOr<std::vector<JobRecord>> CreateJobs(const std::vector<NewJob>& jobs) override;
  absl::StatusOr<std::optional<JobRecord>> FindByRequestId(
      const std::string& owner, const std::string& request_id) override;
  absl::StatusOr<JobRecord> GetJob(const std::string& job_id) override;
  absl::Status UpdateJob(const JobRecord& job) override;
  absl::Status CommitJob(const JobRecord& job, const std::vector<tl::v1::JobEvent>& events,
                         const tl::v1::EpochMetrics* epoch) override;
  absl::StatusOr<std::vector<tl::v1::JobEvent>> GetEvents(const std::string& job_id,
                                                          int64_t after_sequence) override;
  absl::StatusOr<std::vector<tl::v1::LogLine>> AppendLogs(
      const std::string& job_id, const std::vector<tl::v1::LogLine>& lines,
      int64_t max_lines_kept) override;
  absl::StatusOr<std::vector<tl::v1::LogLine>> GetLogs(const std::string& job_id,
                                                       int64_t after_sequence,
                                                       int limit) override;
  absl::StatusOr<Page> ListJobs(const std::vector<tl::v1::Job::State>& states, int page_size,
                                const std::string& page_token, const std::string& owner = "",
                                size_t max_page_bytes = SIZE_MAX,
                                const std::string& sweep_id = "") override;
  absl::StatusOr<std::vector<JobRecord>> JobsInStates(
      const std::vector<tl::v1::Job::State>& states) override;
  absl::Status PutEpoch(const std::string& job_id, const tl::v1::EpochMetrics& metrics) override;
  absl::StatusOr<std::optional<tl::v1::EpochMetrics>> GetEpoch(const std::string& job_id,
                                                               int epoch) override;
  absl::StatusOr<std::vector<tl::v1::EpochMetrics>> GetEpochs(const std::string& job_id) override;
  absl::StatusOr<std::map<tl::v1::Job::State, int64_t>> CountByState() override;
  absl::StatusOr<SweepRecord> CreateSweep(const SweepRecord& sweep) override;
  absl::StatusOr<JobRecord> CreateTrial(const SweepRecord& sweep, const JobRecord& trial,
                                        absl::Time now) override;
  absl::Status UpdateSweep(const SweepRecord& sweep) override;
  absl::StatusOr<SweepRecord> GetSweep(const std::string& sweep_id) override;
  absl::StatusOr<std::optional<SweepRecord>> FindSweepByRequestId(
      const std::string& owner, const std::string& request_id) override;
  absl::StatusOr<SweepPage> ListSweeps(const std::vector<tl::v1::Sweep::State>& states,
                                       int page_size, const std::string& page_token,
                                       const std::string& owner = "") override;
  absl::StatusOr<std::vector<SweepRecord>> SweepsInStates(
      const std::vector<tl::v1::Sweep::State>& states) override;
  absl::StatusOr<std::vector<JobRecord>> TrialsOf(const std::string& sweep_id) override;

  // Prepared statements by SQL text, made on first use.
  using StatementCache = std::map<std::string, std::unique_ptr<SQLite::Statement>>;

 private:
  explicit SqliteJobStore(std::unique_ptr<SQLite::Database> db);

  std::mutex mutex_;  // SQLite connection objects are not safe to share unguarded
  std::unique_ptr<SQLite::Database> db_;
  StatementCache statements_;  // after db_: destroyed before the connection closes
};

}  // namespace tl::server
