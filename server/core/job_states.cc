#include "server/core/job_states.h"

#include <map>
#include <set>

namespace tl::server {
namespace {

using ::tl::v1::Job;

// Each state's successors. Why each move exists:
const std::map<Job::State, std::set<Job::State>>& Successors() {
  static const auto* table = new std::map<Job::State, std::set<Job::State>>{
      {Job::STATE_UNSPECIFIED, {Job::QUEUED}},  // submitted
      {Job::QUEUED,
       {Job::ASSIGNED,    // dispatched to a worker
        Job::RUNNING,     // requeued, then claimed back by its worker before anyone else took it
        Job::PAUSED,      // PauseJob while it waits
        Job::CANCELLED,   // CancelJob while it waits
        Job::STOPPED_EARLY}},  // a sweep's trial ASHA stopped while it waited for a worker again
      {Job::ASSIGNED,
       {Job::RUNNING,     // the worker started it
        Job::QUEUED,      // refused, lost, or a retryable failure
        Job::PAUSED,      // stopped after a pause, or lost while a pause was pending
        Job::SUCCEEDED,   // finished before its start report arrived
        Job::FAILED,      // a user error, or out of attempts
        Job::CANCELLED,
        Job::STOPPED_EARLY}},  // a sweep's trial ASHA stopped (the cancel path)
      {Job::RUNNING,
       {Job::QUEUED, Job::PAUSED, Job::SUCCEEDED, Job::FAILED, Job::CANCELLED,
        Job::STOPPED_EARLY}},
      {Job::PAUSED,
       {Job::QUEUED,      // ResumeJob
        Job::CANCELLED,   // CancelJob while paused
        Job::STOPPED_EARLY}},  // paused at the rung ASHA stops it at
  };
  return *table;
}

}  // namespace

bool IsTerminal(Job::State state) {
  return state == Job::SUCCEEDED || state == Job::FAILED || state == Job::CANCELLED ||
         state == Job::STOPPED_EARLY;
}

bool IsAllowedTransition(Job::State from, Job::State to) {
  if (from == to) return from != Job::STATE_UNSPECIFIED;
  auto it = Successors().find(from);
  return it != Successors().end() && it->second.count(to) > 0;
}

}  // namespace tl::server
