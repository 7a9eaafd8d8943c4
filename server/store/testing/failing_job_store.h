// A JobStore for tests that passes every call to a real store, except those a
// test asks to fail: so that each write the scheduler makes can be made to
// fail, and what the scheduler holds afterwards compared with what is stored.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "server/store/job_store.h"

namespace tl::server::testing {

class FailingJobStore final : public JobStore {
 public:
  enum class Call {
    kCreateJob,
    kCreateJobs,
    kFindByRequestId,
    kGetJob,
    kUpdateJob,
    kCommitJob,
    kGetEvents,
    kAppendLogs,
    kGetLogs,
    kListJobs,
    kJobsInStates,
    kPutEpoch,
    kGetEpoch,
    kGetEpochs,
    kCountByState,
    kCreateSweep,
    kCreateTrial,
    kUpdateSweep,
    kGetSweep,
    kFindSweepByRequestId,
    kListSweeps,
    kSweepsInStates,
    kTrialsOf,
  };

  explicit FailingJobStore(JobStore& real) : real_(real) {}

  // The next `times` calls of `call` fail with `status` (a negative `times`: every call until
  // Heal) without reaching the real store; with `passes_first`, that many calls reach it first
  // (a write that is stored, and the one after it lost, as a process killed between them).
  void Fail(Call call, absl::Status status, int times = 1, int passes_first = 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    failures_[call] = {std::move(status), times, passes_first};
  }
  void Heal() {
    std::lock_guard<std::mutex> lock(mutex_);
    failures_.clear();
  }
  // How many calls of `call` were failed so far.
  int failed(Call call) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = failed_.find(call);
    return it == failed_.end() ? 0 : it->second;
  }

  absl::StatusOr<JobRecord> CreateJob(const tl::v1::JobSpec& spec, const std::string& owner,
                                        absl::Time now,
                                        const std::string& request_id = "") override {
    if (absl::Status status = Take(Call::kCreateJob); !status.ok()) return status;
    return real_.CreateJob(spec, owner, now, request_id);
  }
  absl::StatusOr<std::vector<JobRecord>> CreateJobs(const std::vector<NewJob>& jobs) override {
    if (absl::Status status = Take(Call::kCreateJobs); !status.ok()) return status;
    return real_.CreateJobs(jobs);
  }
  absl::StatusOr<std::optional<JobRecord>> FindByRequestId(
      const std::string& owner, const std::string& request_id) override {
    if (absl::Status status = Take(Call::kFindByRequestId); !status.ok()) return status;
    return real_.FindByRequestId(owner, request_id);
  }
  absl::StatusOr<JobRecord> GetJob(const std::string& job_id) override {
    if (absl::Status status = Take(Call::kGetJob); !status.ok()) return status;
    return real_.GetJob(job_id);
  }
  absl::Status UpdateJob(const JobRecord& job) override {
    if (absl::Status status = Take(Call::kUpdateJob); !status.ok()) return status;
    return real_.UpdateJob(job);
  }
  absl::Status CommitJob(const JobRecord& job, const std::vector<tl::v1::JobEvent>& events,
                         const tl::v1::EpochMetrics* epoch) override {
    if (absl::Status status = Take(Call::kCommitJob); !status.ok()) return status;
    return real_.CommitJob(job, events, epoch);
  }
  absl::StatusOr<std::vector<tl::v1::JobEvent>> GetEvents(const std::string& job_id,
                                                          int64_t after_sequence) override {
    if (absl::Status status = Take(Call::kGetEvents); !status.ok()) return status;
    return real_.GetEvents(job_id, after_sequence);
  }
  absl::StatusOr<std::vector<tl::v1::LogLine>> AppendLogs(
      const std::string& job_id, const std::vector<tl::v1::LogLine>& lines,
      int64_t max_lines_kept) override {
    if (absl::Status status = Take(Call::kAppendLogs); !status.ok()) return status;
    return real_.AppendLogs(job_id, lines, max_lines_kept);
  }
  absl::StatusOr<std::vector<tl::v1::LogLine>> GetLogs(const std::string& job_id,
                                                       int64_t after_sequence,
                                                       int limit) override {
    if (absl::Status status = Take(Call::kGetLogs); !status.ok()) return status;
    return real_.GetLogs(job_id, after_sequence, limit);
  }
  absl::StatusOr<Page> ListJobs(const std::vector<tl::v1::Job::State>& states, int page_size,
                                const std::string& page_token, const std::string& owner = "",
                                size_t max_page_bytes = SIZE_MAX,
                                const std::string& sweep_id = "") override {
    if (absl::Status status = Take(Call::kListJobs); !status.ok()) return status;
    return real_.ListJobs(states, page_size, page_token, owner, max_page_bytes, sweep_id);
  }
  absl::StatusOr<std::vector<JobRecord>> JobsInStates(
      const std::vector<tl::v1::Job::State>& states) override {
    if (absl::Status status = Take(Call::kJobsInStates); !status.ok()) return status;
    return real_.JobsInStates(states);
  }
  absl::Status PutEpoch(const std::string& job_id, const tl::v1::EpochMetrics& metrics) override {
    if (absl::Status status = Take(Call::kPutEpoch); !status.ok()) return status;
    return real_.PutEpoch(job_id, metrics);
  }
  absl::StatusOr<std::optional<tl::v1::EpochMetrics>> GetEpoch(const std::string& job_id,
                                                               int epoch) override {
    if (absl::Status status = Take(Call::kGetEpoch); !status.ok()) return status;
    return real_.GetEpoch(job_id, epoch);
  }
  absl::StatusOr<std::vector<tl::v1::EpochMetrics>> GetEpochs(const std::string& job_id) override {
    if (absl::Status status = Take(Call::kGetEpochs); !status.ok()) return status;
    return real_.GetEpochs(job_id);
  }
  absl::StatusOr<std::map<tl::v1::Job::State, int64_t>> CountByState() override {
    if (absl::Status status = Take(Call::kCountByState); !status.ok()) return status;
    return real_.CountByState();
  }
  absl::StatusOr<SweepRecord> CreateSweep(const SweepRecord& sweep) override {
    if (absl::Status status = Take(Call::kCreateSweep); !status.ok()) return status;
    return real_.CreateSweep(sweep);
  }
  absl::StatusOr<JobRecord> CreateTrial(const SweepRecord& sweep, const JobRecord& trial,
                                        absl::Time now) override {
    if (absl::Status status = Take(Call::kCreateTrial); !status.ok()) return status;
    return real_.CreateTrial(sweep, trial, now);
  }
  absl::Status UpdateSweep(const SweepRecord& sweep) override {
    if (absl::Status status = Take(Call::kUpdateSweep); !status.ok()) return status;
    return real_.UpdateSweep(sweep);
  }
  absl::StatusOr<SweepRecord> GetSweep(const std::string& sweep_id) override {
    if (absl::Status status = Take(Call::kGetSweep); !status.ok()) return status;
    return real_.GetSweep(sweep_id);
  }
  absl::StatusOr<std::optional<SweepRecord>> FindSweepByRequestId(
      const std::string& owner, const std::string& request_id) override {
    if (absl::Status status = Take(Call::kFindSweepByRequestId); !status.ok()) return status;
    return real_.FindSweepByRequestId(owner, request_id);
  }
  absl::StatusOr<SweepPage> ListSweeps(const std::vector<tl::v1::Sweep::State>& states,
                                       int page_size, const std::string& page_token,
                                       const std::string& owner = "") override {
    if (absl::Status status = Take(Call::kListSweeps); !status.ok()) return status;
    return real_.ListSweeps(states, page_size, page_token, owner);
  }
  absl::StatusOr<std::vector<SweepRecord>> SweepsInStates(
      const std::vector<tl::v1::Sweep::State>& states) override {
    if (absl::Status status = Take(Call::kSweepsInStates); !status.ok()) return status;
    return real_.SweepsInStates(states);
  }
  absl::StatusOr<std::vector<JobRecord>> TrialsOf(const std::string& sweep_id) override {
    if (absl::Status status = Take(Call::kTrialsOf); !status.ok()) return status;
    return real_.TrialsOf(sweep_id);
  }

 private:
  // The failure planned for this call, if any, counted down.
  absl::Status Take(Call call) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = failures_.find(call);
    if (it == failures_.end()) return absl::OkStatus();
    Failure& failure = it->second;
    if (failure.passes_first > 0) {
      --failure.passes_first;
      return absl::OkStatus();
    }
    absl::Status status = failure.status;
    if (failure.times > 0 && --failure.times == 0) failures_.erase(it);
    ++failed_[call];
    return status;
  }

  struct Failure {
    absl::Status status;
    int times = 0;
    int passes_first = 0;
  };

  JobStore& real_;
  mutable std::mutex mutex_;
  std::map<Call, Failure> failures_;
  std::map<Call, int> failed_;
};

}  // namespace tl::server::testing
