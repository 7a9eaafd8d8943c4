#include "server/core/job_states.h"

#include <gtest/gtest.h>

#include <set>
#include <utility>

namespace tl::server {
namespace {

using ::tl::v1::Job;

// Every pair of states, held to the table written out once more by hand: a move added to or
// dropped from the scheduler's table without a decision shows here.
TEST(JobStatesTest, EveryPairOfStatesIsAllowedOrRefusedAsIntended) {
  const std::set<std::pair<Job::State, Job::State>> allowed = {
      {Job::STATE_UNSPECIFIED, Job::QUEUED},
      {Job::QUEUED, Job::ASSIGNED},     {Job::QUEUED, Job::RUNNING},
      {Job::QUEUED, Job::PAUSED},       {Job::QUEUED, Job::CANCELLED},
      {Job::ASSIGNED, Job::RUNNING},    {Job::ASSIGNED, Job::QUEUED},
      {Job::ASSIGNED, Job::PAUSED},     {Job::ASSIGNED, Job::SUCCEEDED},
      {Job::ASSIGNED, Job::FAILED},     {Job::ASSIGNED, Job::CANCELLED},
      {Job::RUNNING, Job::QUEUED},      {Job::RUNNING, Job::PAUSED},
      {Job::RUNNING, Job::SUCCEEDED},   {Job::RUNNING, Job::FAILED},
      {Job::RUNNING, Job::CANCELLED},
      {Job::PAUSED, Job::QUEUED},       {Job::PAUSED, Job::CANCELLED},
      {Job::QUEUED, Job::STOPPED_EARLY},  {Job::ASSIGNED, Job::STOPPED_EARLY},
      {Job::RUNNING, Job::STOPPED_EARLY}, {Job::PAUSED, Job::STOPPED_EARLY},
  };
  const Job::State states[] = {Job::STATE_UNSPECIFIED, Job::QUEUED,    Job::ASSIGNED,
                               Job::RUNNING,           Job::SUCCEEDED, Job::FAILED,
                               Job::CANCELLED,         Job::PAUSED,    Job::STOPPED_EARLY};
  for (Job::State from : states) {
    for (Job::State to : states) {
      const bool expected =
          allowed.count({from, to}) > 0 || (from == to && from != Job::STATE_UNSPECIFIED);
      EXPECT_EQ(IsAllowedTransition(from, to), expected)
          << Job::State_Name(from) << " -> " << Job::State_Name(to);
    }
  }
}

TEST(JobStatesTest, NothingLeavesAnEndedJob) {
  for (Job::State ended : {Job::SUCCEEDED, Job::FAILED, Job::CANCELLED, Job::STOPPED_EARLY}) {
    EXPECT_TRUE(IsTerminal(ended));
    for (Job::State to : {Job::QUEUED, Job::ASSIGNED, Job::RUNNING, Job::PAUSED}) {
      EXPECT_FALSE(IsAllowedTransition(ended, to));
    }
  }
  EXPECT_FALSE(IsTerminal(Job::PAUSED));
}

}  // namespace
}  // namespace tl::server
