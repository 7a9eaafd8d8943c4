#include "server/sweep/sweep_states.h"

#include <limits>
#include <set>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace tl::server {
namespace {

using ::tl::v1::Job;
using ::tl::v1::Sweep;
using ::tl::v1::SweepSpec;

SweepSpec Spec(int max_trials, int parallel, int max_failed,
               SweepObjective::Direction direction = SweepObjective::MAXIMIZE) {
  SweepSpec spec;
  spec.set_max_trials(max_trials);
  spec.set_max_parallel_trials(parallel);
  spec.set_max_failed_trials(max_failed);
  spec.mutable_objective()->set_metric(SweepObjective::VAL_ACCURACY);
  spec.mutable_objective()->set_direction(direction);
  return spec;
}

TrialStatus Trial(int index, Job::State state, std::optional<double> objective = std::nullopt) {
  TrialStatus trial;
  trial.index = index;
  trial.job_id = "job" + std::to_string(index);
  trial.state = state;
  trial.ended = state == Job::SUCCEEDED || state == Job::FAILED || state == Job::CANCELLED ||
                state == Job::STOPPED_EARLY;
  trial.objective = objective;
  return trial;
}

TEST(SweepStatesTest, EveryPairOfStatesIsAllowedOrRefusedAsIntended) {
  const std::set<std::pair<Sweep::State, Sweep::State>> allowed = {
      {Sweep::STATE_UNSPECIFIED, Sweep::RUNNING}, {Sweep::STATE_UNSPECIFIED, Sweep::FAILED},
      {Sweep::RUNNING, Sweep::PAUSED},            {Sweep::RUNNING, Sweep::SUCCEEDED},
      {Sweep::RUNNING, Sweep::FAILED},            {Sweep::RUNNING, Sweep::CANCELLED},
      {Sweep::PAUSED, Sweep::RUNNING},            {Sweep::PAUSED, Sweep::SUCCEEDED},
      {Sweep::PAUSED, Sweep::FAILED},             {Sweep::PAUSED, Sweep::CANCELLED},
  };
  const Sweep::State states[] = {Sweep::STATE_UNSPECIFIED, Sweep::RUNNING, Sweep::SUCCEEDED,
                                 Sweep::FAILED, Sweep::CANCELLED, Sweep::PAUSED};
  for (Sweep::State from : states) {
    for (Sweep::State to : states) {
      const bool expected =
          allowed.count({from, to}) > 0 || (from == to && from != Sweep::STATE_UNSPECIFIED);
      EXPECT_EQ(IsAllowedSweepTransition(from, to), expected)
          << Sweep::State_Name(from) << " -> " << Sweep::State_Name(to);
    }
  }
  for (Sweep::State ended : {Sweep::SUCCEEDED, Sweep::FAILED, Sweep::CANCELLED}) {
    EXPECT_TRUE(IsSweepTerminal(ended));
  }
  EXPECT_FALSE(IsSweepTerminal(Sweep::PAUSED));
}

TEST(SweepStatesTest, ANewSweepCreatesAsManyTrialsAsMayRunAtOnce) {
  const SweepOutlook outlook = AssessSweep(Spec(10, 4, 2), SweepRequest::kRun, {});
  EXPECT_EQ(outlook.state, Sweep::RUNNING);
  EXPECT_EQ(outlook.trials_to_create, 4);
  EXPECT_EQ(AssessSweep(Spec(3, 4, 2), SweepRequest::kRun, {}).trials_to_create, 3);
}

TEST(SweepStatesTest, EndedTrialsMakeRoomUntilMaxTrials) {
  const SweepSpec spec = Spec(6, 3, 2);
  EXPECT_EQ(AssessSweep(spec, SweepRequest::kRun,
                        {Trial(0, Job::SUCCEEDED, 0.5), Trial(1, Job::RUNNING),
                         Trial(2, Job::QUEUED)})
                .trials_to_create,
            1);
  EXPECT_EQ(AssessSweep(spec, SweepRequest::kRun,
                        {Trial(0, Job::SUCCEEDED, 0.5), Trial(1, Job::STOPPED_EARLY, 0.1),
                         Trial(2, Job::PAUSED), Trial(3, Job::RUNNING), Trial(4, Job::RUNNING)})
                .trials_to_create,
            0);  // a paused trial still holds its place
  const SweepOutlook last = AssessSweep(
      spec, SweepRequest::kRun,
      {Trial(0, Job::SUCCEEDED, 0.5), Trial(1, Job::STOPPED_EARLY, 0.1), Trial(2, Job::FAILED),
       Trial(3, Job::RUNNING), Trial(4, Job::CANCELLED)});
  EXPECT_EQ(last.trials_to_create, 1);
  EXPECT_EQ(last.failed, 1);
  EXPECT_EQ(last.ended, 4);
}

TEST(SweepStatesTest, SucceedsWhenAllTrialsEndedAndOneSucceededWithTheBestRecorded) {
  const SweepOutlook outlook = AssessSweep(
      Spec(4, 2, 1), SweepRequest::kRun,
      {Trial(0, Job::SUCCEEDED, 0.6), Trial(1, Job::STOPPED_EARLY, 0.9),
       Trial(2, Job::SUCCEEDED, 0.8), Trial(3, Job::SUCCEEDED, 0.8)});
  EXPECT_EQ(outlook.state, Sweep::SUCCEEDED);
  EXPECT_FALSE(outlook.stop_unended);
  // A trial stopped early exported no model: the best is among the succeeded, first among equals.
  EXPECT_EQ(outlook.best_job_id, "job2");
  EXPECT_DOUBLE_EQ(*outlook.best_objective, 0.8);

  const SweepOutlook minimizing =
      AssessSweep(Spec(2, 2, 1, SweepObjective::MINIMIZE), SweepRequest::kRun,
                  {Trial(0, Job::SUCCEEDED, 0.6), Trial(1, Job::SUCCEEDED, 0.4)});
  EXPECT_EQ(minimizing.best_job_id, "job1");
}

TEST(SweepStatesTest, AmongEqualObjectivesTheLowerValidationLossIsTheBest) {
  // On 20 validation images four trials reached accuracy 1.0: the first created fitted them
  // least confidently.
  std::vector<TrialStatus> trials = {Trial(0, Job::SUCCEEDED, 1.0), Trial(1, Job::SUCCEEDED, 1.0),
                                     Trial(2, Job::SUCCEEDED, 0.95), Trial(3, Job::SUCCEEDED, 1.0)};
  trials[0].tie_break_loss = 0.41;
  trials[1].tie_break_loss = 0.05;
  trials[2].tie_break_loss = 0.01;  // a lower loss, but a worse objective
  trials[3].tie_break_loss = 0.05;
  SweepOutlook outlook = AssessSweep(Spec(4, 2, 1), SweepRequest::kRun, trials);
  EXPECT_EQ(outlook.best_job_id, "job1");  // first of the two equal losses
  EXPECT_DOUBLE_EQ(*outlook.best_objective, 1.0);
  // A trial without a loss (or a NaN one) ranks below an equal one with a loss.
  trials[1].tie_break_loss.reset();
  trials[3].tie_break_loss = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(AssessSweep(Spec(4, 2, 1), SweepRequest::kRun, trials).best_job_id, "job0");

  // Once the refit exists, the best trial the sweep recorded then stays the best: the refit
  // trains its recipe (a server that ranked ties otherwise created it).
  SweepSpec refit_spec = Spec(4, 2, 1);
  refit_spec.set_refit(true);
  std::vector<TrialStatus> refitting = trials;
  refitting.push_back(Trial(4, Job::RUNNING));
  EXPECT_EQ(AssessSweep(refit_spec, SweepRequest::kRun, refitting, "job3").best_job_id, "job3");
  EXPECT_EQ(AssessSweep(refit_spec, SweepRequest::kRun, trials, "job3").best_job_id, "job0");

  SweepObjective accuracy = Spec(1, 1, 1).objective();
  EXPECT_TRUE(RanksAbove(accuracy, 0.9, 0.5, 0.8, 0.1));
  EXPECT_FALSE(RanksAbove(accuracy, 0.8, 0.1, 0.9, 0.5));
  EXPECT_TRUE(RanksAbove(accuracy, 0.9, 0.1, 0.9, 0.5));
  EXPECT_FALSE(RanksAbove(accuracy, 0.9, 0.5, 0.9, 0.5));
  EXPECT_FALSE(RanksAbove(accuracy, std::numeric_limits<double>::quiet_NaN(), 0.1, 0.2, 0.5));
}

TEST(SweepStatesTest, FailsPastTheFailureBudgetAndStopsTheRest) {
  const SweepSpec spec = Spec(8, 4, 1);
  const SweepOutlook within = AssessSweep(
      spec, SweepRequest::kRun, {Trial(0, Job::FAILED), Trial(1, Job::RUNNING)});
  EXPECT_EQ(within.state, Sweep::RUNNING);  // a failed trial does not stop the sweep
  const SweepOutlook past = AssessSweep(
      spec, SweepRequest::kRun,
      {Trial(0, Job::FAILED), Trial(1, Job::FAILED), Trial(2, Job::RUNNING)});
  EXPECT_EQ(past.state, Sweep::FAILED);
  EXPECT_TRUE(past.stop_unended);
  EXPECT_EQ(past.trials_to_create, 0);
  EXPECT_EQ(past.error, "2 trials failed; max_failed_trials is 1");
}

TEST(SweepStatesTest, FailsWhenNoTrialSucceeded) {
  const SweepOutlook outlook =
      AssessSweep(Spec(2, 2, 1), SweepRequest::kRun,
                  {Trial(0, Job::FAILED), Trial(1, Job::CANCELLED)});
  EXPECT_EQ(outlook.state, Sweep::FAILED);
  EXPECT_EQ(outlook.error, "no trial succeeded (1 failed, 0 stopped early, 1 cancelled)");
}

TEST(SweepStatesTest, PausedCreatesNothingAndCancelledStopsEveryUnendedTrial) {
  const std::vector<TrialStatus> trials = {Trial(0, Job::SUCCEEDED, 0.5), Trial(1, Job::RUNNING)};
  const SweepOutlook paused = AssessSweep(Spec(5, 3, 1), SweepRequest::kPause, trials);
  EXPECT_EQ(paused.state, Sweep::PAUSED);
  EXPECT_EQ(paused.trials_to_create, 0);
  const SweepOutlook cancelled = AssessSweep(Spec(5, 3, 1), SweepRequest::kCancel, trials);
  EXPECT_EQ(cancelled.state, Sweep::CANCELLED);
  EXPECT_TRUE(cancelled.stop_unended);
  EXPECT_EQ(cancelled.best_job_id, "job0");
  // A paused sweep whose last trials end meanwhile has nothing left to wait for.
  EXPECT_EQ(AssessSweep(Spec(1, 1, 1), SweepRequest::kPause, {Trial(0, Job::SUCCEEDED, 0.1)}).state,
            Sweep::SUCCEEDED);
}


SweepSpec Refitting(SweepSpec spec) {
  spec.set_refit(true);
  return spec;
}

TEST(SweepStatesTest, ARefitFollowsTheSearchAndItsOutcomeIsTheSweeps) {
  const SweepSpec spec = Refitting(Spec(2, 2, 1));
  // The search is not over: no refit yet.
  SweepOutlook outlook =
      AssessSweep(spec, SweepRequest::kRun, {Trial(0, Job::SUCCEEDED, 0.7), Trial(1, Job::RUNNING)});
  EXPECT_FALSE(outlook.create_refit);
  // Over: the best trial is refit, and the sweep runs on.
  const std::vector<TrialStatus> searched = {Trial(0, Job::SUCCEEDED, 0.7),
                                             Trial(1, Job::SUCCEEDED, 0.9)};
  outlook = AssessSweep(spec, SweepRequest::kRun, searched);
  EXPECT_EQ(outlook.state, Sweep::RUNNING);
  EXPECT_TRUE(outlook.create_refit);
  EXPECT_EQ(outlook.best_job_id, "job1");
  EXPECT_EQ(outlook.trials_to_create, 0);
  // Paused: nothing is created.
  outlook = AssessSweep(spec, SweepRequest::kPause, searched);
  EXPECT_EQ(outlook.state, Sweep::PAUSED);
  EXPECT_FALSE(outlook.create_refit);
  // The refit (index max_trials) runs: once, and it is not the best trial.
  std::vector<TrialStatus> with_refit = searched;
  with_refit.push_back(Trial(2, Job::RUNNING));
  outlook = AssessSweep(spec, SweepRequest::kRun, with_refit);
  EXPECT_EQ(outlook.state, Sweep::RUNNING);
  EXPECT_FALSE(outlook.create_refit);
  EXPECT_EQ(outlook.refit_job_id, "job2");
  EXPECT_EQ(outlook.created, 2);
  // It succeeds: so does the sweep, its best trial unchanged.
  with_refit.back() = Trial(2, Job::SUCCEEDED);
  outlook = AssessSweep(spec, SweepRequest::kRun, with_refit);
  EXPECT_EQ(outlook.state, Sweep::SUCCEEDED);
  EXPECT_EQ(outlook.best_job_id, "job1");
  EXPECT_EQ(outlook.refit_job_id, "job2");
  // It fails: the sweep fails, naming both, and no failure budget is spent on it.
  with_refit.back() = Trial(2, Job::FAILED);
  with_refit.back().error = "loss became NaN";
  outlook = AssessSweep(spec, SweepRequest::kRun, with_refit);
  EXPECT_EQ(outlook.state, Sweep::FAILED);
  EXPECT_EQ(outlook.failed, 0);
  EXPECT_NE(outlook.error.find("the refit, job job2, ended FAILED"), std::string::npos)
      << outlook.error;
  EXPECT_NE(outlook.error.find("job1"), std::string::npos);
  EXPECT_NE(outlook.error.find(": loss became NaN"), std::string::npos) << outlook.error;
  // Cancelled while the refit runs: the refit is stopped.
  with_refit.back() = Trial(2, Job::RUNNING);
  outlook = AssessSweep(spec, SweepRequest::kCancel, with_refit);
  EXPECT_EQ(outlook.state, Sweep::CANCELLED);
  EXPECT_TRUE(outlook.stop_unended);
  // Without refit the search's end is the sweep's.
  outlook = AssessSweep(Spec(2, 2, 1), SweepRequest::kRun, searched);
  EXPECT_EQ(outlook.state, Sweep::SUCCEEDED);
  EXPECT_FALSE(outlook.create_refit);
  // A search that no trial won has nothing to refit.
  outlook = AssessSweep(spec, SweepRequest::kRun,
                        {Trial(0, Job::FAILED), Trial(1, Job::STOPPED_EARLY)});
  EXPECT_EQ(outlook.state, Sweep::FAILED);
  EXPECT_FALSE(outlook.create_refit);
}

}  // namespace
}  // namespace tl::server
