// The job state machine as a table: which state a job may go to from which.
// Every change the scheduler makes goes through Scheduler::Update, which
// refuses a move this table does not allow.
//
//   (new) -> QUEUED -> ASSIGNED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED
//   QUEUED | ASSIGNED | RUNNING -> PAUSED -> QUEUED (ResumeJob)
//   ASSIGNED | RUNNING -> QUEUED (worker lost, retryable failure, refusal)
//   QUEUED | ASSIGNED | RUNNING | PAUSED -> STOPPED_EARLY (a sweep's trial that ASHA stops)
#pragma once

#include "tl/v1/jobs.pb.h"

namespace tl::server {

// SUCCEEDED, FAILED, CANCELLED and STOPPED_EARLY: nothing follows.
bool IsTerminal(tl::v1::Job::State state);

// Whether a job in `from` may move to `to`. Staying in a state is always allowed (a job's row
// changes without its state: an epoch, a pending cancel). STATE_UNSPECIFIED as `from` is a job
// being created.
bool IsAllowedTransition(tl::v1::Job::State from, tl::v1::Job::State to);

}  // namespace tl::server
