// Sweeps through the scheduler with stand-in workers: trials created as jobs, ASHA stopping a
// trial on scripted metrics (it ends STOPPED_EARLY), cancel reaching trials in every state,
// ownership, a restart that resumes a sweep without creating a trial twice, a trial whose
// lease runs out (the lease clock driven by hand), and jobs that start from a sweep's result.
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "server/core/scheduler.h"
#include "server/store/sqlite_job_store.h"
#include "server/store/testing/failing_job_store.h"

namespace tl::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::tl::testing::IsOk;
using ::tl::testing::StatusIs;
using ::tl::testing::WriteFile;
using ::tl::server::testing::FailingJobStore;
using ::tl::v1::Job;
using ::tl::v1::JobFinished;
using ::tl::v1::SchedulerMessage;
using ::tl::v1::Sweep;
using ::tl::v1::SweepSpec;
using ::tl::v1::WorkerMessage;

// Long enough that the lease thread expires nothing while a test runs.
constexpr absl::Duration kLease = absl::Hours(1);

class RecordingConnection final : public WorkerConnection {
 public:
  void Send(const SchedulerMessage& message) override {
    std::lock_guard<std::mutex> lock(mutex_);
    messages_.push_back(message);
  }
  void Close(const std::string&) override {}
  std::vector<std::string> Assigned() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> ids;
    for (const SchedulerMessage& m : messages_) {
      if (m.has_assignment()) ids.push_back(m.assignment().job_id());
    }
    return ids;
  }
  // The backbone an assignment of `job_id` named; empty when none was sent.
  std::string BackbonePathOf(const std::string& job_id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const SchedulerMessage& m : messages_) {
      if (m.has_assignment() && m.assignment().job_id() == job_id) {
        return m.assignment().backbone_path();
      }
    }
    return "";
  }
  std::vector<std::string> Cancelled() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> ids;
    for (const SchedulerMessage& m : messages_) {
      if (m.has_cancel()) ids.push_back(m.cancel().job_id());
    }
    return ids;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<SchedulerMessage> messages_;
};

class SchedulerSweepsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const fs::path root(temp_dir_.path());
    WriteFile(root / "data/backbones/net.pt", "torchscript");
    WriteFile(root / "data/backbones/net.json",
              R"({"format": "tl.backbone.v1", "architecture": "resnet18", "feature_dim": 8})");
    WriteFile(root / "data/train/a/1.png", "");
    WriteFile(root / "data/train/b/1.png", "");
    fs::create_directories(root / "artifacts");
    options_.data_root = (root / "data").string();
    options_.artifact_root = (root / "artifacts").string();
    options_.lease_timeout = kLease;
    db_path_ = (root / "jobs.db").string();
    StartScheduler();
  }

  void StartScheduler() {
    scheduler_.reset();
    store_.reset();
    ASSERT_OK_AND_ASSIGN(store_, SqliteJobStore::Open(db_path_));
    metrics_ = std::make_unique<ServerMetrics>();
    scheduler_ = std::make_unique<Scheduler>(*store_, *metrics_, options_);
    ASSERT_THAT(scheduler_->Start(), IsOk());
  }

  SweepSpec Spec(const std::string& json) {
    SweepSpec spec;
    const auto status = google::protobuf::util::JsonStringToMessage(json, &spec);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return spec;
  }

  // A sweep over the learning rate of a 4-epoch base job.
  SweepSpec RateSweep(const std::string& rest) {
    return Spec(R"({"name": "lr", "base": {"backbone": {"path": "backbones/net.pt"},
        "dataset": {"trainDir": "train"}, "training": {"epochs": 4}},
        "space": [{"field": "training.learning_rate", "values": [0.1, 0.01, 0.001]}])" +
                rest + "}");
  }

  int64_t Connect(const std::string& worker_id, std::shared_ptr<RecordingConnection> connection) {
    tl::v1::WorkerHello hello;
    hello.set_worker_id(worker_id);
    hello.add_devices()->set_kind("cpu");
    absl::StatusOr<int64_t> session = scheduler_->ConnectWorker(hello, connection);
    EXPECT_THAT(session, IsOk());
    return session.ok() ? *session : 0;
  }

  void Started(int64_t session, const std::string& job_id) {
    WorkerMessage message;
    message.mutable_started()->set_job_id(job_id);
    message.mutable_started()->set_attempt(1);
    scheduler_->HandleWorkerMessage(session, message);
  }

  void Epoch(int64_t session, const std::string& job_id, int epoch, double accuracy,
             double loss = 0) {
    WorkerMessage message;
    message.mutable_epoch()->set_job_id(job_id);
    tl::v1::EpochMetrics& metrics = *message.mutable_epoch()->mutable_metrics();
    metrics.set_epoch(epoch);
    metrics.set_attempt(1);
    metrics.set_val_accuracy(accuracy);
    metrics.set_val_loss(loss);
    scheduler_->HandleWorkerMessage(session, message);
  }

  // The end of attempt 1 of `job_id`; a success exports <job_id>/model.pt. Tests add to it.
  static WorkerMessage FinishedMessage(const std::string& job_id, JobFinished::Outcome outcome) {
    WorkerMessage message;
    message.mutable_finished()->set_job_id(job_id);
    message.mutable_finished()->set_attempt(1);
    message.mutable_finished()->set_outcome(outcome);
    if (outcome == JobFinished::SUCCEEDED) {
      message.mutable_finished()->mutable_result()->set_model_path(job_id + "/model.pt");
    }
    return message;
  }

  void Finished(int64_t session, const std::string& job_id, JobFinished::Outcome outcome) {
    scheduler_->HandleWorkerMessage(session, FinishedMessage(job_id, outcome));
  }

  // One stand-in worker per trial, w0, w1, ..., each assigned a trial and started on it.
  struct TrialWorkers {
    std::vector<std::shared_ptr<RecordingConnection>> connections;
    std::vector<int64_t> sessions;
    std::vector<std::string> jobs;  // short of `count` when a worker was not assigned one
  };
  TrialWorkers StartTrials(int count) {
    TrialWorkers workers;
    for (int i = 0; i < count; ++i) {
      auto connection = std::make_shared<RecordingConnection>();
      const int64_t session = Connect("w" + std::to_string(i), connection);
      const std::vector<std::string> assigned = connection->Assigned();
      EXPECT_EQ(assigned.size(), 1u) << "worker w" << i;
      if (assigned.size() != 1) return workers;
      workers.connections.push_back(connection);
      workers.sessions.push_back(session);
      workers.jobs.push_back(assigned[0]);
      Started(session, assigned[0]);
    }
    return workers;
  }

  Job::State StateOf(const std::string& job_id) {
    absl::StatusOr<Job> job = scheduler_->GetJob(job_id);
    return job.ok() ? job->state() : Job::STATE_UNSPECIFIED;
  }

  tl::testing::TempDir temp_dir_;
  SchedulerOptions options_;
  std::string db_path_;
  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerSweepsTest, AshaStopsTheWorseTrialAtARungAndTheBestSucceededIsTheResult) {
  ASSERT_OK_AND_ASSIGN(
      const Sweep submitted,
      scheduler_->SubmitSweep(
          RateSweep(R"(, "method": "ASHA", "asha": {"reductionFactor": 2}, "maxTrials": 3,
                       "maxParallelTrials": 3)"),
          "alice"));
  ASSERT_EQ(submitted.trials_size(), 3);
  EXPECT_EQ(submitted.state(), Sweep::RUNNING);
  const TrialWorkers started = StartTrials(3);
  ASSERT_EQ(started.jobs.size(), 3u);
  const auto& [connections, sessions, jobs] = started;
  // Rung 1 (reduction factor 2): the first goes on, the second is worse than it and stops,
  // the third is the best of three and goes on.
  Epoch(sessions[0], jobs[0], 1, 0.5);
  Epoch(sessions[1], jobs[1], 1, 0.3);
  Epoch(sessions[2], jobs[2], 1, 0.7);
  EXPECT_TRUE(connections[0]->Cancelled().empty());
  EXPECT_EQ(connections[1]->Cancelled(), std::vector<std::string>{jobs[1]});
  EXPECT_TRUE(connections[2]->Cancelled().empty());
  Finished(sessions[1], jobs[1], JobFinished::CANCELLED);
  ASSERT_OK_AND_ASSIGN(const Job stopped, scheduler_->GetJob(jobs[1]));
  EXPECT_EQ(stopped.state(), Job::STOPPED_EARLY);
  EXPECT_THAT(stopped.error(), HasSubstr("stopped early by ASHA at epoch 1"));
  EXPECT_EQ(stopped.sweep_id(), submitted.id());

  for (int i : {0, 2}) {
    for (int epoch = 2; epoch <= 4; ++epoch) Epoch(sessions[i], jobs[i], epoch, i == 0 ? 0.6 : 0.9);
    Finished(sessions[i], jobs[i], JobFinished::SUCCEEDED);
  }
  // The search is over: the best trial's recipe is refit on every training image, a
  // fourth job that no rung stops.
  ASSERT_OK_AND_ASSIGN(const Sweep refitting, scheduler_->GetSweep(submitted.id()));
  EXPECT_EQ(refitting.state(), Sweep::RUNNING);
  ASSERT_EQ(refitting.trials_size(), 4);
  EXPECT_TRUE(refitting.trials(3).refit());
  const std::string refit = refitting.trials(3).job_id();
  EXPECT_EQ(refitting.refit_job_id(), refit);
  ASSERT_OK_AND_ASSIGN(const Job refit_job, scheduler_->GetJob(refit));
  EXPECT_EQ(refit_job.spec().dataset().val_fraction(), 0);
  ASSERT_OK_AND_ASSIGN(const Job best_trial, scheduler_->GetJob(jobs[2]));
  EXPECT_DOUBLE_EQ(refit_job.spec().training().learning_rate(),
                   best_trial.spec().training().learning_rate());
  int refit_worker = -1;
  for (int i = 0; i < 3; ++i) {
    const std::vector<std::string> assigned = connections[i]->Assigned();
    if (assigned.size() == 2 && assigned[1] == refit) refit_worker = i;
  }
  ASSERT_GE(refit_worker, 0);
  Started(sessions[refit_worker], refit);
  Epoch(sessions[refit_worker], refit, 1, 0.1);  // a rung's epoch, and worse than any
  EXPECT_THAT(connections[refit_worker]->Cancelled(), ::testing::Not(::testing::Contains(refit)));
  for (int epoch = 2; epoch <= 4; ++epoch) Epoch(sessions[refit_worker], refit, epoch, 0.1);
  Finished(sessions[refit_worker], refit, JobFinished::SUCCEEDED);

  ASSERT_OK_AND_ASSIGN(const Sweep done, scheduler_->GetSweep(submitted.id()));
  EXPECT_EQ(done.state(), Sweep::SUCCEEDED);
  EXPECT_EQ(done.refit_job_id(), refit);
  EXPECT_FALSE(done.trials(3).has_objective());
  EXPECT_EQ(done.best_job_id(), jobs[2]);
  EXPECT_DOUBLE_EQ(done.best_objective(), 0.9);
  EXPECT_EQ(done.trials_ended(), 3);  // the search's trials
  EXPECT_EQ(done.trials(1).state(), Job::STOPPED_EARLY);
  EXPECT_DOUBLE_EQ(done.trials(1).objective(), 0.3);
}

TEST_F(SchedulerSweepsTest, AnAshaStopIsStoredWithTheRungsEpochSoThatAKilledServerKeepsIt) {
  scheduler_.reset();
  FailingJobStore failing(*store_);
  scheduler_ = std::make_unique<Scheduler>(failing, *metrics_, options_);
  ASSERT_THAT(scheduler_->Start(), IsOk());
  ASSERT_OK_AND_ASSIGN(
      const Sweep submitted,
      scheduler_->SubmitSweep(
          RateSweep(R"(, "method": "ASHA", "asha": {"reductionFactor": 2}, "maxTrials": 2,
                       "maxParallelTrials": 2)"),
          "alice"));
  const TrialWorkers started = StartTrials(2);
  ASSERT_EQ(started.jobs.size(), 2u);
  const auto& [connections, sessions, jobs] = started;
  Epoch(sessions[0], jobs[0], 1, 0.5);
  // The second trial's rung epoch is stored, and every write after it is lost: tlserver
  // killed right after storing the epoch.
  failing.Fail(FailingJobStore::Call::kCommitJob, absl::UnavailableError("killed"), -1,
               /*passes_first=*/1);
  Epoch(sessions[1], jobs[1], 1, 0.3);
  ASSERT_OK_AND_ASSIGN(const JobRecord stored, store_->GetJob(jobs[1]));
  EXPECT_EQ(stored.epoch(), 1);
  EXPECT_TRUE(stored.stop_early_requested());

  StartScheduler();  // over the same file, as after the kill
  // The trial's worker comes back holding it: the stop reaches it, and it ends STOPPED_EARLY.
  auto back = std::make_shared<RecordingConnection>();
  tl::v1::WorkerHello hello;
  hello.set_worker_id("w1");
  hello.add_devices()->set_kind("cpu");
  hello.set_held_job_id(jobs[1]);
  hello.set_held_attempt(1);
  ASSERT_OK_AND_ASSIGN(const int64_t session, scheduler_->ConnectWorker(hello, back));
  EXPECT_EQ(back->Cancelled(), std::vector<std::string>{jobs[1]});
  Finished(session, jobs[1], JobFinished::CANCELLED);
  ASSERT_OK_AND_ASSIGN(const Job stopped, scheduler_->GetJob(jobs[1]));
  EXPECT_EQ(stopped.state(), Job::STOPPED_EARLY);
  EXPECT_THAT(stopped.error(), HasSubstr("stopped early by ASHA at epoch 1"));
  ASSERT_OK_AND_ASSIGN(const Sweep after, scheduler_->GetSweep(submitted.id()));
  EXPECT_EQ(after.trials(1).state(), Job::STOPPED_EARLY);
}

TEST_F(SchedulerSweepsTest, AFailedRefitFailsTheSweepWithItsOwnError) {
  ASSERT_OK_AND_ASSIGN(
      const Sweep submitted,
      scheduler_->SubmitSweep(
          Spec(R"({"name": "one", "base": {"backbone": {"path": "backbones/net.pt"},
              "dataset": {"trainDir": "train"}, "training": {"epochs": 2}},
              "space": [{"field": "training.learning_rate", "values": [0.01]}]})"),
          "alice"));
  auto connection = std::make_shared<RecordingConnection>();
  const int64_t session = Connect("w", connection);
  ASSERT_EQ(connection->Assigned().size(), 1u);
  const std::string trial = connection->Assigned()[0];
  Started(session, trial);
  Epoch(session, trial, 1, 0.5);
  Epoch(session, trial, 2, 0.6);
  Finished(session, trial, JobFinished::SUCCEEDED);
  ASSERT_EQ(connection->Assigned().size(), 2u);  // the refit, placed at once
  const std::string refit = connection->Assigned()[1];
  Started(session, refit);
  WorkerMessage failed = FinishedMessage(refit, JobFinished::FAILED);
  failed.mutable_finished()->set_error("training.learning_rate: loss became NaN");
  scheduler_->HandleWorkerMessage(session, failed);
  ASSERT_OK_AND_ASSIGN(const Sweep ended, scheduler_->GetSweep(submitted.id()));
  EXPECT_EQ(ended.state(), Sweep::FAILED);
  EXPECT_THAT(ended.error(), HasSubstr("the refit, job " + refit + ", ended FAILED"));
  EXPECT_THAT(ended.error(), HasSubstr("loss became NaN"));
  EXPECT_EQ(ended.best_job_id(), trial);  // its model is still there
  EXPECT_EQ(ended.failed_trials(), 0);
}

TEST_F(SchedulerSweepsTest, CancelReachesQueuedAndRunningTrialsAndLeavesFinishedOnes) {
  ASSERT_OK_AND_ASSIGN(const Sweep submitted,
                       scheduler_->SubmitSweep(RateSweep(""), "alice"));
  ASSERT_EQ(submitted.trials_size(), 3);  // GRID, every point at once (max_parallel 4)
  auto connection = std::make_shared<RecordingConnection>();
  const int64_t session = Connect("w", connection);
  ASSERT_EQ(connection->Assigned().size(), 1u);
  const std::string finished = connection->Assigned()[0];
  Started(session, finished);
  Finished(session, finished, JobFinished::SUCCEEDED);
  ASSERT_EQ(connection->Assigned().size(), 2u);
  const std::string running = connection->Assigned()[1];
  Started(session, running);
  std::string queued;
  for (const auto& trial : submitted.trials()) {
    if (trial.job_id() != finished && trial.job_id() != running) queued = trial.job_id();
  }
  EXPECT_EQ(StateOf(queued), Job::QUEUED);

  ASSERT_OK_AND_ASSIGN(const Sweep cancelled,
                       scheduler_->CancelSweep(submitted.id(), "enough"));
  EXPECT_EQ(cancelled.state(), Sweep::CANCELLED);
  EXPECT_EQ(cancelled.error(), "enough");
  EXPECT_EQ(StateOf(queued), Job::CANCELLED);  // at once
  EXPECT_EQ(StateOf(finished), Job::SUCCEEDED);
  EXPECT_EQ(connection->Cancelled(), std::vector<std::string>{running});
  Finished(session, running, JobFinished::CANCELLED);
  EXPECT_EQ(StateOf(running), Job::CANCELLED);
  EXPECT_THAT(scheduler_->CancelSweep(submitted.id(), ""),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already ended")));
}

TEST_F(SchedulerSweepsTest, AnotherOwnersSweepReadsAsMissing) {
  ASSERT_OK_AND_ASSIGN(const Sweep sweep, scheduler_->SubmitSweep(RateSweep(""), "alice"));
  const Principal bob{"bob", Role::kUser, {}, false};
  const Principal alice{"alice", Role::kUser, {}, false};
  EXPECT_THAT(scheduler_->GetSweep(sweep.id(), bob), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(scheduler_->CancelSweep(sweep.id(), "", bob), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(scheduler_->GetSweep(sweep.id(), alice), IsOk());
  ASSERT_OK_AND_ASSIGN(Scheduler::SweepPage page, scheduler_->ListSweeps({}, 0, "", "", bob));
  EXPECT_TRUE(page.sweeps.empty());
  ASSERT_OK_AND_ASSIGN(Scheduler::JobPage trials,
                       scheduler_->ListJobs({}, 0, "", "", alice, sweep.id()));
  EXPECT_EQ(trials.jobs.size(), 3u);
  // A job may start from a sweep (its best trial) only once one has succeeded.
  tl::v1::JobSpec from_sweep;
  from_sweep.mutable_backbone()->set_from_job(sweep.id());
  from_sweep.mutable_dataset()->set_train_dir("train");
  EXPECT_THAT(scheduler_->SubmitJob(from_sweep, "alice", "", alice),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no succeeded trial")));
  EXPECT_THAT(scheduler_->SubmitJob(from_sweep, "bob", "", bob),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(SchedulerSweepsTest, PausedSweepsCreateNothingAndResumeWhereTheyStopped) {
  ASSERT_OK_AND_ASSIGN(const Sweep sweep,
                       scheduler_->SubmitSweep(RateSweep(R"(, "maxParallelTrials": 1)"), "alice"));
  ASSERT_EQ(sweep.trials_size(), 1);
  ASSERT_OK_AND_ASSIGN(const Sweep paused, scheduler_->PauseSweep(sweep.id()));
  EXPECT_EQ(paused.state(), Sweep::PAUSED);
  EXPECT_EQ(paused.trials(0).state(), Job::PAUSED);
  ASSERT_OK_AND_ASSIGN(const Sweep resumed, scheduler_->ResumeSweep(sweep.id()));
  EXPECT_EQ(resumed.state(), Sweep::RUNNING);
  EXPECT_EQ(resumed.trials(0).state(), Job::QUEUED);
}

TEST_F(SchedulerSweepsTest, TiesGoToTheLowerLossAndTheRefitsTrialStaysTheBestAfterARestart) {
  ASSERT_OK_AND_ASSIGN(
      const Sweep sweep,
      scheduler_->SubmitSweep(
          Spec(R"({"name": "lr", "base": {"backbone": {"path": "backbones/net.pt"},
              "dataset": {"trainDir": "train", "valFraction": 0.5}, "training": {"epochs": 2}},
              "space": [{"field": "training.learning_rate", "values": [0.1, 0.01]}],
              "maxParallelTrials": 2, "refit": true})"),
          "alice"));
  TrialWorkers workers = StartTrials(2);
  ASSERT_EQ(workers.jobs.size(), 2u);
  // Both reach accuracy 1.0; the second with the lower validation loss.
  for (int i = 0; i < 2; ++i) {
    for (int epoch = 1; epoch <= 2; ++epoch) {
      Epoch(workers.sessions[i], workers.jobs[i], epoch, 1.0, i == 0 ? 0.4 : 0.05);
    }
    Finished(workers.sessions[i], workers.jobs[i], JobFinished::SUCCEEDED);
  }
  ASSERT_OK_AND_ASSIGN(const Sweep refitting, scheduler_->GetSweep(sweep.id()));
  EXPECT_EQ(refitting.best_job_id(), workers.jobs[1]);
  const std::string refit = refitting.refit_job_id();
  ASSERT_FALSE(refit.empty());
  int refit_worker = -1;  // the refit went to an idle trial worker at once
  for (int i = 0; i < 2; ++i) {
    if (workers.connections[i]->Assigned().size() == 2) refit_worker = i;
  }
  ASSERT_GE(refit_worker, 0);
  Started(workers.sessions[refit_worker], refit);

  // A server that ranked ties by creation stored the first trial as the best and refit it; a
  // restart must not move the best away from the trial the refit trains.
  ASSERT_OK_AND_ASSIGN(SweepRecord stored, store_->GetSweep(sweep.id()));
  stored.set_best_job_id(workers.jobs[0]);
  ASSERT_THAT(store_->UpdateSweep(stored), IsOk());
  StartScheduler();
  tl::v1::WorkerHello hello;  // back with the refit still running
  hello.set_worker_id("w" + std::to_string(refit_worker));
  hello.add_devices()->set_kind("cpu");
  hello.set_held_job_id(refit);
  hello.set_held_attempt(1);
  ASSERT_OK_AND_ASSIGN(const int64_t session,
                       scheduler_->ConnectWorker(hello, std::make_shared<RecordingConnection>()));
  Finished(session, refit, JobFinished::SUCCEEDED);
  ASSERT_OK_AND_ASSIGN(const Sweep done, scheduler_->GetSweep(sweep.id()));
  EXPECT_EQ(done.state(), Sweep::SUCCEEDED);
  EXPECT_EQ(done.best_job_id(), workers.jobs[0]);
}

// The lease clock is the scheduler's CheckLeases(now), called here with a time past the lease:
// a trial whose worker falls silent goes back to the queue as any job does, and the sweep
// neither replaces it nor counts it; once it has failed its last attempt it counts against the
// sweep's failure budget, and the sweep goes on to its next trial and ends SUCCEEDED.
TEST_F(SchedulerSweepsTest, ATrialWhoseWorkerFallsSilentIsRetriedThenCountedAndTheSweepGoesOn) {
  options_.max_attempts = 2;
  StartScheduler();
  ASSERT_OK_AND_ASSIGN(
      const Sweep submitted,
      scheduler_->SubmitSweep(
          RateSweep(R"(, "maxParallelTrials": 1, "maxFailedTrials": 1, "refit": false)"),
          "alice"));
  ASSERT_EQ(submitted.trials_size(), 1);
  const std::string first = submitted.trials(0).job_id();
  const auto start = [&](const std::string& worker_id, int attempt) {
    auto connection = std::make_shared<RecordingConnection>();
    const int64_t session = Connect(worker_id, connection);
    EXPECT_EQ(connection->Assigned(), std::vector<std::string>{first});
    WorkerMessage message;
    message.mutable_started()->set_job_id(first);
    message.mutable_started()->set_attempt(attempt);
    scheduler_->HandleWorkerMessage(session, message);
    EXPECT_EQ(StateOf(first), Job::RUNNING);
  };

  start("w0", 1);
  scheduler_->CheckLeases(absl::Now() + 2 * kLease);  // w0 said nothing for two leases
  EXPECT_EQ(StateOf(first), Job::QUEUED);
  ASSERT_OK_AND_ASSIGN(const Sweep retrying, scheduler_->GetSweep(submitted.id()));
  EXPECT_EQ(retrying.state(), Sweep::RUNNING);
  EXPECT_EQ(retrying.trials_size(), 1);  // the same trial, not a new one
  EXPECT_EQ(retrying.failed_trials(), 0);

  start("w1", 2);
  scheduler_->CheckLeases(absl::Now() + 2 * kLease);  // its second and last attempt lost too
  ASSERT_OK_AND_ASSIGN(const Job failed, scheduler_->GetJob(first));
  EXPECT_EQ(failed.state(), Job::FAILED);
  EXPECT_THAT(failed.error(), HasSubstr("worker w1 lost during attempt 2"));
  ASSERT_OK_AND_ASSIGN(const Sweep going_on, scheduler_->GetSweep(submitted.id()));
  EXPECT_EQ(going_on.state(), Sweep::RUNNING);
  EXPECT_EQ(going_on.failed_trials(), 1);
  ASSERT_EQ(going_on.trials_size(), 2);

  auto connection = std::make_shared<RecordingConnection>();
  const int64_t session = Connect("w2", connection);
  for (int trial = 1; trial <= 2; ++trial) {
    ASSERT_EQ(connection->Assigned().size(), static_cast<size_t>(trial));
    const std::string job = connection->Assigned().back();
    Started(session, job);
    Epoch(session, job, 1, 0.5 + 0.1 * trial);
    Finished(session, job, JobFinished::SUCCEEDED);
  }
  ASSERT_OK_AND_ASSIGN(const Sweep done, scheduler_->GetSweep(submitted.id()));
  EXPECT_EQ(done.state(), Sweep::SUCCEEDED);
  EXPECT_EQ(done.failed_trials(), 1);
  EXPECT_EQ(done.trials_size(), 3);
  EXPECT_EQ(done.trials(0).state(), Job::FAILED);
  EXPECT_EQ(done.best_job_id(), connection->Assigned()[1]);
}

// backbone.from_job and evaluate.from_job may name a sweep: its best trial while it runs, its
// refit once it has succeeded. The stored spec names the job it stood for, and that job's
// backbone is what the worker is given.
TEST_F(SchedulerSweepsTest, AJobNamingASweepStartsFromTheJobThatIsItsResult) {
  ASSERT_OK_AND_ASSIGN(
      const Sweep submitted,
      scheduler_->SubmitSweep(
          Spec(R"({"name": "one", "base": {"backbone": {"path": "backbones/net.pt"},
              "dataset": {"trainDir": "train"}, "training": {"epochs": 1}},
              "space": [{"field": "training.learning_rate", "values": [0.01]}]})"),
          "alice"));
  auto connection = std::make_shared<RecordingConnection>();
  const int64_t session = Connect("w", connection);
  const fs::path artifacts(options_.artifact_root);
  const auto succeed = [&](const std::string& job) {
    Started(session, job);
    Epoch(session, job, 1, 0.8);
    WriteFile(artifacts / job / "backbone.pt", "torchscript");
    WriteFile(artifacts / job / "backbone.json", R"({"format": "tl.backbone.v1"})");
    WriteFile(artifacts / job / "model.pt", "torchscript");
    WriteFile(artifacts / job / "model.json", "{}");
    WorkerMessage message = FinishedMessage(job, JobFinished::SUCCEEDED);
    message.mutable_finished()->mutable_result()->set_backbone_path(job + "/backbone.pt");
    scheduler_->HandleWorkerMessage(session, message);
  };
  const Principal alice{"alice", Role::kUser, {}, false};
  tl::v1::JobSpec transfer;
  transfer.mutable_backbone()->set_from_job(submitted.id());
  transfer.mutable_dataset()->set_train_dir("train");
  tl::v1::JobSpec evaluation;
  evaluation.mutable_evaluate()->set_from_job(submitted.id());
  evaluation.mutable_dataset()->set_test_dir("train");

  SweepSpec from_sweep = Spec(R"({"name": "next", "base": {"dataset": {"trainDir": "train"},
      "training": {"epochs": 1}},
      "space": [{"field": "training.learning_rate", "values": [0.01]}]})");
  from_sweep.mutable_base()->mutable_backbone()->set_from_job(submitted.id());

  ASSERT_EQ(connection->Assigned().size(), 1u);
  const std::string trial = connection->Assigned()[0];
  succeed(trial);
  ASSERT_EQ(connection->Assigned().size(), 2u);  // the refit, running now
  const std::string refit = connection->Assigned()[1];
  ASSERT_OK_AND_ASSIGN(const Job from_trial,
                       scheduler_->SubmitJob(transfer, "alice", "job-from-sweep", alice));
  EXPECT_EQ(from_trial.spec().backbone().from_job(), trial);
  ASSERT_OK_AND_ASSIGN(const Job evaluating_trial,
                       scheduler_->SubmitJob(evaluation, "alice", "eval-from-sweep", alice));
  EXPECT_EQ(evaluating_trial.spec().evaluate().model_path(), trial + "/model.pt");
  // A sweep from the sweep: every trial starts from the one job its base resolved to.
  ASSERT_OK_AND_ASSIGN(const Sweep next,
                       scheduler_->SubmitSweep(from_sweep, "alice", "sweep-from-sweep", alice));
  EXPECT_EQ(next.spec().base().backbone().from_job(), trial);
  ASSERT_EQ(next.trials_size(), 1);
  ASSERT_OK_AND_ASSIGN(const Job next_trial, scheduler_->GetJob(next.trials(0).job_id()));
  EXPECT_EQ(next_trial.spec().backbone().from_job(), trial);
  ASSERT_THAT(scheduler_->CancelSweep(next.id(), "not needed"), IsOk());

  succeed(refit);
  ASSERT_OK_AND_ASSIGN(const Sweep done, scheduler_->GetSweep(submitted.id()));
  ASSERT_EQ(done.state(), Sweep::SUCCEEDED);
  // Repeats of those submits (a client that never saw the answer) are the same requests, though
  // the sweep they name now stands for its refit.
  ASSERT_OK_AND_ASSIGN(const Job repeated,
                       scheduler_->SubmitJob(transfer, "alice", "job-from-sweep", alice));
  EXPECT_EQ(repeated.id(), from_trial.id());
  ASSERT_OK_AND_ASSIGN(const Job repeated_evaluation,
                       scheduler_->SubmitJob(evaluation, "alice", "eval-from-sweep", alice));
  EXPECT_EQ(repeated_evaluation.id(), evaluating_trial.id());
  ASSERT_OK_AND_ASSIGN(const Sweep repeated_sweep,
                       scheduler_->SubmitSweep(from_sweep, "alice", "sweep-from-sweep", alice));
  EXPECT_EQ(repeated_sweep.id(), next.id());
  tl::v1::JobSpec other = transfer;
  other.mutable_dataset()->set_val_fraction(0.5);
  EXPECT_THAT(scheduler_->SubmitJob(other, "alice", "job-from-sweep", alice),
              StatusIs(absl::StatusCode::kAlreadyExists));
  other = transfer;  // the refit named by its own id is another source than the sweep was
  other.mutable_backbone()->set_from_job(refit);
  EXPECT_THAT(scheduler_->SubmitJob(other, "alice", "job-from-sweep", alice),
              StatusIs(absl::StatusCode::kAlreadyExists));

  ASSERT_OK_AND_ASSIGN(const Job from_refit, scheduler_->SubmitJob(transfer, "alice", "", alice));
  EXPECT_EQ(from_refit.spec().backbone().from_job(), refit);
  ASSERT_OK_AND_ASSIGN(const Job evaluating,
                       scheduler_->SubmitJob(evaluation, "alice", "", alice));
  EXPECT_EQ(evaluating.spec().evaluate().model_path(), refit + "/model.pt");

  // The worker, idle since the refit, is given each queued job in turn, with the files of the
  // job its source stood for.
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(connection->Assigned().size(), static_cast<size_t>(3 + i));
    const std::string job = connection->Assigned().back();
    Started(session, job);
    Finished(session, job, JobFinished::SUCCEEDED);
  }
  EXPECT_EQ(connection->BackbonePathOf(from_trial.id()), trial + "/backbone.pt");
  EXPECT_EQ(connection->BackbonePathOf(from_refit.id()), refit + "/backbone.pt");
  EXPECT_EQ(StateOf(evaluating.id()), Job::SUCCEEDED);

  // A job stored while submit kept the sweep's id (before it resolved it): a repeat of its
  // submit is the same request, and after a restart it is assigned the sweep's result, which
  // its spec keeps from then on.
  tl::v1::JobSpec stored_spec = from_refit.spec();
  stored_spec.mutable_backbone()->set_from_job(submitted.id());
  ASSERT_OK_AND_ASSIGN(
      const std::vector<JobRecord> stored,
      store_->CreateJobs({{stored_spec, "alice", "stored-from-sweep", absl::Now()}}));
  StartScheduler();
  ASSERT_OK_AND_ASSIGN(const Job repeated_stored,
                       scheduler_->SubmitJob(transfer, "alice", "stored-from-sweep", alice));
  EXPECT_EQ(repeated_stored.id(), stored[0].id());
  auto restarted = std::make_shared<RecordingConnection>();
  Connect("w2", restarted);
  EXPECT_EQ(restarted->Assigned(), std::vector<std::string>{stored[0].id()});
  EXPECT_EQ(restarted->BackbonePathOf(stored[0].id()), refit + "/backbone.pt");
  ASSERT_OK_AND_ASSIGN(const JobRecord kept, store_->GetJob(stored[0].id()));
  EXPECT_EQ(kept.spec().backbone().from_job(), refit);
}

TEST_F(SchedulerSweepsTest, ARestartedSchedulerGoesOnWithoutCreatingATrialTwice) {
  ASSERT_OK_AND_ASSIGN(const Sweep sweep,
                       scheduler_->SubmitSweep(RateSweep(R"(, "maxParallelTrials": 2)"), "alice"));
  ASSERT_EQ(sweep.trials_size(), 2);
  StartScheduler();  // the old one gone, as after a crash: only the store remains
  ASSERT_OK_AND_ASSIGN(const Sweep reloaded, scheduler_->GetSweep(sweep.id()));
  ASSERT_EQ(reloaded.trials_size(), 2);
  EXPECT_EQ(reloaded.trials(0).job_id(), sweep.trials(0).job_id());
  EXPECT_EQ(reloaded.state(), Sweep::RUNNING);
  auto connection = std::make_shared<RecordingConnection>();
  const int64_t session = Connect("w", connection);
  const std::string first = connection->Assigned()[0];
  Started(session, first);
  Finished(session, first, JobFinished::SUCCEEDED);
  ASSERT_OK_AND_ASSIGN(const Sweep after, scheduler_->GetSweep(sweep.id()));
  ASSERT_EQ(after.trials_size(), 3);
  EXPECT_EQ(after.trials(2).index(), 2);
  EXPECT_EQ(after.trials_created(), 3);
}

}  // namespace
}  // namespace tl::server
