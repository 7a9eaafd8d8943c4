// Sweeps with real processes on 127.0.0.1: a tlserver, tlworkers and the tiny data of
// cluster.h. A four-trial sweep end to end, and a job that starts from its result; a tlserver
// killed with SIGKILL mid-sweep (no trial lost, none created or started twice); a cancel that
// meets trials queued, running and finished; ASHA stopping a trial on its worker. Every wait
// is on a condition, within a deadline.
#include <gmock/gmock.h>

#include <set>
#include <string>
#include <vector>

#include "google/protobuf/util/message_differencer.h"
#include "tests/cluster.h"

namespace tl::testing {
namespace {

using namespace std::chrono_literals;
using ::tl::v1::Job;
using ::tl::v1::Sweep;
using ::tl::v1::SweepSpec;

// A GRID sweep of the tiny job over `space` (SearchParameters added by the caller).
SweepSpec TinySweep(int epochs) {
  SweepSpec spec;
  spec.set_name("tiny-sweep");
  *spec.mutable_base() = TinySpec(epochs);
  spec.mutable_base()->clear_name();
  return spec;
}

void Search(SweepSpec& spec, const std::string& field, const std::vector<double>& values) {
  tl::v1::SearchParameter& parameter = *spec.add_space();
  parameter.set_field(field);
  for (double value : values) parameter.mutable_values()->add_values()->set_number_value(value);
}

Sweep SubmitSweep(Cluster& cluster, const SweepSpec& spec) {
  tl::v1::SubmitSweepRequest request;
  *request.mutable_spec() = spec;
  request.set_owner("e2e");
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  Sweep sweep;
  const grpc::Status status = cluster.stub().SubmitSweep(&context, request, &sweep);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return sweep;
}

// The sweep, or an empty one while the server does not answer (it is restarting).
Sweep GetSweep(Cluster& cluster, const std::string& id) {
  tl::v1::GetSweepRequest request;
  request.set_sweep_id(id);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  Sweep sweep;
  if (!cluster.stub().GetSweep(&context, request, &sweep).ok()) return Sweep();
  return sweep;
}

Sweep WaitForSweep(Cluster& cluster, const std::string& id,
                   const std::function<bool(const Sweep&)>& done,
                   std::chrono::milliseconds timeout = 90s) {
  Sweep sweep;
  WaitFor(
      [&] {
        sweep = GetSweep(cluster, id);
        return !sweep.id().empty() && done(sweep);
      },
      timeout);
  return sweep;
}

bool SweepEnded(const Sweep& sweep) {
  return sweep.state() == Sweep::SUCCEEDED || sweep.state() == Sweep::FAILED ||
         sweep.state() == Sweep::CANCELLED;
}

std::vector<Job> TrialJobs(Cluster& cluster, const std::string& sweep_id) {
  tl::v1::ListJobsRequest request;
  request.set_sweep_id(sweep_id);
  request.set_page_size(100);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  tl::v1::ListJobsResponse response;
  const grpc::Status status = cluster.stub().ListJobs(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return {response.jobs().begin(), response.jobs().end()};
}

TEST(SweepTest, FourTrialsEndToEndWithTheBestRecordedAndWatched) {
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(cluster.StartServer());
  cluster.StartWorker("w1");
  cluster.StartWorker("w2");
  SweepSpec spec = TinySweep(2);
  Search(spec, "training.learning_rate", {0.01, 0.03});
  Search(spec, "training.batch_size", {2, 4});
  spec.set_max_parallel_trials(2);
  const Sweep submitted = SubmitSweep(cluster, spec);
  ASSERT_FALSE(submitted.id().empty());
  EXPECT_EQ(submitted.spec().method(), SweepSpec::GRID);
  EXPECT_EQ(submitted.spec().max_trials(), 4);
  EXPECT_EQ(submitted.trials_size(), 2);  // max_parallel_trials

  // The watch sees the sweep change until it ends, and ends with it.
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 120s);
  tl::v1::WatchSweepRequest request;
  request.set_sweep_id(submitted.id());
  auto reader = cluster.stub().WatchSweep(&context, request);
  tl::v1::SweepEvent event;
  Sweep last;
  int events = 0;
  while (reader->Read(&event)) {
    EXPECT_EQ(event.sequence(), ++events);
    last = event.sweep();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_GT(events, 4);
  EXPECT_EQ(last.state(), Sweep::SUCCEEDED) << last.error();
  EXPECT_TRUE(last.spec().refit());  // the default: the trials hold out training images
  ASSERT_EQ(last.trials_size(), 5);  // four trials, then the refit
  std::set<std::string> jobs;
  for (int i = 0; i < 4; ++i) {
    const tl::v1::SweepTrial& trial = last.trials(i);
    EXPECT_FALSE(trial.refit());
    EXPECT_EQ(trial.state(), Job::SUCCEEDED) << trial.job_id();
    EXPECT_TRUE(trial.has_objective());
    EXPECT_EQ(trial.parameters().fields().size(), 2u);
    jobs.insert(trial.job_id());
    EXPECT_EQ(Get(cluster, trial.job_id()).sweep_id(), submitted.id());
  }
  EXPECT_EQ(jobs.size(), 4u);
  ASSERT_EQ(jobs.count(last.best_job_id()), 1u);
  EXPECT_TRUE(last.has_best_objective());

  // The refit trains the best trial's values on every training image, and is the result.
  const tl::v1::SweepTrial& refit = last.trials(4);
  EXPECT_TRUE(refit.refit());
  EXPECT_EQ(refit.index(), 4);
  EXPECT_EQ(refit.state(), Job::SUCCEEDED);
  EXPECT_FALSE(refit.has_objective());
  EXPECT_EQ(last.refit_job_id(), refit.job_id());
  const Job best = Get(cluster, last.best_job_id());
  const Job refit_job = Get(cluster, refit.job_id());
  for (const tl::v1::SweepTrial& trial : last.trials()) {
    if (trial.job_id() == last.best_job_id()) {
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(refit.parameters(),
                                                                     trial.parameters()));
    }
  }
  EXPECT_EQ(refit_job.spec().name(), "tiny-sweep-refit");
  EXPECT_EQ(refit_job.spec().dataset().val_fraction(), 0);
  EXPECT_DOUBLE_EQ(refit_job.spec().training().learning_rate(),
                   best.spec().training().learning_rate());
  EXPECT_EQ(refit_job.spec().training().batch_size(), best.spec().training().batch_size());
  EXPECT_GT(refit_job.result().dataset().train_images(),
            best.result().dataset().train_images());
  EXPECT_EQ(refit_job.result().dataset().val_images(), 0);
  EXPECT_EQ(TrialJobs(cluster, submitted.id()).size(), 5u);

  // A job that starts from the sweep starts from its result, the refit, and says so.
  tl::v1::JobSpec from_sweep = TinySpec(1);
  from_sweep.mutable_backbone()->set_from_job(submitted.id());
  const Job transfer = Submit(cluster, from_sweep);
  ASSERT_FALSE(transfer.id().empty());
  EXPECT_EQ(transfer.spec().backbone().from_job(), refit.job_id());
  WatchToEnd(cluster, transfer.id());
  const Job transferred = Get(cluster, transfer.id());
  EXPECT_EQ(transferred.state(), Job::SUCCEEDED) << transferred.error();
}

TEST(SweepTest, AKilledServerLosesNoTrialAndStartsNoneTwice) {
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(cluster.StartServer());
  cluster.StartWorker("w1");
  SweepSpec spec = TinySweep(3);
  Search(spec, "training.learning_rate", {0.01, 0.02, 0.03, 0.04});
  spec.set_max_parallel_trials(2);
  const Sweep submitted = SubmitSweep(cluster, spec);
  ASSERT_FALSE(submitted.id().empty());
  // Killed while a trial trains and another waits.
  const Sweep before = WaitForSweep(cluster, submitted.id(), [](const Sweep& sweep) {
    for (const auto& trial : sweep.trials()) {
      if (trial.state() == Job::RUNNING && trial.epoch() >= 1) return true;
    }
    return false;
  });
  ASSERT_FALSE(SweepEnded(before));
  const int port = cluster.grpc_port();
  cluster.StopServer(SIGKILL);
  ASSERT_NO_FATAL_FAILURE(cluster.StartServer({}, port));

  const Sweep done = WaitForSweep(cluster, submitted.id(), SweepEnded, 120s);
  EXPECT_EQ(done.state(), Sweep::SUCCEEDED) << done.error();
  EXPECT_EQ(done.trials_created(), 4);  // the search's; the refit is apart
  EXPECT_FALSE(done.refit_job_id().empty());
  const std::vector<Job> jobs = TrialJobs(cluster, submitted.id());
  ASSERT_EQ(jobs.size(), 5u);  // none lost, none created twice
  std::set<std::string> names;
  for (const Job& job : jobs) {
    names.insert(job.spec().name());
    EXPECT_EQ(job.state(), Job::SUCCEEDED) << job.id() << " " << job.error();
    // The trial that ran across the kill was claimed back by its worker: one attempt each.
    EXPECT_EQ(job.attempt(), 1) << job.id();
  }
  EXPECT_EQ(names.size(), 5u);
  EXPECT_EQ(names.count("tiny-sweep-refit"), 1u);
}

TEST(SweepTest, CancelReachesTrialsQueuedRunningAndFinished) {
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(cluster.StartServer());
  cluster.StartWorker("w1");
  SweepSpec spec = TinySweep(1);
  // In grid order: one epoch (it finishes), a long run (running at the cancel), one epoch
  // (queued behind it on the one worker).
  Search(spec, "training.epochs", {1, 1000, 1});
  const Sweep submitted = SubmitSweep(cluster, spec);
  ASSERT_EQ(submitted.trials_size(), 3);
  const Sweep mixed = WaitForSweep(cluster, submitted.id(), [](const Sweep& sweep) {
    return sweep.trials(0).state() == Job::SUCCEEDED && sweep.trials(1).state() == Job::RUNNING &&
           sweep.trials(1).epoch() >= 1;
  });
  ASSERT_EQ(mixed.trials(2).state(), Job::QUEUED);

  tl::v1::CancelSweepRequest request;
  request.set_sweep_id(submitted.id());
  request.set_reason("enough");
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  Sweep cancelled;
  ASSERT_TRUE(cluster.stub().CancelSweep(&context, request, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), Sweep::CANCELLED);
  EXPECT_EQ(cancelled.trials(2).state(), Job::CANCELLED);  // queued: at once
  EXPECT_EQ(cancelled.trials(0).state(), Job::SUCCEEDED);
  const Job running = WaitForJob(cluster, mixed.trials(1).job_id(),
                                 [](const Job& job) { return Ended(job.state()); });
  EXPECT_EQ(running.state(), Job::CANCELLED);
  EXPECT_LT(running.epoch(), 1000);
  const Sweep after = GetSweep(cluster, submitted.id());
  EXPECT_EQ(after.trials_ended(), 3);
  EXPECT_EQ(after.error(), "enough");
}

TEST(SweepTest, AshaStopsTheWorseTrialOnItsWorkerWhichGoesOnToTheNext) {
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(cluster.StartServer());
  cluster.StartWorker("w1");
  constexpr int kEpochs = 30;  // rungs at 1, 2, 4, 8 and 16
  SweepSpec spec = TinySweep(kEpochs);
  spec.set_method(SweepSpec::ASHA);
  spec.mutable_asha()->set_reduction_factor(2);
  spec.mutable_objective()->set_metric(SweepSpec::Objective::VAL_LOSS);
  // A rate that learns and one that barely moves the weights. Seed 1 draws them for trials
  // 0, 1 and 2 as learns, barely, learns (checked below); one at a time, so trial 0 reaches
  // every rung first and trial 1 meets it at the first.
  Search(spec, "training.learning_rate", {1e-6, 0.03});
  spec.set_seed(1);
  spec.set_max_trials(3);
  spec.set_max_parallel_trials(1);
  spec.set_refit(false);
  const Sweep submitted = SubmitSweep(cluster, spec);
  ASSERT_FALSE(submitted.id().empty());
  const Sweep done = WaitForSweep(cluster, submitted.id(), SweepEnded, 120s);
  ASSERT_EQ(done.state(), Sweep::SUCCEEDED) << done.error();
  ASSERT_EQ(done.trials_size(), 3);
  const auto rate = [&](int trial) {
    return done.trials(trial).parameters().fields().at("training.learning_rate").number_value();
  };
  ASSERT_DOUBLE_EQ(rate(0), 0.03);
  ASSERT_DOUBLE_EQ(rate(1), 1e-6);
  ASSERT_DOUBLE_EQ(rate(2), 0.03);

  // The worse trial was told to stop after its first rung, and its worker stopped it there
  // (a stop is a cancel, taken before the next batch: at most an epoch or so later, not the
  // next rungs' epochs), and the state says why it ended.
  const Job stopped = Get(cluster, done.trials(1).job_id());
  EXPECT_EQ(stopped.state(), Job::STOPPED_EARLY) << stopped.error();
  EXPECT_THAT(stopped.error(), ::testing::HasSubstr("stopped early by ASHA at epoch 1"));
  const std::vector<int> stopped_epochs = EpochsOf(WatchToEnd(cluster, stopped.id()));
  ASSERT_FALSE(stopped_epochs.empty());
  EXPECT_EQ(stopped_epochs.front(), 1);
  EXPECT_LT(stopped_epochs.back(), 4);
  EXPECT_EQ(done.trials(1).state(), Job::STOPPED_EARLY);

  // The better ones went on through every rung, the second after the stopped one on the same
  // worker, and the sweep's result is one of them.
  for (int trial : {0, 2}) {
    const Job job = Get(cluster, done.trials(trial).job_id());
    EXPECT_EQ(job.state(), Job::SUCCEEDED) << job.error();
    EXPECT_EQ(job.epoch(), kEpochs);
  }
  EXPECT_NE(done.best_job_id(), stopped.id());
  EXPECT_FALSE(done.best_job_id().empty());
  EXPECT_EQ(done.trials_ended(), 3);
}

}  // namespace
}  // namespace tl::testing
