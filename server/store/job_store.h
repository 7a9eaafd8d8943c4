// The job repository the scheduler writes through: every job, its numbered
// events, stored epochs and log lines. A row here is the truth; the
// scheduler's memory only caches it, and every write is durable before it
// returns. SqliteJobStore (sqlite_job_store.h) is the implementation;
// testing/failing_job_store.h fails any call on demand.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/record/job_record.pb.h"
#include "server/record/sweep_record.pb.h"
#include "tl/v1/service.pb.h"

namespace tl::server {

class JobStore {
 public:
  virtual ~JobStore() = default;

  // Inserts a QUEUED job with a fresh id, attempt 0 and create/update time
  // `now`, and its first event (sequence 1, the job as created), in one
  // transaction. A non-empty request_id must be new for the owner (the
  // caller checks with FindByRequestId; the index refuses a duplicate).
  // Returns the stored row.
  virtual absl::StatusOr<JobRecord> CreateJob(const tl::v1::JobSpec& spec,
                                                const std::string& owner, absl::Time now,
                                                const std::string& request_id = "") = 0;

  struct NewJob {
    tl::v1::JobSpec spec;
    std::string owner;
    std::string request_id;
    absl::Time now;
  };
  // CreateJob for several jobs in one transaction: all are stored or none.
  virtual absl::StatusOr<std::vector<JobRecord>> CreateJobs(const std::vector<NewJob>& jobs) = 0;

  // The job that `owner` submitted with `request_id`, if any.
  virtual absl::StatusOr<std::optional<JobRecord>> FindByRequestId(
      const std::string& owner, const std::string& request_id) = 0;

  // NOT_FOUND naming the id when there is no such job.
  virtual absl::StatusOr<JobRecord> GetJob(const std::string& job_id) = 0;

  // Replaces the stored row of job.id() with `job` (every column, the spec
  // included). NOT_FOUND when the job does not exist.
  virtual absl::Status UpdateJob(const JobRecord& job) = 0;

  // UpdateJob, plus the events (numbered by the caller, following the
  // job's previous last_event_sequence) and, when given, an epoch's metrics
  // (as PutEpoch), all in one transaction: either all are stored or none.
  virtual absl::Status CommitJob(const JobRecord& job,
                                 const std::vector<tl::v1::JobEvent>& events,
                                 const tl::v1::EpochMetrics* epoch) = 0;

  // The job's stored events with a sequence above `after_sequence`, in
  // order. NOT_FOUND when the job does not exist.
  virtual absl::StatusOr<std::vector<tl::v1::JobEvent>> GetEvents(const std::string& job_id,
                                                                  int64_t after_sequence) = 0;

  // Appends log lines, numbering them after the job's last line, and drops
  // the job's oldest lines beyond `max_lines_kept`. Returns the lines as
  // stored (with their sequence numbers).
  virtual absl::StatusOr<std::vector<tl::v1::LogLine>> AppendLogs(
      const std::string& job_id, const std::vector<tl::v1::LogLine>& lines,
      int64_t max_lines_kept) = 0;
  // At most `limit` of the job's kept lines after `after_sequence`, oldest first.
  virtual absl::StatusOr<std::vector<tl::v1::LogLine>> GetLogs(const std::string& job_id,
                                                               int64_t after_sequence,
                                                               int limit) = 0;

  struct Page {
    std::vector<JobRecord> jobs;
    std::string next_page_token;  // empty on the last page
  };
  // Newest first. `states` empty means every state. page_size in [1, 1000].
  // A page token is opaque to callers; a malformed one is INVALID_ARGUMENT.
  // `owner` non-empty: only that owner's jobs; `sweep_id` non-empty: only that sweep's trials.
  // A page ends early (with a token) before the job that would take its serialized size past
  // `max_page_bytes`; it holds one job at least.
  virtual absl::StatusOr<Page> ListJobs(const std::vector<tl::v1::Job::State>& states,
                                        int page_size, const std::string& page_token,
                                        const std::string& owner = "",
                                        size_t max_page_bytes = SIZE_MAX,
                                        const std::string& sweep_id = "") = 0;

  // Every job in one of `states`, oldest first (for the scheduler's startup).
  virtual absl::StatusOr<std::vector<JobRecord>> JobsInStates(
      const std::vector<tl::v1::Job::State>& states) = 0;

  // Stores an epoch's metrics, keyed by (job_id, metrics.epoch()): a later
  // attempt's report of the same epoch replaces the earlier one, so every
  // epoch is stored once.
  virtual absl::Status PutEpoch(const std::string& job_id,
                                const tl::v1::EpochMetrics& metrics) = 0;

  // One stored epoch of the job; nullopt when that epoch is not stored.
  virtual absl::StatusOr<std::optional<tl::v1::EpochMetrics>> GetEpoch(const std::string& job_id,
                                                                       int epoch) = 0;

  // The job's stored epochs, in epoch order.
  virtual absl::StatusOr<std::vector<tl::v1::EpochMetrics>> GetEpochs(
      const std::string& job_id) = 0;

  // Number of jobs in each state that has any.
  virtual absl::StatusOr<std::map<tl::v1::Job::State, int64_t>> CountByState() = 0;

  // --- Sweeps (their trials are jobs with sweep_id and sweep_trial set) ---

  // Inserts `sweep` with a fresh id (its other fields as given, trials_created 0) and returns
  // the stored row. A non-empty request_id must be new for the owner.
  virtual absl::StatusOr<SweepRecord> CreateSweep(const SweepRecord& sweep) = 0;

  // Inserts the trial `trial.sweep_trial()` of `sweep` (a QUEUED job as CreateJobs makes one,
  // with `trial`'s spec, owner, sweep_id and sweep_trial) and stores `sweep`, whose
  // trials_created counts that trial, in one transaction: a crash leaves both or neither.
  // FAILED_PRECONDITION, storing nothing, when the stored sweep has already created that trial,
  // so that no trial is created twice.
  virtual absl::StatusOr<JobRecord> CreateTrial(const SweepRecord& sweep, const JobRecord& trial,
                                                absl::Time now) = 0;

  // Replaces the stored row of sweep.id(). NOT_FOUND when there is no such sweep.
  virtual absl::Status UpdateSweep(const SweepRecord& sweep) = 0;

  // NOT_FOUND naming the id when there is no such sweep.
  virtual absl::StatusOr<SweepRecord> GetSweep(const std::string& sweep_id) = 0;

  // The sweep that `owner` submitted with `request_id`, if any.
  virtual absl::StatusOr<std::optional<SweepRecord>> FindSweepByRequestId(
      const std::string& owner, const std::string& request_id) = 0;

  struct SweepPage {
    std::vector<SweepRecord> sweeps;
    std::string next_page_token;  // empty on the last page
  };
  // As ListJobs, for sweeps.
  virtual absl::StatusOr<SweepPage> ListSweeps(const std::vector<tl::v1::Sweep::State>& states,
                                               int page_size, const std::string& page_token,
                                               const std::string& owner = "") = 0;

  // Every sweep in one of `states`, oldest first (for the scheduler's startup).
  virtual absl::StatusOr<std::vector<SweepRecord>> SweepsInStates(
      const std::vector<tl::v1::Sweep::State>& states) = 0;

  // The sweep's trials, by index.
  virtual absl::StatusOr<std::vector<JobRecord>> TrialsOf(const std::string& sweep_id) = 0;
};

// NOT_FOUND for `job_id`. Also the answer to a user about another owner's job, so that the
// ids of others' jobs cannot be told from ids that do not exist.
absl::Status JobNotFound(absl::string_view job_id);
// The same for a sweep.
absl::Status SweepNotFound(absl::string_view sweep_id);

}  // namespace tl::server
