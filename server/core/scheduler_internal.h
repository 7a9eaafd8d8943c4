// Small rules the scheduler's files share (scheduler.cc, scheduler_requests.cc,
// scheduler_workers.cc, scheduler_gang.cc); not for use outside core/.
#pragma once

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include <string>

#include "google/protobuf/util/time_util.h"
#include "server/record/sweep_record.pb.h"
#include "tl/v1/jobs.pb.h"
#include "tl/v1/sweeps.pb.h"

namespace tl::server::scheduler_internal {

inline google::protobuf::Timestamp ToTimestamp(absl::Time time) {
  return google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(time));
}

// Waiting for a worker (queued) or for ResumeJob (paused): counted against max_queued_per_owner.
inline bool Waiting(tl::v1::Job::State state) {
  return state == tl::v1::Job::QUEUED || state == tl::v1::Job::PAUSED;
}
// Holding a worker: counted against max_running_per_owner, and lost with that worker.
inline bool HoldsWorker(tl::v1::Job::State state) {
  return state == tl::v1::Job::ASSIGNED || state == tl::v1::Job::RUNNING;
}

// The job a sweep stands for where a spec names the sweep (backbone.from_job,
// evaluate.from_job): its refit once the sweep has SUCCEEDED with one, else its best trial;
// empty while no trial has succeeded.
inline std::string SweepResultJobId(const SweepRecord& sweep) {
  if (sweep.state() == tl::v1::Sweep::SUCCEEDED && !sweep.refit_job_id().empty()) {
    return sweep.refit_job_id();
  }
  return sweep.best_job_id();
}

}  // namespace tl::server::scheduler_internal
