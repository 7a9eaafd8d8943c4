#include "server/core/scheduler.h"

#include <stdlib.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "common/worker_slots.h"
#include "gmock/gmock.h"
#include "google/protobuf/unknown_field_set.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "server/store/sqlite_job_store.h"
#include "server/store/testing/failing_job_store.h"
#include "prometheus/metric_type.h"

namespace tl::server {
namespace {

namespace fs = std::filesystem;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Optional;
using ::testing::_;
using ::testing::SizeIs;
using ::tl::server::testing::FailingJobStore;
using ::tl::testing::IsOk;
using ::tl::testing::WriteFile;
using ::tl::testing::StatusIs;
using ::tl::v1::Assignment;
using ::tl::v1::CancelAssignment;
using ::tl::v1::Job;
using ::tl::v1::JobEvent;
using ::tl::v1::JobFinished;
using ::tl::v1::JobSpec;
using ::tl::v1::SchedulerMessage;
using ::tl::v1::WorkerMessage;

// An assignment of attempt `attempt` of job `job_id`.
MATCHER_P2(AssignmentOf, job_id, attempt,
           std::string(negation ? "is not" : "is") + " attempt " +
               ::testing::PrintToString(attempt) + " of job " + ::testing::PrintToString(job_id)) {
  return arg.job_id() == job_id && arg.attempt() == attempt;
}

// Long enough that the scheduler's own lease thread (which wakes every lease / 10) never
// expires anything during a test: lease expiry is driven by calling CheckLeases with
// synthetic times instead, which makes it deterministic.
constexpr absl::Duration kLease = absl::Hours(1);

// Records what the scheduler sends one worker. The scheduler calls it under its own lock and
// the lease thread may call Close, so it guards its state.
class FakeConnection final : public WorkerConnection {
 public:
  void Send(const SchedulerMessage& message) override {
    std::lock_guard<std::mutex> lock(mutex_);
    messages_.push_back(message);
  }
  void Close(const std::string& why) override {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    close_reason_ = why;
  }

  std::vector<SchedulerMessage> messages() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return messages_;
  }
  std::vector<Assignment> assignments() const {
    std::vector<Assignment> result;
    for (const SchedulerMessage& message : messages()) {
      if (message.has_assignment()) result.push_back(message.assignment());
    }
    return result;
  }
  std::vector<CancelAssignment> cancels() const {
    std::vector<CancelAssignment> result;
    for (const SchedulerMessage& message : messages()) {
      if (message.has_cancel()) result.push_back(message.cancel());
    }
    return result;
  }
  bool closed() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return closed_;
  }
  std::string close_reason() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return close_reason_;
  }
  int heartbeats() const {
    int count = 0;
    for (const SchedulerMessage& message : messages()) count += message.has_heartbeat() ? 1 : 0;
    return count;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<SchedulerMessage> messages_;
  bool closed_ = false;
  std::string close_reason_;
};

// One event as a short string, so that whole event sequences read well in assertions.
std::string Describe(const JobEvent& event) {
  switch (event.event_case()) {
    case JobEvent::kJob:
      return absl::StrCat("job ", Job::State_Name(event.job().state()));
    case JobEvent::kEpoch:
      return absl::StrCat("epoch ", event.epoch().epoch());
    case JobEvent::kProgress:
      return absl::StrCat("progress ", event.progress().batch(), "/", event.progress().batches());
    case JobEvent::EVENT_NOT_SET:
      break;
  }
  return "empty";
}

// Records the events of one WatchJob; `accepting` false plays a watcher whose client left.
class FakeWatcher final : public JobWatcher {
 public:
  explicit FakeWatcher(bool accepting = true) : accepting_(accepting) {}

  bool Deliver(const JobEvent& event) override {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back(event);
    return accepting_;
  }
  void Finish() override {
    std::lock_guard<std::mutex> lock(mutex_);
    ++finish_count_;
  }
  void Interrupt() override {
    std::lock_guard<std::mutex> lock(mutex_);
    ++interrupt_count_;
  }
  bool Gone() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    ++gone_checks_;
    return !accepting_;
  }
  int gone_checks() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return gone_checks_;
  }
  int interrupt_count() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return interrupt_count_;
  }

  std::vector<JobEvent> events() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return events_;
  }
  std::vector<std::string> described() const {
    std::vector<std::string> result;
    for (const JobEvent& event : events()) result.push_back(Describe(event));
    return result;
  }
  int finish_count() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return finish_count_;
  }

 private:
  const bool accepting_;
  mutable std::mutex mutex_;
  std::vector<JobEvent> events_;
  int finish_count_ = 0;
  int interrupt_count_ = 0;
  mutable int gone_checks_ = 0;
};

// The value of the series `name` whose labels are exactly `labels`; nullopt when absent.
std::optional<double> MetricValue(const prometheus::Registry& registry, const std::string& name,
                                  const std::map<std::string, std::string>& labels = {}) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      std::map<std::string, std::string> found;
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        found[label.name] = label.value;
      }
      if (found != labels) continue;
      return family.type == prometheus::MetricType::Counter ? metric.counter.value
                                                            : metric.gauge.value;
    }
  }
  return std::nullopt;
}

// Slot `slot` of `slots` of worker process `process`, a CPU worker (common/worker_slots.h);
// `slots` 0: the process itself, a worker of one slot.
tl::v1::WorkerHello SlotHello(const std::string& process, int slot, int slots) {
  tl::v1::WorkerHello hello;
  hello.set_worker_id(slots == 0 ? process : SlotWorkerId(process, slot));
  if (slots > 0) {
    hello.set_slot_of(process);
    hello.set_slot(slot);
    hello.set_slots(slots);
  }
  hello.add_devices()->set_kind("cpu");
  return hello;
}

struct FakeWorker {
  std::string id;
  int64_t session = 0;
  std::shared_ptr<FakeConnection> connection;
};

// A real JobStore on a temp SQLite file, a data root holding one valid backbone and a
// two-class image folder, and a started Scheduler over them.
class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = temp_dir_.path();
    WriteFile(base_ / "data/backbones/resnet.pt", "torchscript");
    WriteFile(base_ / "data/backbones/resnet.json", R"({"format": "tl.backbone.v1"})");
    WriteFile(base_ / "data/flowers/daisy/1.png", "");
    WriteFile(base_ / "data/flowers/rose/1.png", "");
    fs::create_directories(base_ / "artifacts");
    db_path_ = (base_ / "jobs.db").string();
    Restart(DefaultOptions());
  }

  void TearDown() override {
    scheduler_.reset();  // it uses the store and the metrics
    failing_.reset();
    store_.reset();
  }

  SchedulerOptions DefaultOptions() const {
    SchedulerOptions options;
    options.data_root = (base_ / "data").string();
    options.artifact_root = (base_ / "artifacts").string();
    options.lease_timeout = kLease;
    options.heartbeat_interval = absl::Milliseconds(250);
    options.max_attempts = 3;
    return options;
  }

  // Replaces scheduler, metrics and store (reopened from the same file), as a restart of
  // the server process would.
  void Restart(const SchedulerOptions& options) {
    scheduler_.reset();
    failing_.reset();
    store_.reset();
    ASSERT_OK_AND_ASSIGN(store_, SqliteJobStore::Open(db_path_));
    // Every call passes through to the file unless a test asks one to fail.
    failing_ = std::make_unique<FailingJobStore>(*store_);
    metrics_ = std::make_unique<ServerMetrics>();
    scheduler_ = std::make_unique<Scheduler>(*failing_, *metrics_, options);
    ASSERT_THAT(scheduler_->Start(), IsOk());
  }

  static JobSpec Spec(const std::string& name, int priority = 0, const std::string& device = "") {
    JobSpec spec;
    spec.set_name(name);
    spec.set_priority(priority);
    spec.mutable_backbone()->set_path("backbones/resnet.pt");
    spec.mutable_dataset()->set_train_dir("flowers");
    spec.mutable_resources()->set_device(device);
    return spec;
  }

  // Submits a valid job and returns its id ("" after a failure, which is reported).
  std::string Submit(const std::string& name, int priority = 0, const std::string& device = "") {
    absl::StatusOr<Job> job = scheduler_->SubmitJob(Spec(name, priority, device), "alice");
    EXPECT_THAT(job, IsOk());
    return job.ok() ? job->id() : "";
  }

  FakeWorker ConnectHello(const tl::v1::WorkerHello& hello) {
    FakeWorker worker{hello.worker_id(), 0, std::make_shared<FakeConnection>()};
    absl::StatusOr<int64_t> session = scheduler_->ConnectWorker(hello, worker.connection);
    EXPECT_THAT(session, IsOk());
    worker.session = session.value_or(0);
    return worker;
  }

  FakeWorker Connect(const std::string& worker_id,
                     const std::vector<std::string>& devices = {"cpu"},
                     const std::string& held_job_id = "", int held_attempt = 0) {
    tl::v1::WorkerHello hello;
    hello.set_worker_id(worker_id);
    hello.set_hostname("host-" + worker_id);
    for (const std::string& kind : devices) hello.add_devices()->set_kind(kind);
    hello.set_held_job_id(held_job_id);
    hello.set_held_attempt(held_attempt);
    return ConnectHello(hello);
  }

  void Started(const FakeWorker& worker, const std::string& job_id, int attempt) {
    WorkerMessage message;
    message.mutable_started()->set_job_id(job_id);
    message.mutable_started()->set_attempt(attempt);
    message.mutable_started()->mutable_dataset()->add_class_names("daisy");
    message.mutable_started()->mutable_dataset()->add_class_names("rose");
    message.mutable_started()->mutable_dataset()->set_train_images(80);
    scheduler_->HandleWorkerMessage(worker.session, message);
  }

  void EpochDone(const FakeWorker& worker, const std::string& job_id, int attempt, int epoch,
                 double train_loss) {
    WorkerMessage message;
    message.mutable_epoch()->set_job_id(job_id);
    tl::v1::EpochMetrics& metrics = *message.mutable_epoch()->mutable_metrics();
    metrics.set_epoch(epoch);
    metrics.set_attempt(attempt);
    metrics.set_train_loss(train_loss);
    metrics.set_val_accuracy(0.5 + 0.1 * epoch);
    scheduler_->HandleWorkerMessage(worker.session, message);
  }

  void Progressed(const FakeWorker& worker, const std::string& job_id, int attempt, int batch,
                  int batches) {
    WorkerMessage message;
    message.mutable_progress()->set_job_id(job_id);
    message.mutable_progress()->set_attempt(attempt);
    message.mutable_progress()->mutable_progress()->set_epoch(1);
    message.mutable_progress()->mutable_progress()->set_epochs(10);
    message.mutable_progress()->mutable_progress()->set_batch(batch);
    message.mutable_progress()->mutable_progress()->set_batches(batches);
    scheduler_->HandleWorkerMessage(worker.session, message);
  }

  void Finished(const FakeWorker& worker, const std::string& job_id, int attempt,
                JobFinished::Outcome outcome, const std::string& error = "") {
    WorkerMessage message;
    JobFinished& finished = *message.mutable_finished();
    finished.set_job_id(job_id);
    finished.set_attempt(attempt);
    finished.set_outcome(outcome);
    finished.set_error(error);
    if (outcome == JobFinished::SUCCEEDED) {
      finished.mutable_result()->set_model_path(job_id + "/model.pt");
      finished.mutable_result()->set_backbone_path(job_id + "/backbone.pt");
    }
    scheduler_->HandleWorkerMessage(worker.session, message);
  }

  void Heartbeat(const FakeWorker& worker) {
    WorkerMessage message;
    message.mutable_heartbeat();
    scheduler_->HandleWorkerMessage(worker.session, message);
  }

  // The job as the scheduler reports it; a default Job (state unspecified) after a failure.
  Job Get(const std::string& job_id) {
    absl::StatusOr<Job> job = scheduler_->GetJob(job_id);
    EXPECT_THAT(job, IsOk());
    return job.value_or(Job());
  }
  // The job as it is on disk.
  JobRecord Stored(const std::string& job_id) {
    absl::StatusOr<JobRecord> job = store_->GetJob(job_id);
    EXPECT_THAT(job, IsOk());
    return job.value_or(JobRecord());
  }

  std::optional<double> Metric(const std::string& name,
                               const std::map<std::string, std::string>& labels = {}) {
    return MetricValue(*metrics_->registry(), name, labels);
  }

  ::tl::testing::TempDir temp_dir_;  // removed with the fixture, after TearDown
  fs::path base_;
  std::string db_path_;
  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<FailingJobStore> failing_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerTest, SubmitStoresTheJobQueuedBeforeReturning) {
  ASSERT_OK_AND_ASSIGN(Job job, scheduler_->SubmitJob(Spec("flowers"), "alice"));
  EXPECT_EQ(job.state(), Job::QUEUED);
  EXPECT_EQ(job.attempt(), 0);
  EXPECT_EQ(job.owner(), "alice");
  EXPECT_DOUBLE_EQ(job.spec().training().momentum(), 0.9);  // stored with defaults filled in

  // A second connection to the file sees the row: it is committed, not only cached.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> other, SqliteJobStore::Open(db_path_));
  ASSERT_OK_AND_ASSIGN(JobRecord stored, other->GetJob(job.id()));
  EXPECT_EQ(stored.state(), Job::QUEUED);
  EXPECT_TRUE(MessageDifferencer::Equals(stored.spec(), job.spec()));
}

TEST_F(SchedulerTest, SubmitWithoutOwnerIsAnonymous) {
  ASSERT_OK_AND_ASSIGN(Job job, scheduler_->SubmitJob(Spec("flowers"), ""));
  EXPECT_EQ(job.owner(), "anonymous");
}

TEST_F(SchedulerTest, InvalidSpecIsRefusedAndNothingIsStored) {
  JobSpec spec = Spec("bad");
  spec.mutable_training()->set_epochs(0);
  EXPECT_THAT(scheduler_->SubmitJob(spec, "alice"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("training.epochs")));
  ASSERT_OK_AND_ASSIGN(auto counts, store_->CountByState());
  EXPECT_THAT(counts, IsEmpty());
  EXPECT_THAT(Metric("tl_jobs_submitted_total"), Optional(0.0));
}

TEST_F(SchedulerTest, DispatchRunsHigherPriorityFirstThenSubmissionOrder) {
  std::map<std::string, std::string> name_of;
  for (const auto& [name, priority] :
       std::vector<std::pair<std::string, int>>{{"a", 0}, {"b", 5}, {"c", 0}, {"d", 5}, {"e", 2}}) {
    name_of[Submit(name, priority)] = name;
  }
  FakeWorker worker = Connect("w1");
  std::vector<std::string> order;
  for (int i = 0; i < 5; ++i) {
    const std::vector<Assignment> assignments = worker.connection->assignments();
    ASSERT_THAT(assignments, SizeIs(i + 1));
    const Assignment& current = assignments.back();
    order.push_back(name_of[current.job_id()]);
    // One worker runs one job at a time: the next comes only when this one ends.
    Started(worker, current.job_id(), current.attempt());
    EXPECT_THAT(worker.connection->assignments(), SizeIs(i + 1));
    Finished(worker, current.job_id(), current.attempt(), JobFinished::SUCCEEDED);
  }
  EXPECT_THAT(order, ElementsAre("b", "d", "e", "a", "c"));
}

TEST_F(SchedulerTest, WorkerIsWelcomedThenAssignedTheQueuedJob) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");

  const std::vector<SchedulerMessage> messages = worker.connection->messages();
  ASSERT_THAT(messages, SizeIs(2));
  ASSERT_TRUE(messages[0].has_welcome());
  EXPECT_EQ(messages[0].welcome().heartbeat_interval_ms(), 250);
  ASSERT_TRUE(messages[1].has_assignment());
  const Assignment& assignment = messages[1].assignment();
  EXPECT_EQ(assignment.job_id(), id);
  EXPECT_EQ(assignment.attempt(), 1);
  EXPECT_EQ(assignment.backbone_path(), "backbones/resnet.pt");
  EXPECT_FALSE(assignment.backbone_from_artifacts());
  EXPECT_EQ(assignment.output_dir(), id);
  EXPECT_TRUE(MessageDifferencer::Equals(assignment.spec(), Stored(id).spec()));

  const JobRecord stored = Stored(id);
  EXPECT_EQ(stored.state(), Job::ASSIGNED);
  EXPECT_EQ(stored.attempt(), 1);
  EXPECT_EQ(stored.worker_id(), "w1");
}

TEST_F(SchedulerTest, BackboneFromAFinishedJobIsAssignedFromTheArtifactRoot) {
  const std::string source = Submit("pretrain");
  FakeWorker worker = Connect("w1");
  Finished(worker, source, 1, JobFinished::SUCCEEDED);  // exports <source>/backbone.pt
  WriteFile(base_ / "artifacts" / source / "backbone.pt", "torchscript");
  WriteFile(base_ / "artifacts" / source / "backbone.json", R"({"format": "tl.backbone.v1"})");

  JobSpec spec = Spec("transfer");
  spec.mutable_backbone()->set_from_job(source);
  ASSERT_OK_AND_ASSIGN(Job job, scheduler_->SubmitJob(spec, "alice"));
  const std::vector<Assignment> assignments = worker.connection->assignments();
  ASSERT_THAT(assignments, SizeIs(2));
  EXPECT_EQ(assignments[1].job_id(), job.id());
  EXPECT_EQ(assignments[1].backbone_path(), source + "/backbone.pt");
  EXPECT_TRUE(assignments[1].backbone_from_artifacts());
}

TEST_F(SchedulerTest, StartedMakesTheJobRunning) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  EXPECT_FALSE(Get(id).has_start_time());
  Started(worker, id, 1);

  const JobRecord stored = Stored(id);
  EXPECT_EQ(stored.state(), Job::RUNNING);
  EXPECT_TRUE(stored.has_start_time());
  EXPECT_GT(stored.start_time().seconds(), 0);
  EXPECT_THAT(stored.result().dataset().class_names(), ElementsAre("daisy", "rose"));
  EXPECT_EQ(Get(id).state(), Job::RUNNING);
}

// What the worker sized from the data is stored in the job's spec (and its
// result), so that clients and a retried attempt see the values used.
TEST_F(SchedulerTest, StartedStoresTheFieldsTheDataSizedInTheSpec) {
  const std::string id = Submit("flowers");
  ASSERT_FALSE(Stored(id).spec().training().has_epochs());
  FakeWorker worker = Connect("w1");
  WorkerMessage message;
  tl::v1::JobStarted& started = *message.mutable_started();
  started.set_job_id(id);
  started.set_attempt(1);
  started.mutable_dataset()->set_train_images(200);
  started.mutable_data_sizing()->add_sized_fields("training.epochs");
  started.mutable_data_sizing()->set_epochs(24);
  started.mutable_data_sizing()->set_batch_size(32);
  scheduler_->HandleWorkerMessage(worker.session, message);

  const JobRecord stored = Stored(id);
  EXPECT_EQ(stored.spec().training().epochs(), 24);
  EXPECT_FALSE(stored.spec().training().has_batch_size()) << "not among the sized fields";
  EXPECT_EQ(stored.result().data_sizing().epochs(), 24);
  EXPECT_EQ(Get(id).spec().training().epochs(), 24);
}

TEST_F(SchedulerTest, EpochIsStoredAndDeliveredToWatchers) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  auto watcher = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(id, watcher), IsOk());

  EpochDone(worker, id, 1, 1, 0.75);

  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::EpochMetrics> epochs, store_->GetEpochs(id));
  ASSERT_THAT(epochs, SizeIs(1));
  EXPECT_EQ(epochs[0].epoch(), 1);
  EXPECT_DOUBLE_EQ(epochs[0].train_loss(), 0.75);
  // The job's history so far, the epoch, then the job row with its new epoch count.
  EXPECT_THAT(watcher->described(), ElementsAre("job QUEUED", "job ASSIGNED", "job RUNNING",
                                                "epoch 1", "job RUNNING"));
  EXPECT_DOUBLE_EQ(watcher->events()[3].epoch().train_loss(), 0.75);
  EXPECT_EQ(watcher->events()[4].job().epoch(), 1);
  // Numbered 1, 2, 3 ... with no gap, and the job row knows its latest number.
  for (size_t i = 0; i < watcher->events().size(); ++i) {
    EXPECT_EQ(watcher->events()[i].sequence(), static_cast<int64_t>(i + 1));
  }
  EXPECT_EQ(Stored(id).last_event_sequence(), 5);
  EXPECT_EQ(Stored(id).epoch(), 1);
  EXPECT_DOUBLE_EQ(Stored(id).result().final_metrics().train_loss(), 0.75);
  EXPECT_EQ(watcher->finish_count(), 0);
}

TEST_F(SchedulerTest, ProgressIsDeliveredButNotStored) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  auto watcher = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(id, watcher), IsOk());

  Progressed(worker, id, 1, 3, 10);

  EXPECT_THAT(watcher->described(),
              ElementsAre("job QUEUED", "job ASSIGNED", "job RUNNING", "progress 3/10"));
  EXPECT_EQ(watcher->events()[3].sequence(), 0);  // not stored, so not numbered
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::EpochMetrics> epochs, store_->GetEpochs(id));
  EXPECT_THAT(epochs, IsEmpty());
  EXPECT_EQ(Stored(id).epoch(), 0);
}

TEST_F(SchedulerTest, SucceededEndsTheJobAndTheWorkerTakesTheNext) {
  const std::string first = Submit("first");
  const std::string second = Submit("second");
  FakeWorker worker = Connect("w1");
  Started(worker, first, 1);
  auto watcher = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(first, watcher), IsOk());

  Finished(worker, first, 1, JobFinished::SUCCEEDED);

  const JobRecord stored = Stored(first);
  EXPECT_EQ(stored.state(), Job::SUCCEEDED);
  EXPECT_TRUE(stored.has_end_time());
  EXPECT_EQ(stored.error(), "");
  EXPECT_EQ(stored.result().model_path(), first + "/model.pt");
  // The result came without a dataset summary: the one from JobStarted is kept.
  EXPECT_THAT(stored.result().dataset().class_names(), ElementsAre("daisy", "rose"));
  EXPECT_EQ(Get(first).state(), Job::SUCCEEDED);  // read back from the store once ended
  EXPECT_THAT(watcher->described(),
              ElementsAre("job QUEUED", "job ASSIGNED", "job RUNNING", "job SUCCEEDED"));
  EXPECT_EQ(watcher->finish_count(), 1);

  const std::vector<Assignment> assignments = worker.connection->assignments();
  ASSERT_THAT(assignments, SizeIs(2));
  EXPECT_EQ(assignments[1].job_id(), second);
  EXPECT_EQ(assignments[1].attempt(), 1);
}

TEST_F(SchedulerTest, FailedKeepsTheWorkersError) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  Finished(worker, id, 1, JobFinished::FAILED, "out of memory");
  const JobRecord stored = Stored(id);
  EXPECT_EQ(stored.state(), Job::FAILED);
  EXPECT_EQ(stored.error(), "out of memory");
  EXPECT_TRUE(stored.has_end_time());
}

TEST_F(SchedulerTest, FailureWithoutAnErrorStillSaysWhy) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Finished(worker, id, 1, JobFinished::FAILED);
  EXPECT_EQ(Stored(id).state(), Job::FAILED);
  EXPECT_THAT(Stored(id).error(), Not(IsEmpty()));
}

TEST_F(SchedulerTest, ReportsForAnotherAttemptOrFromAnotherSessionAreIgnored) {
  const std::string id = Submit("flowers");
  FakeWorker holder = Connect("w1");
  FakeWorker stranger = Connect("w2");
  ASSERT_THAT(holder.connection->assignments(), SizeIs(1));

  Started(holder, id, 2);  // wrong attempt
  EpochDone(holder, id, 2, 1, 0.5);
  Progressed(holder, id, 2, 1, 10);
  Started(stranger, id, 1);  // right attempt, wrong session
  EpochDone(stranger, id, 1, 1, 0.5);
  Finished(stranger, id, 1, JobFinished::SUCCEEDED);
  Finished(holder, id, 7, JobFinished::FAILED, "stale");

  EXPECT_EQ(Stored(id).state(), Job::ASSIGNED);
  EXPECT_EQ(Stored(id).epoch(), 0);
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::EpochMetrics> epochs, store_->GetEpochs(id));
  EXPECT_THAT(epochs, IsEmpty());
  EXPECT_FALSE(Metric("tl_job_epoch_progress_ratio", {{"job_id", id}}).has_value());

  // The holder's own reports still count.
  Started(holder, id, 1);
  EXPECT_EQ(Stored(id).state(), Job::RUNNING);
}

TEST_F(SchedulerTest, CancelOfQueuedJobEndsItAtOnce) {
  const std::string cancelled = Submit("cancelled");
  const std::string kept = Submit("kept");
  auto watcher = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(cancelled, watcher), IsOk());

  ASSERT_OK_AND_ASSIGN(Job job, scheduler_->CancelJob(cancelled, "changed my mind"));
  EXPECT_EQ(job.state(), Job::CANCELLED);
  EXPECT_EQ(job.error(), "changed my mind");
  EXPECT_EQ(Stored(cancelled).state(), Job::CANCELLED);
  EXPECT_EQ(watcher->finish_count(), 1);

  // It left the queue: a worker gets the other job only.
  FakeWorker worker = Connect("w1");
  const std::vector<Assignment> assignments = worker.connection->assignments();
  ASSERT_THAT(assignments, SizeIs(1));
  EXPECT_EQ(assignments[0].job_id(), kept);
  Finished(worker, kept, 1, JobFinished::SUCCEEDED);
  EXPECT_THAT(worker.connection->assignments(), SizeIs(1));
}

TEST_F(SchedulerTest, CancelWithoutReasonSaysItWasRequested) {
  const std::string id = Submit("flowers");
  ASSERT_OK_AND_ASSIGN(Job job, scheduler_->CancelJob(id, ""));
  EXPECT_EQ(job.state(), Job::CANCELLED);
  EXPECT_THAT(job.error(), HasSubstr("cancel"));
}

TEST_F(SchedulerTest, CancelOfRunningJobAsksItsWorkerToStop) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);

  ASSERT_OK_AND_ASSIGN(Job job, scheduler_->CancelJob(id, "wrong dataset"));
  EXPECT_EQ(job.state(), Job::RUNNING);  // it runs until the worker confirms
  EXPECT_TRUE(job.cancel_requested());
  EXPECT_TRUE(Stored(id).cancel_requested());
  const std::vector<CancelAssignment> cancels = worker.connection->cancels();
  ASSERT_THAT(cancels, SizeIs(1));
  EXPECT_EQ(cancels[0].job_id(), id);
  EXPECT_EQ(cancels[0].reason(), "wrong dataset");

  Finished(worker, id, 1, JobFinished::CANCELLED, "stopped at batch 3");
  const JobRecord stored = Stored(id);
  EXPECT_EQ(stored.state(), Job::CANCELLED);
  EXPECT_EQ(stored.error(), "wrong dataset");  // the user's reason, not the worker's words
}

TEST_F(SchedulerTest, CancelOfAnAssignedJobReachesItsWorkerBeforeItStarts) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  ASSERT_EQ(Get(id).state(), Job::ASSIGNED);
  ASSERT_OK_AND_ASSIGN(Job job, scheduler_->CancelJob(id, "changed my mind"));
  EXPECT_EQ(job.state(), Job::ASSIGNED);
  EXPECT_TRUE(job.cancel_requested());
  ASSERT_THAT(worker.connection->cancels(), SizeIs(1));
  Finished(worker, id, 1, JobFinished::CANCELLED, "stopped before the first batch");
  EXPECT_EQ(Stored(id).state(), Job::CANCELLED);
  EXPECT_EQ(Stored(id).error(), "changed my mind");
}

TEST_F(SchedulerTest, WorkerLeavingACancelRequestedJobEndsItCancelled) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  ASSERT_THAT(scheduler_->CancelJob(id, "stop"), IsOk());
  scheduler_->DisconnectWorker(worker.session);
  EXPECT_EQ(Stored(id).state(), Job::CANCELLED);
  EXPECT_EQ(Stored(id).error(), "stop");
}

TEST_F(SchedulerTest, CancelOfEndedJobIsFailedPrecondition) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Finished(worker, id, 1, JobFinished::SUCCEEDED);
  EXPECT_THAT(scheduler_->CancelJob(id, ""),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("SUCCEEDED")));
  EXPECT_EQ(Stored(id).state(), Job::SUCCEEDED);
}

TEST_F(SchedulerTest, UnknownJobIsNotFound) {
  EXPECT_THAT(scheduler_->CancelJob("0123456789abcdef", ""),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("0123456789abcdef")));
  EXPECT_THAT(scheduler_->GetJob("0123456789abcdef"), StatusIs(absl::StatusCode::kNotFound));
  auto watcher = std::make_shared<FakeWatcher>();
  EXPECT_THAT(scheduler_->WatchJob("0123456789abcdef", watcher),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(watcher->events(), IsEmpty());
}

TEST_F(SchedulerTest, WorkerWithoutIdIsRefused) {
  auto connection = std::make_shared<FakeConnection>();
  EXPECT_THAT(scheduler_->ConnectWorker(tl::v1::WorkerHello(), connection),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("worker_id")));
  EXPECT_THAT(connection->messages(), IsEmpty());
}

TEST_F(SchedulerTest, ListJobsChecksItsArguments) {
  Submit("a");
  Submit("b");
  ASSERT_OK_AND_ASSIGN(Scheduler::JobPage page, scheduler_->ListJobs({}, 0, ""));  // 0 means 50
  EXPECT_THAT(page.jobs, SizeIs(2));
  EXPECT_THAT(scheduler_->ListJobs({}, 5000, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
  EXPECT_THAT(scheduler_->ListJobs({}, -1, ""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(scheduler_->ListJobs({static_cast<Job::State>(99)}, 10, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("states")));
}

TEST_F(SchedulerTest, LostWorkersJobIsRequeuedAfterTheLeaseAndRunsElsewhere) {
  const std::string id = Submit("flowers");
  FakeWorker first = Connect("w1");
  Started(first, id, 1);
  auto watcher = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(id, watcher), IsOk());

  scheduler_->DisconnectWorker(first.session);
  // The job was orphaned no later than this instant.
  const absl::Time orphaned_by = absl::Now();
  EXPECT_EQ(Get(id).state(), Job::RUNNING);
  scheduler_->CheckLeases(orphaned_by + kLease / 2);
  EXPECT_EQ(Get(id).state(), Job::RUNNING);  // within the lease it waits for its worker

  // Connected after orphaned_by, so not silent at orphaned_by + kLease.
  FakeWorker second = Connect("w2");
  EXPECT_THAT(second.connection->assignments(), IsEmpty());
  scheduler_->CheckLeases(orphaned_by + kLease);

  // Back in the queue with its attempt count kept, then at once to the idle worker.
  const std::vector<JobEvent> events = watcher->events();
  ASSERT_THAT(watcher->described(), ElementsAre("job QUEUED", "job ASSIGNED", "job RUNNING",
                                                "job QUEUED", "job ASSIGNED"));
  EXPECT_EQ(events[3].job().attempt(), 1);
  EXPECT_EQ(events[3].job().failures(), 1);
  EXPECT_THAT(events[3].job().error(), HasSubstr("w1"));
  EXPECT_EQ(events[4].job().attempt(), 2);
  EXPECT_EQ(events[4].job().worker_id(), "w2");
  EXPECT_THAT(second.connection->assignments(), ElementsAre(AssignmentOf(id, 2)));
  EXPECT_FALSE(second.connection->closed());

  // Reports of the lost attempt no longer count.
  Started(second, id, 2);
  Finished(second, id, 1, JobFinished::FAILED);
  EXPECT_EQ(Stored(id).state(), Job::RUNNING);
  Finished(second, id, 2, JobFinished::SUCCEEDED);
  EXPECT_EQ(Stored(id).state(), Job::SUCCEEDED);
  EXPECT_EQ(Stored(id).attempt(), 2);
}

TEST_F(SchedulerTest, SilentWorkerIsDroppedAndItsJobRequeued) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  scheduler_->CheckLeases(absl::Now() + kLease / 2);
  EXPECT_FALSE(worker.connection->closed());

  scheduler_->CheckLeases(absl::Now() + 2 * kLease);
  EXPECT_TRUE(worker.connection->closed());
  // Its stream closing afterwards changes nothing more.
  scheduler_->DisconnectWorker(worker.session);
  const JobRecord stored = Stored(id);
  EXPECT_EQ(stored.state(), Job::QUEUED);
  EXPECT_EQ(stored.attempt(), 1);
  EXPECT_EQ(stored.worker_id(), "");
}

TEST_F(SchedulerTest, HeartbeatsKeepAWorker) {
  FakeWorker worker = Connect("w1");
  const absl::Time heard_by = absl::Now();
  Heartbeat(worker);
  scheduler_->CheckLeases(heard_by + kLease);
  EXPECT_FALSE(worker.connection->closed());
}

// The worker counts only what it hears from the scheduler as contact: every heartbeat gets an
// answer, or a job that outlives a lease would be stopped at the first break of the stream.
TEST_F(SchedulerTest, EveryHeartbeatIsAnswered) {
  FakeWorker worker = Connect("w1");
  EXPECT_EQ(worker.connection->heartbeats(), 0);
  Heartbeat(worker);
  Heartbeat(worker);
  EXPECT_EQ(worker.connection->heartbeats(), 2);
}

TEST_F(SchedulerTest, AClosedStreamSaysWhyItWasClosed) {
  FakeWorker silent = Connect("w1");
  FakeWorker old_stream = Connect("w2");
  FakeWorker new_stream = Connect("w2");
  EXPECT_THAT(old_stream.connection->close_reason(), HasSubstr("newer session of worker w2"));
  scheduler_->CheckLeases(absl::Now() + 2 * kLease);
  EXPECT_THAT(silent.connection->close_reason(), HasSubstr("within the lease"));

  FakeWorker draining = Connect("w3");
  scheduler_->BeginDrain();
  EXPECT_THAT(draining.connection->close_reason(), HasSubstr("shutting down"));
}

// A worker process that died and was started again under its id says in its hello that it
// holds nothing: the job went with the old process, so it is queued again at once, its failure
// counted as a lost lease's is, rather than after the lease.
TEST_F(SchedulerTest, WorkerComingBackWithoutItsJobHasItQueuedAgainAtOnce) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  auto watcher = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(id, watcher), IsOk());
  scheduler_->DisconnectWorker(worker.session);
  EXPECT_EQ(Get(id).state(), Job::RUNNING);
  // Another worker leaves it alone. (The same process back with slots does not:
  // AProcessKilledThenBackWithAnotherNumberOfSlotsGetsItsJobsRequeued.)
  FakeWorker other = Connect("w2");
  EXPECT_EQ(Get(id).state(), Job::RUNNING);
  EXPECT_THAT(other.connection->assignments(), IsEmpty());
  scheduler_->DisconnectWorker(other.session);

  FakeWorker restarted = Connect("w1");
  ASSERT_THAT(watcher->described(), ElementsAre("job QUEUED", "job ASSIGNED", "job RUNNING",
                                                "job QUEUED", "job ASSIGNED"));
  const JobEvent requeued = watcher->events()[3];
  EXPECT_EQ(requeued.job().failures(), 1);
  EXPECT_THAT(requeued.job().error(), HasSubstr("worker w1 came back without the job"));
  // Then to the idle worker, the restarted one, as attempt 2.
  EXPECT_THAT(restarted.connection->assignments(), ElementsAre(AssignmentOf(id, 2)));
  EXPECT_THAT(restarted.connection->cancels(), IsEmpty());
}

// A worker that comes back holding another attempt (here one the scheduler no longer knows)
// does not run the job its lease was given for either.
TEST_F(SchedulerTest, WorkerComingBackWithAnotherJobHasItsLeasedOneQueuedAgain) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  scheduler_->DisconnectWorker(worker.session);
  FakeWorker back = Connect("w1", {"cpu"}, "gone-job", 3);
  EXPECT_EQ(Stored(id).failures(), 1);
  ASSERT_THAT(back.connection->cancels(), SizeIs(1));
  EXPECT_EQ(back.connection->cancels()[0].job_id(), "gone-job");
}

// After a scheduler restart the leased jobs wait for their workers; one that comes back holding
// nothing gives its job up at once.
TEST_F(SchedulerTest, AfterARestartAWorkerComingBackEmptyHasItsJobQueuedAgainAtOnce) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  Restart(DefaultOptions());
  EXPECT_EQ(Get(id).state(), Job::RUNNING);
  FakeWorker back = Connect("w1");
  EXPECT_THAT(back.connection->assignments(), ElementsAre(AssignmentOf(id, 2)));
  EXPECT_EQ(Stored(id).failures(), 1);
}

TEST_F(SchedulerTest, WorkerReconnectingWithinTheLeaseKeepsItsJob) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  scheduler_->DisconnectWorker(worker.session);
  const absl::Time orphaned_by = absl::Now();

  FakeWorker back = Connect("w1", {"cpu"}, id, 1);
  EXPECT_THAT(back.connection->cancels(), IsEmpty());
  EXPECT_THAT(back.connection->assignments(), IsEmpty());  // it already has the job
  scheduler_->CheckLeases(orphaned_by + kLease);
  EXPECT_EQ(Stored(id).state(), Job::RUNNING);
  EXPECT_EQ(Stored(id).attempt(), 1);
  EXPECT_EQ(Stored(id).worker_id(), "w1");

  EpochDone(back, id, 1, 1, 0.25);
  Finished(back, id, 1, JobFinished::SUCCEEDED);
  EXPECT_EQ(Stored(id).state(), Job::SUCCEEDED);
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::EpochMetrics> epochs, store_->GetEpochs(id));
  EXPECT_THAT(epochs, SizeIs(1));
}

// A worker that comes back need not send the epochs the scheduler has: the Welcome says which.
TEST_F(SchedulerTest, TheWelcomeSaysWhichEpochsOfTheHeldJobAreStored) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  for (int epoch = 1; epoch <= 3; ++epoch) EpochDone(worker, id, 1, epoch, 1.0 / epoch);
  scheduler_->DisconnectWorker(worker.session);
  FakeWorker back = Connect("w1", {"cpu"}, id, 1);
  ASSERT_TRUE(back.connection->messages().at(0).has_welcome());
  EXPECT_EQ(back.connection->messages()[0].welcome().held_job_epoch(), 3);
  EXPECT_TRUE(back.connection->messages()[0].welcome().answers_heartbeats());
  FakeWorker fresh = Connect("w2");
  EXPECT_EQ(fresh.connection->messages().at(0).welcome().held_job_epoch(), 0);
}

TEST_F(SchedulerTest, WorkerReconnectingBeforeItsOldStreamEndsKeepsItsJob) {
  const std::string id = Submit("flowers");
  FakeWorker old_stream = Connect("w1");
  Started(old_stream, id, 1);

  // The new stream arrives before the transport noticed the old one is gone.
  FakeWorker new_stream = Connect("w1", {"cpu"}, id, 1);
  EXPECT_THAT(new_stream.connection->cancels(), IsEmpty());
  EXPECT_TRUE(old_stream.connection->closed());
  Finished(old_stream, id, 1, JobFinished::FAILED, "from the dead stream");
  EXPECT_EQ(Stored(id).state(), Job::RUNNING);

  // The old stream's end must not orphan the job the new stream holds.
  scheduler_->DisconnectWorker(old_stream.session);
  const absl::Time disconnected_by = absl::Now();
  Heartbeat(new_stream);
  scheduler_->CheckLeases(disconnected_by + kLease);
  EXPECT_EQ(Stored(id).state(), Job::RUNNING);
  Finished(new_stream, id, 1, JobFinished::SUCCEEDED);
  EXPECT_EQ(Stored(id).state(), Job::SUCCEEDED);
}

TEST_F(SchedulerTest, AWorkersOlderStreamIsClosedAndGetsNoAssignments) {
  FakeWorker old_stream = Connect("w1");
  FakeWorker new_stream = Connect("w1");
  EXPECT_TRUE(old_stream.connection->closed());
  const std::string id = Submit("flowers");
  EXPECT_THAT(old_stream.connection->assignments(), IsEmpty());
  ASSERT_EQ(new_stream.connection->assignments().size(), 1u);
  EXPECT_EQ(new_stream.connection->assignments()[0].job_id(), id);
  // The old stream's teardown changes nothing.
  scheduler_->DisconnectWorker(old_stream.session);
  EXPECT_EQ(Stored(id).state(), Job::ASSIGNED);
}

TEST_F(SchedulerTest, RefusedAssignmentIsRequeuedWithoutUsingAnAttempt) {
  FakeWorker busy = Connect("busy");
  const std::string id = Submit("flowers");
  ASSERT_EQ(busy.connection->assignments().size(), 1u);
  Finished(busy, id, 1, JobFinished::REFUSED, "still busy");
  JobRecord job = Stored(id);
  EXPECT_EQ(job.state(), Job::QUEUED);
  EXPECT_EQ(job.attempt(), 0);
  // The refusing worker gets nothing more until it reports an end...
  EXPECT_EQ(busy.connection->assignments().size(), 1u);
  // ...while another worker takes the job as its first attempt.
  FakeWorker idle = Connect("idle");
  ASSERT_EQ(idle.connection->assignments().size(), 1u);
  EXPECT_EQ(idle.connection->assignments()[0].attempt(), 1);
  // Once the refusing worker reports the end of what it ran, it is free.
  const std::string next = Submit("next");
  EXPECT_EQ(busy.connection->assignments().size(), 1u);
  Finished(busy, "an-older-job", 7, JobFinished::CANCELLED);
  ASSERT_EQ(busy.connection->assignments().size(), 2u);
  EXPECT_EQ(busy.connection->assignments()[1].job_id(), next);
}

TEST_F(SchedulerTest, ReclaimedJobWithACancelRequestIsToldToCancelAgain) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  ASSERT_THAT(scheduler_->CancelJob(id, "stop it"), IsOk());
  // The stream (and perhaps the cancel on it) breaks; the worker comes back.
  FakeWorker back = Connect("w1", {"cpu"}, id, 1);
  ASSERT_EQ(back.connection->cancels().size(), 1u);
  EXPECT_EQ(back.connection->cancels()[0].job_id(), id);
  EXPECT_EQ(back.connection->cancels()[0].reason(), "stop it");
  Finished(back, id, 1, JobFinished::CANCELLED);
  EXPECT_EQ(Stored(id).state(), Job::CANCELLED);
}

TEST_F(SchedulerTest, WorkerReconnectingAfterARequeueReclaimsTheJobNotYetReassigned) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  scheduler_->DisconnectWorker(worker.session);
  scheduler_->CheckLeases(absl::Now() + kLease);
  ASSERT_EQ(Stored(id).state(), Job::QUEUED);

  // Nobody took it meanwhile, and the worker still runs that attempt: it may go on.
  FakeWorker back = Connect("w1", {"cpu"}, id, 1);
  EXPECT_THAT(back.connection->cancels(), IsEmpty());
  EXPECT_EQ(Stored(id).state(), Job::RUNNING);
  EXPECT_EQ(Stored(id).worker_id(), "w1");
  EXPECT_EQ(Stored(id).attempt(), 1);
  EXPECT_THAT(Metric("tl_jobs", {{"state", "queued"}}), Optional(0.0));
  // It left the queue: another worker does not get it too.
  FakeWorker other = Connect("w2");
  EXPECT_THAT(other.connection->assignments(), IsEmpty());
  Finished(back, id, 1, JobFinished::SUCCEEDED);
  EXPECT_EQ(Stored(id).state(), Job::SUCCEEDED);
}

TEST_F(SchedulerTest, WorkerReconnectingWithAReassignedJobIsToldToCancelIt) {
  const std::string id = Submit("flowers");
  FakeWorker first = Connect("w1");
  Started(first, id, 1);
  scheduler_->DisconnectWorker(first.session);
  scheduler_->CheckLeases(absl::Now() + kLease);
  FakeWorker second = Connect("w2");
  ASSERT_THAT(second.connection->assignments(), SizeIs(1));
  EXPECT_EQ(second.connection->assignments()[0].attempt(), 2);

  FakeWorker back = Connect("w1", {"cpu"}, id, 1);
  const std::vector<CancelAssignment> cancels = back.connection->cancels();
  ASSERT_THAT(cancels, SizeIs(1));
  EXPECT_EQ(cancels[0].job_id(), id);
  const JobRecord stored = Stored(id);
  EXPECT_EQ(stored.worker_id(), "w2");
  EXPECT_EQ(stored.attempt(), 2);
  EXPECT_EQ(stored.state(), Job::ASSIGNED);
}

TEST_F(SchedulerTest, WorkerReconnectingWithAnEndedJobIsToldToCancelIt) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  scheduler_->DisconnectWorker(worker.session);
  // Nobody runs it now, so the cancel ends it at once.
  ASSERT_OK_AND_ASSIGN(Job job, scheduler_->CancelJob(id, "stop"));
  EXPECT_EQ(job.state(), Job::CANCELLED);

  FakeWorker back = Connect("w1", {"cpu"}, id, 1);
  ASSERT_THAT(back.connection->cancels(), SizeIs(1));
  EXPECT_EQ(Stored(id).state(), Job::CANCELLED);
}

TEST_F(SchedulerTest, JobGivesUpAfterMaxAttempts) {
  SchedulerOptions options = DefaultOptions();
  options.max_attempts = 2;
  Restart(options);
  const std::string id = Submit("flowers");
  auto watcher = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(id, watcher), IsOk());

  FakeWorker first = Connect("w1");
  scheduler_->CheckLeases(absl::Now() + 2 * kLease);
  EXPECT_EQ(Stored(id).state(), Job::QUEUED);
  FakeWorker second = Connect("w2");
  ASSERT_THAT(second.connection->assignments(), SizeIs(1));
  EXPECT_EQ(second.connection->assignments()[0].attempt(), 2);
  scheduler_->CheckLeases(absl::Now() + 2 * kLease);

  const JobRecord stored = Stored(id);
  EXPECT_EQ(stored.state(), Job::FAILED);
  EXPECT_THAT(stored.error(), HasSubstr("gave up after 2 failed attempts"));
  EXPECT_TRUE(stored.has_end_time());
  EXPECT_EQ(watcher->finish_count(), 1);
  EXPECT_THAT(Metric("tl_jobs_finished_total", {{"outcome", "failed"}}), Optional(1.0));
}

TEST_F(SchedulerTest, CancelRequestedJobWhoseWorkerIsLostOnTheLastAttemptEndsCancelled) {
  SchedulerOptions options = DefaultOptions();
  options.max_attempts = 1;
  Restart(options);
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  ASSERT_THAT(scheduler_->CancelJob(id, "stop"), IsOk());

  // The worker falls silent instead of confirming; the user asked for a cancel, so that is
  // what the job ends as, whatever attempt it was on.
  scheduler_->CheckLeases(absl::Now() + 2 * kLease);
  const JobRecord stored = Stored(id);
  EXPECT_EQ(stored.state(), Job::CANCELLED);
  EXPECT_EQ(stored.error(), "stop");
}

TEST_F(SchedulerTest, RestartDispatchesJobsQueuedInTheStore) {
  const std::string first = Submit("first");
  const std::string second = Submit("second");
  Restart(DefaultOptions());

  EXPECT_EQ(Get(first).state(), Job::QUEUED);
  EXPECT_THAT(Metric("tl_jobs", {{"state", "queued"}}), Optional(2.0));
  FakeWorker worker = Connect("w1");
  EXPECT_THAT(worker.connection->assignments(), ElementsAre(AssignmentOf(first, 1)));
  Finished(worker, first, 1, JobFinished::SUCCEEDED);
  ASSERT_THAT(worker.connection->assignments(), SizeIs(2));
  EXPECT_EQ(worker.connection->assignments()[1].job_id(), second);
}

TEST_F(SchedulerTest, RestartRequeuesLeasedJobsAfterTheLeaseUnlessReclaimed) {
  const std::string reclaimed = Submit("reclaimed");
  const std::string abandoned = Submit("abandoned");
  FakeWorker a = Connect("wa");
  FakeWorker b = Connect("wb");
  Started(a, reclaimed, 1);
  Started(b, abandoned, 1);
  ASSERT_EQ(Stored(reclaimed).worker_id(), "wa");
  ASSERT_EQ(Stored(abandoned).worker_id(), "wb");

  Restart(DefaultOptions());
  const absl::Time restarted_by = absl::Now();
  // A restart alone requeues nothing: the workers get a lease to come back.
  EXPECT_EQ(Get(abandoned).state(), Job::RUNNING);
  FakeWorker a_back = Connect("wa", {"cpu"}, reclaimed, 1);
  EXPECT_THAT(a_back.connection->cancels(), IsEmpty());
  scheduler_->CheckLeases(restarted_by + kLease);

  EXPECT_EQ(Stored(reclaimed).state(), Job::RUNNING);
  EXPECT_EQ(Stored(reclaimed).worker_id(), "wa");
  const JobRecord requeued = Stored(abandoned);
  EXPECT_EQ(requeued.state(), Job::QUEUED);
  EXPECT_EQ(requeued.attempt(), 1);

  FakeWorker c = Connect("wc");
  EXPECT_THAT(c.connection->assignments(), ElementsAre(AssignmentOf(abandoned, 2)));
  Finished(a_back, reclaimed, 1, JobFinished::SUCCEEDED);
  EXPECT_EQ(Stored(reclaimed).state(), Job::SUCCEEDED);
}

TEST_F(SchedulerTest, CudaJobWaitsForACudaWorker) {
  const std::string gpu_job = Submit("gpu", 10, "cuda");
  const std::string cpu_job = Submit("cpu", 0, "cpu");
  const std::string any_job = Submit("any", 0, "");
  FakeWorker cpu = Connect("cpu-worker", {"cpu"});
  // The higher-priority cuda job is skipped, not blocking the queue.
  ASSERT_THAT(cpu.connection->assignments(), SizeIs(1));
  EXPECT_EQ(cpu.connection->assignments()[0].job_id(), cpu_job);
  Finished(cpu, cpu_job, 1, JobFinished::SUCCEEDED);
  ASSERT_THAT(cpu.connection->assignments(), SizeIs(2));
  EXPECT_EQ(cpu.connection->assignments()[1].job_id(), any_job);
  Finished(cpu, any_job, 1, JobFinished::SUCCEEDED);
  EXPECT_THAT(cpu.connection->assignments(), SizeIs(2));
  EXPECT_EQ(Stored(gpu_job).state(), Job::QUEUED);

  FakeWorker gpu = Connect("gpu-worker", {"cpu", "cuda"});
  ASSERT_THAT(gpu.connection->assignments(), SizeIs(1));
  EXPECT_EQ(gpu.connection->assignments()[0].job_id(), gpu_job);
}

TEST_F(SchedulerTest, WatchOfEndedJobDeliversJobAndEpochsThenFinishes) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  EpochDone(worker, id, 1, 1, 0.9);
  EpochDone(worker, id, 1, 2, 0.4);
  Finished(worker, id, 1, JobFinished::SUCCEEDED);

  auto watcher = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(id, watcher), IsOk());
  EXPECT_THAT(watcher->described(),
              ElementsAre("job QUEUED", "job ASSIGNED", "job RUNNING", "epoch 1", "job RUNNING",
                          "epoch 2", "job RUNNING", "job SUCCEEDED"));
  EXPECT_DOUBLE_EQ(watcher->events()[5].epoch().train_loss(), 0.4);
  EXPECT_EQ(watcher->finish_count(), 1);
}

TEST_F(SchedulerTest, WatchOfRunningJobReplaysStoredEpochsFirst) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  EpochDone(worker, id, 1, 1, 0.9);
  auto watcher = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(id, watcher), IsOk());
  EXPECT_THAT(watcher->described(), ElementsAre("job QUEUED", "job ASSIGNED", "job RUNNING",
                                                "epoch 1", "job RUNNING"));
  EXPECT_EQ(watcher->finish_count(), 0);
}

TEST_F(SchedulerTest, WatcherThatStopsAcceptingIsDropped) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  auto gone = std::make_shared<FakeWatcher>(/*accepting=*/false);
  auto staying = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(id, gone), IsOk());
  ASSERT_THAT(scheduler_->WatchJob(id, staying), IsOk());

  Started(worker, id, 1);  // the first refused delivery drops it
  Progressed(worker, id, 1, 1, 4);
  Finished(worker, id, 1, JobFinished::SUCCEEDED);

  EXPECT_THAT(gone->described(), ElementsAre("job QUEUED"));
  EXPECT_EQ(gone->finish_count(), 0);
  EXPECT_THAT(staying->described(), ElementsAre("job QUEUED", "job ASSIGNED", "job RUNNING",
                                                "progress 1/4", "job SUCCEEDED"));
  EXPECT_EQ(staying->finish_count(), 1);
}

TEST_F(SchedulerTest, MetricsFollowJobsAndDropPerJobSeriesWhenTheyEnd) {
  EXPECT_THAT(Metric("tl_jobs", {{"state", "queued"}}), Optional(0.0));
  EXPECT_THAT(Metric("tl_jobs_submitted_total"), Optional(0.0));
  const std::string first = Submit("first");
  const std::string second = Submit("second");
  EXPECT_THAT(Metric("tl_jobs", {{"state", "queued"}}), Optional(2.0));
  EXPECT_THAT(Metric("tl_queue_depth"), Optional(2.0));
  EXPECT_THAT(Metric("tl_jobs_submitted_total"), Optional(2.0));

  FakeWorker worker = Connect("w1");
  EXPECT_THAT(Metric("tl_jobs", {{"state", "queued"}}), Optional(1.0));
  EXPECT_THAT(Metric("tl_jobs", {{"state", "assigned"}}), Optional(1.0));
  EXPECT_THAT(Metric("tl_workers_connected"), Optional(1.0));
  EXPECT_THAT(Metric("tl_workers_busy"), Optional(1.0));

  Started(worker, first, 1);
  EXPECT_THAT(Metric("tl_jobs", {{"state", "assigned"}}), Optional(0.0));
  EXPECT_THAT(Metric("tl_jobs", {{"state", "running"}}), Optional(1.0));
  EpochDone(worker, first, 1, 3, 0.5);
  Progressed(worker, first, 1, 5, 10);
  EXPECT_THAT(Metric("tl_job_epoch", {{"job_id", first}}), Optional(3.0));
  EXPECT_THAT(Metric("tl_job_train_loss", {{"job_id", first}}), Optional(0.5));
  EXPECT_THAT(Metric("tl_job_epoch_progress_ratio", {{"job_id", first}}), Optional(0.5));

  Finished(worker, first, 1, JobFinished::SUCCEEDED);
  EXPECT_FALSE(Metric("tl_job_epoch", {{"job_id", first}}).has_value());
  EXPECT_FALSE(Metric("tl_job_epoch_progress_ratio", {{"job_id", first}}).has_value());
  EXPECT_THAT(Metric("tl_jobs", {{"state", "succeeded"}}), Optional(1.0));
  EXPECT_THAT(Metric("tl_jobs_finished_total", {{"outcome", "succeeded"}}), Optional(1.0));
  // The second job went to the freed worker.
  EXPECT_THAT(Metric("tl_jobs", {{"state", "queued"}}), Optional(0.0));
  EXPECT_THAT(Metric("tl_jobs", {{"state", "assigned"}}), Optional(1.0));

  scheduler_->DisconnectWorker(worker.session);
  EXPECT_THAT(Metric("tl_workers_connected"), Optional(0.0));
  EXPECT_THAT(Metric("tl_workers_busy"), Optional(0.0));
  EXPECT_EQ(Stored(second).state(), Job::ASSIGNED);  // orphaned, waiting for the lease
}

// The one test that lets the scheduler's own lease thread act, with a short lease: a worker
// that never heartbeats is dropped and its job requeued without anyone calling CheckLeases.
TEST_F(SchedulerTest, LeaseThreadExpiresSilentWorkers) {
  SchedulerOptions options = DefaultOptions();
  options.lease_timeout = absl::Milliseconds(200);
  Restart(options);
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  ASSERT_THAT(worker.connection->assignments(), SizeIs(1));

  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!(worker.connection->closed() && Get(id).state() == Job::QUEUED) &&
         absl::Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(worker.connection->closed());
  EXPECT_EQ(Stored(id).state(), Job::QUEUED);
  EXPECT_EQ(Stored(id).attempt(), 1);
}

}  // namespace
}  // namespace tl::server

namespace tl::server {
namespace {

// Records what one GetJobLogs call receives.
class FakeFollower final : public LogFollower {
 public:
  bool Deliver(const tl::v1::LogLine& line) override {
    std::lock_guard<std::mutex> lock(mutex_);
    lines_.push_back(line);
    return true;
  }
  void Finish() override {
    std::lock_guard<std::mutex> lock(mutex_);
    ++finish_count_;
  }
  void Interrupt() override {
    std::lock_guard<std::mutex> lock(mutex_);
    ++interrupt_count_;
  }
  int interrupt_count() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return interrupt_count_;
  }
  std::vector<std::string> texts() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> result;
    for (const tl::v1::LogLine& line : lines_) result.push_back(line.text());
    return result;
  }
  std::vector<tl::v1::LogLine> lines() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return lines_;
  }
  int finish_count() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return finish_count_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<tl::v1::LogLine> lines_;
  int finish_count_ = 0;
  int interrupt_count_ = 0;
};

class SchedulerControlTest : public SchedulerTest {
 protected:
  void Log(const FakeWorker& worker, const std::string& job_id, int attempt,
           const std::vector<std::string>& texts) {
    WorkerMessage message;
    message.mutable_log()->set_job_id(job_id);
    message.mutable_log()->set_attempt(attempt);
    for (const std::string& text : texts) message.mutable_log()->add_lines()->set_text(text);
    scheduler_->HandleWorkerMessage(worker.session, message);
  }
  void FinishedRetryable(const FakeWorker& worker, const std::string& job_id, int attempt,
                         const std::string& error) {
    WorkerMessage message;
    JobFinished& finished = *message.mutable_finished();
    finished.set_job_id(job_id);
    finished.set_attempt(attempt);
    finished.set_outcome(JobFinished::FAILED);
    finished.set_error(error);
    finished.set_retryable(true);
    scheduler_->HandleWorkerMessage(worker.session, message);
  }
  static std::vector<tl::v1::PauseAssignment> Pauses(const FakeWorker& worker) {
    std::vector<tl::v1::PauseAssignment> result;
    for (const SchedulerMessage& message : worker.connection->messages()) {
      if (message.has_pause()) result.push_back(message.pause());
    }
    return result;
  }
  FakeWorker ConnectGpus(const std::string& worker_id, const std::vector<int64_t>& memory) {
    tl::v1::WorkerHello hello;
    hello.set_worker_id(worker_id);
    hello.add_devices()->set_kind("cpu");
    for (size_t i = 0; i < memory.size(); ++i) {
      tl::v1::Device& gpu = *hello.add_devices();
      gpu.set_kind("cuda");
      gpu.set_index(static_cast<int>(i));
      gpu.set_memory_bytes(memory[i]);
    }
    return ConnectHello(hello);
  }
};

TEST_F(SchedulerControlTest, RepeatedRequestIdReturnsTheFirstJob) {
  ASSERT_OK_AND_ASSIGN(Job first, scheduler_->SubmitJob(Spec("flowers"), "alice", "req-1"));
  ASSERT_OK_AND_ASSIGN(Job again, scheduler_->SubmitJob(Spec("flowers"), "alice", "req-1"));
  EXPECT_EQ(again.id(), first.id());
  EXPECT_EQ(again.request_id(), "req-1");
  // Another owner's key space is separate; another key makes another job.
  ASSERT_OK_AND_ASSIGN(Job bobs, scheduler_->SubmitJob(Spec("flowers"), "bob", "req-1"));
  EXPECT_NE(bobs.id(), first.id());
  ASSERT_OK_AND_ASSIGN(Job second, scheduler_->SubmitJob(Spec("flowers"), "alice", "req-2"));
  EXPECT_NE(second.id(), first.id());
  ASSERT_OK_AND_ASSIGN(JobStore::Page page, store_->ListJobs({}, 100, ""));
  EXPECT_THAT(page.jobs, SizeIs(3));
  // The same key with another spec is a client bug, not a retry.
  EXPECT_THAT(scheduler_->SubmitJob(Spec("tulips"), "alice", "req-1"),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(first.id())));
  // It survives a restart: the key is stored with the job.
  Restart(DefaultOptions());
  ASSERT_OK_AND_ASSIGN(Job after_restart,
                       scheduler_->SubmitJob(Spec("flowers"), "alice", "req-1"));
  EXPECT_EQ(after_restart.id(), first.id());
  EXPECT_THAT(scheduler_->SubmitJob(Spec("flowers"), "alice", std::string(129, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("request_id")));
}

// A repeat of a submit whose job has started (and holds in its spec what the
// worker sized from the data) is still the same submit.
TEST_F(SchedulerControlTest, ARepeatAfterTheDataSizedTheSpecReturnsTheFirstJob) {
  ASSERT_OK_AND_ASSIGN(Job first, scheduler_->SubmitJob(Spec("flowers"), "alice", "req-9"));
  FakeWorker worker = Connect("w1");
  WorkerMessage message;
  tl::v1::JobStarted& started = *message.mutable_started();
  started.set_job_id(first.id());
  started.set_attempt(1);
  started.mutable_data_sizing()->add_sized_fields("training.epochs");
  started.mutable_data_sizing()->set_epochs(40);
  scheduler_->HandleWorkerMessage(worker.session, message);
  ASSERT_EQ(Get(first.id()).spec().training().epochs(), 40);

  ASSERT_OK_AND_ASSIGN(Job again, scheduler_->SubmitJob(Spec("flowers"), "alice", "req-9"));
  EXPECT_EQ(again.id(), first.id());
  // Setting the sized field to another value is another spec.
  tl::v1::JobSpec other = Spec("flowers");
  other.mutable_training()->set_epochs(41);
  EXPECT_THAT(scheduler_->SubmitJob(other, "alice", "req-9"),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(first.id())));
}

TEST_F(SchedulerControlTest, WatchFromASequenceGetsOnlyWhatFollowsIt) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  EpochDone(worker, id, 1, 1, 0.9);  // events 4 (epoch) and 5 (job)
  auto all = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(id, all), IsOk());
  ASSERT_THAT(all->events(), SizeIs(5));

  // A client that saw up to 3 reconnects: it gets 4 and 5, then live events, once each.
  auto resumed = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(id, resumed, /*after_sequence=*/3), IsOk());
  EpochDone(worker, id, 1, 2, 0.5);
  Finished(worker, id, 1, JobFinished::SUCCEEDED);
  std::vector<int64_t> sequences;
  for (const JobEvent& event : resumed->events()) sequences.push_back(event.sequence());
  EXPECT_THAT(sequences, ElementsAre(4, 5, 6, 7, 8));
  EXPECT_THAT(resumed->described(),
              ElementsAre("epoch 1", "job RUNNING", "epoch 2", "job RUNNING", "job SUCCEEDED"));
  EXPECT_EQ(resumed->finish_count(), 1);

  // After the end, from the last sequence: nothing more, finished at once.
  auto late = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(id, late, 8), IsOk());
  EXPECT_THAT(late->events(), IsEmpty());
  EXPECT_EQ(late->finish_count(), 1);
  EXPECT_THAT(scheduler_->WatchJob(id, std::make_shared<FakeWatcher>(), -1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("after_sequence")));
}

// A watcher that asks for the events after a sequence the job has not reached yet gets no live
// event up to it either.
TEST_F(SchedulerControlTest, WatchFromAFutureSequenceSkipsLiveEventsUpToIt) {
  const std::string id = Submit("flowers");  // event 1
  auto ahead = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(id, ahead, /*after_sequence=*/4), IsOk());
  ASSERT_THAT(scheduler_->PauseJob(id), IsOk());   // 2
  ASSERT_THAT(scheduler_->ResumeJob(id), IsOk());  // 3
  ASSERT_THAT(scheduler_->PauseJob(id), IsOk());   // 4
  ASSERT_THAT(scheduler_->CancelJob(id, "done"), IsOk());  // 5
  std::vector<int64_t> sequences;
  for (const JobEvent& event : ahead->events()) sequences.push_back(event.sequence());
  EXPECT_THAT(sequences, ElementsAre(5));
  EXPECT_EQ(ahead->finish_count(), 1);
}

TEST_F(SchedulerControlTest, QueuedJobPausesAtOnceAndResumesInItsPlace) {
  const std::string first = Submit("first");
  const std::string second = Submit("second");
  ASSERT_OK_AND_ASSIGN(Job paused, scheduler_->PauseJob(first));
  EXPECT_EQ(paused.state(), Job::PAUSED);
  EXPECT_EQ(Stored(first).state(), Job::PAUSED);
  // A paused job is not dispatched.
  FakeWorker worker = Connect("w1");
  ASSERT_THAT(worker.connection->assignments(), SizeIs(1));
  EXPECT_EQ(worker.connection->assignments()[0].job_id(), second);
  EXPECT_THAT(scheduler_->ResumeJob(second),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("only a PAUSED job")));

  // It survives a restart paused, then resumes.
  Restart(DefaultOptions());
  EXPECT_EQ(Get(first).state(), Job::PAUSED);
  ASSERT_OK_AND_ASSIGN(Job resumed, scheduler_->ResumeJob(first));
  EXPECT_EQ(resumed.state(), Job::QUEUED);
  FakeWorker other = Connect("w2");
  ASSERT_THAT(other.connection->assignments(), SizeIs(1));
  EXPECT_EQ(other.connection->assignments()[0].job_id(), first);
}

TEST_F(SchedulerControlTest, RunningJobPausesAtItsEpochFreesItsWorkerAndResumes) {
  const std::string id = Submit("flowers");
  const std::string next = Submit("next");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  EpochDone(worker, id, 1, 1, 0.9);

  ASSERT_OK_AND_ASSIGN(Job requested, scheduler_->PauseJob(id));
  EXPECT_EQ(requested.state(), Job::RUNNING);
  EXPECT_TRUE(requested.pause_requested());
  ASSERT_THAT(Pauses(worker), SizeIs(1));
  EXPECT_EQ(Pauses(worker)[0].job_id(), id);

  Finished(worker, id, 1, JobFinished::PAUSED);
  const JobRecord paused = Stored(id);
  EXPECT_EQ(paused.state(), Job::PAUSED);
  EXPECT_FALSE(paused.pause_requested());
  EXPECT_EQ(paused.epoch(), 1);
  EXPECT_EQ(paused.failures(), 0);
  // The worker took the next job.
  ASSERT_THAT(worker.connection->assignments(), SizeIs(2));
  EXPECT_EQ(worker.connection->assignments()[1].job_id(), next);

  ASSERT_THAT(scheduler_->ResumeJob(id), IsOk());
  FakeWorker other = Connect("w2");
  ASSERT_THAT(other.connection->assignments(), SizeIs(1));
  EXPECT_EQ(other.connection->assignments()[0].job_id(), id);
  EXPECT_EQ(other.connection->assignments()[0].attempt(), 2);
}

// A worker stopped with SIGTERM hands its job back (RELEASED): queued again at once rather than
// after a lease, no failure counted, and nothing more for that session.
TEST_F(SchedulerControlTest, AReleasedJobIsQueuedAtOnceAndItsLeavingWorkerGetsNoOther) {
  const std::string id = Submit("flowers");
  const std::string next = Submit("next");
  FakeWorker leaving = Connect("w1");
  Started(leaving, id, 1);
  EpochDone(leaving, id, 1, 1, 0.9);

  Finished(leaving, id, 1, JobFinished::RELEASED);
  const JobRecord released = Stored(id);
  EXPECT_EQ(released.state(), Job::QUEUED);
  EXPECT_EQ(released.failures(), 0);
  EXPECT_EQ(released.epoch(), 1);
  EXPECT_THAT(released.error(), HasSubstr("worker w1 shut down"));
  EXPECT_THAT(leaving.connection->assignments(), SizeIs(1));  // neither job again

  FakeWorker other = Connect("w2");
  ASSERT_THAT(other.connection->assignments(), SizeIs(1));
  EXPECT_EQ(other.connection->assignments()[0].job_id(), id);  // first in the queue still
  EXPECT_EQ(other.connection->assignments()[0].attempt(), 2);
  EXPECT_EQ(Stored(next).state(), Job::QUEUED);
}

// A worker that says it is leaving gets nothing more, and an assignment already on its way to it
// goes back to the queue at once, its attempt unused.
TEST_F(SchedulerControlTest, ALeavingWorkersAssignmentInFlightIsQueuedAgainUnused) {
  const std::string id = Submit("flowers");
  FakeWorker leaving = Connect("w1");
  ASSERT_THAT(leaving.connection->assignments(), SizeIs(1));  // not yet started
  WorkerMessage message;
  message.mutable_leaving();
  scheduler_->HandleWorkerMessage(leaving.session, message);
  const JobRecord requeued = Stored(id);
  EXPECT_EQ(requeued.state(), Job::QUEUED);
  EXPECT_EQ(requeued.attempt(), 0);
  EXPECT_EQ(requeued.failures(), 0);
  EXPECT_THAT(leaving.connection->assignments(), SizeIs(1));

  FakeWorker other = Connect("w2");
  ASSERT_THAT(other.connection->assignments(), SizeIs(1));
  EXPECT_EQ(other.connection->assignments()[0].job_id(), id);
  EXPECT_EQ(other.connection->assignments()[0].attempt(), 1);
}

// A job its worker reports CANCELLED though nobody asked (a gang's rank stopped with a lost peer)
// goes back to the queue, a failure counted; a cancel that was asked for ends it.
TEST_F(SchedulerControlTest, ACancelNobodyAskedForRequeuesTheJob) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  Finished(worker, id, 1, JobFinished::CANCELLED, "stopped on request");
  // Queued again and placed at once, on the same free worker.
  ASSERT_THAT(worker.connection->assignments(), SizeIs(2));
  EXPECT_EQ(worker.connection->assignments()[1].attempt(), 2);
  const JobRecord again = Stored(id);
  EXPECT_EQ(again.state(), Job::ASSIGNED);
  EXPECT_EQ(again.failures(), 1);
  Started(worker, id, 2);
  ASSERT_THAT(scheduler_->CancelJob(id, "not needed"), IsOk());
  Finished(worker, id, 2, JobFinished::CANCELLED, "stopped on request");
  EXPECT_EQ(Stored(id).state(), Job::CANCELLED);
}

TEST_F(SchedulerControlTest, PausedJobCanBeCancelled) {
  const std::string id = Submit("flowers");
  ASSERT_THAT(scheduler_->PauseJob(id), IsOk());
  ASSERT_OK_AND_ASSIGN(Job cancelled, scheduler_->CancelJob(id, "not needed"));
  EXPECT_EQ(cancelled.state(), Job::CANCELLED);
}

TEST_F(SchedulerControlTest, PauseOfAJobWhoseWorkerIsLostPausesInsteadOfRequeuing) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  scheduler_->DisconnectWorker(worker.session);
  ASSERT_THAT(scheduler_->PauseJob(id), IsOk());
  scheduler_->CheckLeases(absl::Now() + 2 * kLease);
  EXPECT_EQ(Stored(id).state(), Job::PAUSED);
  FakeWorker other = Connect("w2");
  EXPECT_THAT(other.connection->assignments(), IsEmpty());
}

// Holding an older attempt of the job (its last result) is not holding the attempt it was given
// since, whose assignment went down with the old stream.
TEST_F(SchedulerControlTest, WorkerComingBackWithAnOlderAttemptHasTheNewerOneQueuedAgain) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  FinishedRetryable(worker, id, 1, "trainer crashed");
  ASSERT_EQ(Stored(id).attempt(), 2);  // given back to the same, free worker
  scheduler_->DisconnectWorker(worker.session);
  FakeWorker back = Connect("w1", {"cpu"}, id, 1);
  EXPECT_EQ(Stored(id).failures(), 2);
  EXPECT_THAT(back.connection->assignments(), ElementsAre(AssignmentOf(id, 3)));
}

TEST_F(SchedulerControlTest, RetryableFailureRequeuesAndCountsUntilTheLimit) {
  SchedulerOptions options = DefaultOptions();
  options.max_attempts = 2;
  Restart(options);
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  FinishedRetryable(worker, id, 1, "trainer crashed: std::bad_alloc");
  JobRecord job = Stored(id);
  // Requeued and, the worker being free again, assigned again at once.
  EXPECT_EQ(job.state(), Job::ASSIGNED);
  EXPECT_EQ(job.failures(), 1);
  EXPECT_EQ(job.attempt(), 2);
  ASSERT_THAT(worker.connection->assignments(), SizeIs(2));

  FinishedRetryable(worker, id, 2, "trainer crashed again");
  job = Stored(id);
  EXPECT_EQ(job.state(), Job::FAILED);
  EXPECT_THAT(job.error(), HasSubstr("trainer crashed again"));
  EXPECT_THAT(job.error(), HasSubstr("gave up after 2 failed attempts"));
}

TEST_F(SchedulerControlTest, UserErrorFailsAtOnce) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  Finished(worker, id, 1, JobFinished::FAILED, "loss became NaN at epoch 1, batch 3");
  const JobRecord job = Stored(id);
  EXPECT_EQ(job.state(), Job::FAILED);
  EXPECT_EQ(job.attempt(), 1);
  EXPECT_EQ(job.error(), "loss became NaN at epoch 1, batch 3");
}

TEST_F(SchedulerControlTest, GpuRequestsMatchCountAndMemoryAndSayWhyTheyWait) {
  JobSpec spec = Spec("big");
  spec.mutable_resources()->set_device("cuda");
  spec.mutable_resources()->set_gpu_count(2);
  spec.mutable_resources()->set_min_gpu_memory_bytes(int64_t{40} << 30);
  ASSERT_OK_AND_ASSIGN(Job big, scheduler_->SubmitJob(spec, "alice"));
  EXPECT_EQ(Get(big.id()).pending_reason(), "no worker is connected");

  FakeWorker cpu = Connect("cpu-only");
  FakeWorker one_gpu = ConnectGpus("one", {int64_t{80} << 30});
  FakeWorker small_gpus = ConnectGpus("small", {int64_t{16} << 30, int64_t{16} << 30});
  EXPECT_THAT(cpu.connection->assignments(), IsEmpty());
  EXPECT_THAT(one_gpu.connection->assignments(), IsEmpty());
  EXPECT_THAT(small_gpus.connection->assignments(), IsEmpty());
  const Job waiting = Get(big.id());
  EXPECT_EQ(waiting.state(), Job::QUEUED);
  EXPECT_THAT(waiting.pending_reason(),
              HasSubstr("no connected worker offers 2 CUDA device(s) with at least 40960 MiB"));

  FakeWorker fits = ConnectGpus("fits", {int64_t{80} << 30, int64_t{80} << 30});
  ASSERT_THAT(fits.connection->assignments(), SizeIs(1));
  EXPECT_EQ(fits.connection->assignments()[0].job_id(), big.id());
}

TEST_F(SchedulerControlTest, OwnerRunningLimitHoldsBackOnlyThatOwner) {
  SchedulerOptions options = DefaultOptions();
  options.max_running_per_owner = 1;
  Restart(options);
  const std::string alice_first = Submit("a1");
  const std::string alice_second = Submit("a2");
  ASSERT_OK_AND_ASSIGN(Job bobs, scheduler_->SubmitJob(Spec("b1"), "bob"));
  FakeWorker w1 = Connect("w1");
  FakeWorker w2 = Connect("w2");
  ASSERT_THAT(w1.connection->assignments(), SizeIs(1));
  EXPECT_EQ(w1.connection->assignments()[0].job_id(), alice_first);
  // w2 skips alice's second job (her limit) and takes bob's, submitted later.
  ASSERT_THAT(w2.connection->assignments(), SizeIs(1));
  EXPECT_EQ(w2.connection->assignments()[0].job_id(), bobs.id());
  EXPECT_THAT(Get(alice_second).pending_reason(), HasSubstr("owner alice already runs 1 jobs"));

  Finished(w1, alice_first, 1, JobFinished::SUCCEEDED);
  ASSERT_THAT(w1.connection->assignments(), SizeIs(2));
  EXPECT_EQ(w1.connection->assignments()[1].job_id(), alice_second);
}

TEST_F(SchedulerControlTest, OwnerQueuedLimitRefusesWithResourceExhausted) {
  SchedulerOptions options = DefaultOptions();
  options.max_queued_per_owner = 2;
  Restart(options);
  Submit("a1");
  const std::string second = Submit("a2");
  EXPECT_THAT(scheduler_->SubmitJob(Spec("a3"), "alice"),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("owner alice")));
  EXPECT_THAT(scheduler_->SubmitJob(Spec("b1"), "bob"), IsOk());
  // A job that leaves the queue makes room.
  ASSERT_THAT(scheduler_->CancelJob(second, ""), IsOk());
  EXPECT_THAT(scheduler_->SubmitJob(Spec("a3"), "alice"), IsOk());
}

TEST_F(SchedulerControlTest, UsersSeeAndChangeOnlyTheirOwnJobs) {
  const std::string alices = Submit("flowers");
  ASSERT_OK_AND_ASSIGN(Job bobs, scheduler_->SubmitJob(Spec("b"), "bob"));
  const Principal alice{"alice", Role::kUser};
  const Principal admin{"ops", Role::kAdmin};
  EXPECT_THAT(scheduler_->GetJob(alices, alice), IsOk());
  // Another owner's job answers as a job that does not exist, so that ids cannot be probed.
  const absl::Status missing = scheduler_->GetJob("0123456789abcdef", alice).status();
  const absl::Status others = scheduler_->GetJob(bobs.id(), alice).status();
  EXPECT_THAT(others, StatusIs(absl::StatusCode::kNotFound, HasSubstr(bobs.id())));
  EXPECT_EQ(others.code(), missing.code());
  EXPECT_EQ(absl::StrReplaceAll(others.message(), {{bobs.id(), "ID"}}),
            absl::StrReplaceAll(missing.message(), {{"0123456789abcdef", "ID"}}));
  EXPECT_THAT(scheduler_->CancelJob(bobs.id(), "", alice),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(scheduler_->PauseJob(bobs.id(), alice), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(scheduler_->ResumeJob(bobs.id(), alice), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(scheduler_->WatchJob(bobs.id(), std::make_shared<FakeWatcher>(), 0, alice),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(Stored(bobs.id()).state(), Job::QUEUED);

  ASSERT_OK_AND_ASSIGN(Scheduler::JobPage mine, scheduler_->ListJobs({}, 50, "", "", alice));
  ASSERT_THAT(mine.jobs, SizeIs(1));
  EXPECT_EQ(mine.jobs[0].id(), alices);
  EXPECT_THAT(scheduler_->ListJobs({}, 50, "", "bob", alice),
              StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_OK_AND_ASSIGN(Scheduler::JobPage all, scheduler_->ListJobs({}, 50, "", "", admin));
  EXPECT_THAT(all.jobs, SizeIs(2));
  ASSERT_OK_AND_ASSIGN(Scheduler::JobPage bobs_only, scheduler_->ListJobs({}, 50, "", "bob", admin));
  ASSERT_THAT(bobs_only.jobs, SizeIs(1));
  EXPECT_THAT(scheduler_->CancelJob(bobs.id(), "", admin), IsOk());
}

TEST_F(SchedulerControlTest, AUserStartsOnlyFromJobsItOwnsOrThatAreSharedWithIt) {
  const Principal alice{"alice", Role::kUser, {}};
  const Principal carol{"carol", Role::kUser, {}};
  const Principal admin{"ops", Role::kAdmin, {}};
  FakeWorker worker = Connect("w1");
  auto finish_one = [&](const std::string& owner, const std::vector<std::string>& share_with) {
    JobSpec spec = Spec(owner + "-model");
    for (const std::string& name : share_with) spec.add_share_with(name);
    absl::StatusOr<Job> job = scheduler_->SubmitJob(spec, owner);
    EXPECT_THAT(job, IsOk());
    const std::string id = job.value_or(Job()).id();
    for (const std::string& file : {"backbone.pt", "model.pt"}) {
      WriteFile(base_ / "artifacts" / id / file, "torchscript");
    }
    WriteFile(base_ / "artifacts" / id / "backbone.json", R"({"format": "tl.backbone.v1"})");
    WriteFile(base_ / "artifacts" / id / "model.json", "{}");
    Started(worker, id, 1);
    Finished(worker, id, 1, JobFinished::SUCCEEDED);
    EXPECT_EQ(Stored(id).state(), Job::SUCCEEDED);
    return id;
  };
  const std::string bobs = finish_one("bob", {});
  const std::string shared_with_alice = finish_one("bob", {"alice"});
  const std::string shared_with_all = finish_one("dave", {"*"});

  auto from_job = [](const std::string& id) {
    JobSpec spec = Spec("mine");
    spec.mutable_backbone()->set_from_job(id);
    return spec;
  };
  auto evaluate = [](const std::string& from_job, const std::string& model_path) {
    JobSpec spec = Spec("eval");
    spec.clear_backbone();
    if (!from_job.empty()) spec.mutable_evaluate()->set_from_job(from_job);
    if (!model_path.empty()) spec.mutable_evaluate()->set_model_path(model_path);
    return spec;
  };
  // Another's unshared job: denied, and answered exactly as a job that does not exist.
  const absl::Status others = scheduler_->SubmitJob(from_job(bobs), "alice", "", alice).status();
  const absl::Status missing =
      scheduler_->SubmitJob(from_job("0123456789abcdef"), "alice", "", alice).status();
  EXPECT_THAT(others, StatusIs(absl::StatusCode::kPermissionDenied,
                               HasSubstr("backbone.from_job")));
  EXPECT_EQ(missing.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(absl::StrReplaceAll(others.message(), {{bobs, "ID"}}),
            absl::StrReplaceAll(missing.message(), {{"0123456789abcdef", "ID"}}));
  EXPECT_THAT(scheduler_->SubmitJob(evaluate(bobs, ""), "alice", "", alice),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("evaluate.from_job")));
  EXPECT_THAT(scheduler_->SubmitJob(evaluate("", bobs + "/model.pt"), "alice", "", alice),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("evaluate.model_path")));
  EXPECT_THAT(scheduler_->SubmitJob(evaluate("", "./" + bobs + "/model.pt"), "alice", "", alice),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(scheduler_->SubmitJob(evaluate("", "../artifacts/" + bobs + "/model.pt"), "alice",
                                    "", alice),
              Not(IsOk()));

  // Shared by name or with everyone; an admin uses any job; the owner its own.
  EXPECT_THAT(scheduler_->SubmitJob(from_job(shared_with_alice), "alice", "", alice), IsOk());
  EXPECT_THAT(scheduler_->SubmitJob(evaluate("", shared_with_alice + "/model.pt"), "alice", "",
                                    alice),
              IsOk());
  EXPECT_THAT(scheduler_->SubmitJob(from_job(shared_with_alice), "carol", "", carol),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(scheduler_->SubmitJob(from_job(shared_with_all), "carol", "", carol), IsOk());
  EXPECT_THAT(scheduler_->SubmitJob(evaluate(bobs, ""), "alice", "", admin), IsOk());
  const Principal bob{"bob", Role::kUser, {}};
  EXPECT_THAT(scheduler_->SubmitJob(from_job(bobs), "bob", "", bob), IsOk());
  // Sharing gives no sight of the job itself.
  EXPECT_THAT(scheduler_->GetJob(shared_with_alice, alice), StatusIs(absl::StatusCode::kNotFound));

  JobSpec bad_share = Spec("x");
  bad_share.add_share_with("bob\nforged");
  EXPECT_THAT(scheduler_->SubmitJob(bad_share, "alice"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("share_with[0]")));
}

TEST_F(SchedulerControlTest, AWorkerConnectsOnlyAsItsOwnIdAndIsNotReplacedByAnother) {
  const Principal gpu1{"gpu-1", Role::kWorker, {}};
  const Principal pool{"pool", Role::kWorker, {"gpu-*"}};
  tl::v1::WorkerHello hello;
  hello.set_worker_id("gpu-1");
  hello.add_devices()->set_kind("cpu");
  auto impostor = std::make_shared<FakeConnection>();
  tl::v1::WorkerHello other = hello;
  other.set_worker_id("gpu-2");
  EXPECT_THAT(scheduler_->ConnectWorker(other, impostor, gpu1),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("gpu-2")));

  const std::string id = Submit("flowers");
  auto real = std::make_shared<FakeConnection>();
  ASSERT_OK_AND_ASSIGN(int64_t session, scheduler_->ConnectWorker(hello, real, gpu1));
  ASSERT_THAT(real->assignments(), SizeIs(1));
  FakeWorker worker{"gpu-1", session, real};
  Started(worker, id, 1);

  // Another credential allowed the same id may not take over the live session and its job.
  hello.set_held_job_id(id);
  hello.set_held_attempt(1);
  EXPECT_THAT(scheduler_->ConnectWorker(hello, impostor, pool),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_FALSE(real->closed());
  EXPECT_THAT(real->cancels(), IsEmpty());
  EXPECT_EQ(Stored(id).worker_id(), "gpu-1");
  // The worker's own credential reconnecting replaces its old stream, as before.
  auto again = std::make_shared<FakeConnection>();
  ASSERT_OK_AND_ASSIGN(int64_t second, scheduler_->ConnectWorker(hello, again, gpu1));
  EXPECT_TRUE(real->closed());
  EXPECT_THAT(again->cancels(), IsEmpty());
  Finished(FakeWorker{"gpu-1", second, again}, id, 1, JobFinished::SUCCEEDED);
  EXPECT_EQ(Stored(id).state(), Job::SUCCEEDED);
}

TEST_F(SchedulerControlTest, TheSlotsOfAWorkerConnectUnderItsTokenAndEachRunsAJob) {
  const Principal gpu1{"gpu-1", Role::kWorker, {}};
  // A token names the process; its slots connect under it, and only its own.
  auto impostor = std::make_shared<FakeConnection>();
  EXPECT_THAT(scheduler_->ConnectWorker(SlotHello("gpu-2", 1, 2), impostor, gpu1),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("hello.slot_of")));
  tl::v1::WorkerHello renamed = SlotHello("gpu-1", 1, 2);
  renamed.set_worker_id("gpu-2/slot1");
  EXPECT_THAT(scheduler_->ConnectWorker(renamed, impostor, gpu1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hello.worker_id")));
  tl::v1::WorkerHello too_many = SlotHello("gpu-1", 3, 2);
  EXPECT_THAT(scheduler_->ConnectWorker(too_many, impostor, gpu1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hello.slot ")));

  const std::string first = Submit("flowers");
  const std::string second = Submit("flowers");
  const std::string third = Submit("flowers");
  auto one = std::make_shared<FakeConnection>();
  auto two = std::make_shared<FakeConnection>();
  ASSERT_OK_AND_ASSIGN(int64_t session_one, scheduler_->ConnectWorker(SlotHello("gpu-1", 1, 2), one, gpu1));
  ASSERT_OK_AND_ASSIGN(int64_t session_two, scheduler_->ConnectWorker(SlotHello("gpu-1", 2, 2), two, gpu1));
  ASSERT_THAT(one->assignments(), SizeIs(1));
  ASSERT_THAT(two->assignments(), SizeIs(1));
  EXPECT_EQ(one->assignments()[0].job_id(), first);
  EXPECT_EQ(two->assignments()[0].job_id(), second);
  FakeWorker slot_one{"gpu-1/slot1", session_one, one};
  FakeWorker slot_two{"gpu-1/slot2", session_two, two};
  Started(slot_one, first, 1);
  Started(slot_two, second, 1);
  EXPECT_EQ(Stored(first).worker_id(), "gpu-1/slot1");
  EXPECT_EQ(Get(third).state(), Job::QUEUED);

  // A cancel reaches the one slot; the other's job runs on, and the freed slot takes the next.
  ASSERT_THAT(scheduler_->CancelJob(second, "not needed"), IsOk());
  ASSERT_THAT(two->cancels(), SizeIs(1));
  EXPECT_THAT(one->cancels(), IsEmpty());
  Finished(slot_two, second, 1, JobFinished::CANCELLED);
  ASSERT_THAT(two->assignments(), SizeIs(2));
  EXPECT_EQ(two->assignments()[1].job_id(), third);
  EXPECT_EQ(Get(first).state(), Job::RUNNING);

  // The process dies: both slots' sessions end, and after the lease both jobs are queued again.
  Started(slot_two, third, 1);
  scheduler_->DisconnectWorker(session_one);
  scheduler_->DisconnectWorker(session_two);
  scheduler_->CheckLeases(absl::Now() + kLease);
  EXPECT_EQ(Get(first).state(), Job::QUEUED);
  EXPECT_EQ(Get(third).state(), Job::QUEUED);
}

TEST_F(SchedulerControlTest, ARestartWithAnotherNumberOfSlotsReplacesTheOldSessions) {
  const Principal gpu1{"gpu-1", Role::kWorker, {}};
  const std::string id = Submit("flowers");
  auto plain = std::make_shared<FakeConnection>();
  ASSERT_OK_AND_ASSIGN(int64_t session, scheduler_->ConnectWorker(SlotHello("gpu-1", 0, 0), plain, gpu1));
  Started(FakeWorker{"gpu-1", session, plain}, id, 1);
  // The process comes back with 2 slots before its old stream is seen to end: that session
  // is of a process that has gone, and must not look idle and take work.
  auto one = std::make_shared<FakeConnection>();
  ASSERT_THAT(scheduler_->ConnectWorker(SlotHello("gpu-1", 1, 2), one, gpu1), IsOk());
  EXPECT_TRUE(plain->closed());
  // Its job went with the old process: queued again at once, a failure counted, and given to
  // the idle slot.
  ASSERT_THAT(one->assignments(), SizeIs(1));
  EXPECT_EQ(Get(id).attempt(), 2);
  EXPECT_EQ(Get(id).failures(), 1);
  auto two = std::make_shared<FakeConnection>();
  ASSERT_THAT(scheduler_->ConnectWorker(SlotHello("gpu-1", 2, 2), two, gpu1), IsOk());
  EXPECT_FALSE(one->closed()) << "slots of one layout live side by side";
  EXPECT_THAT(two->assignments(), IsEmpty());
  // A third slot claimed under a layout of 4 replaces both, as a new process would, and the
  // replaced sessions leave /metrics with them.
  metrics_->RefreshLeaseAges();
  ASSERT_THAT(Metric("tl_worker_lease_age_seconds", {{"worker_id", "gpu-1/slot2"}}),
              Optional(_));
  auto four = std::make_shared<FakeConnection>();
  ASSERT_THAT(scheduler_->ConnectWorker(SlotHello("gpu-1", 3, 4), four, gpu1), IsOk());
  EXPECT_TRUE(one->closed());
  EXPECT_TRUE(two->closed());
  metrics_->RefreshLeaseAges();
  EXPECT_EQ(Metric("tl_worker_lease_age_seconds", {{"worker_id", "gpu-1/slot1"}}), std::nullopt);
  EXPECT_EQ(Metric("tl_worker_lease_age_seconds", {{"worker_id", "gpu-1/slot2"}}), std::nullopt);
  EXPECT_THAT(Metric("tl_worker_lease_age_seconds", {{"worker_id", "gpu-1/slot3"}}),
              Optional(_));
}

TEST_F(SchedulerControlTest, AProcessKilledThenBackWithAnotherNumberOfSlotsGetsItsJobsRequeued) {
  const Principal gpu1{"gpu-1", Role::kWorker, {}};
  // Three slots, each running a job; the process dies, and its streams are seen to end.
  std::vector<std::string> jobs;
  std::vector<int64_t> sessions;
  for (int slot = 1; slot <= 3; ++slot) {
    jobs.push_back(Submit("flowers"));
    auto connection = std::make_shared<FakeConnection>();
    ASSERT_OK_AND_ASSIGN(int64_t session,
                         scheduler_->ConnectWorker(SlotHello("gpu-1", slot, 3), connection, gpu1));
    Started(FakeWorker{"gpu-1/slot" + std::to_string(slot), session, connection}, jobs.back(), 1);
    sessions.push_back(session);
  }
  for (int64_t session : sessions) scheduler_->DisconnectWorker(session);

  // Back with 2 slots: slot 3's job has no slot to claim it, and is queued again at once, a
  // failure counted; slot 2's waits for slot 2, which may still hold it.
  auto first = std::make_shared<FakeConnection>();
  ASSERT_OK_AND_ASSIGN(int64_t first_session,
                       scheduler_->ConnectWorker(SlotHello("gpu-1", 1, 2), first, gpu1));
  EXPECT_EQ(Get(jobs[2]).state(), Job::QUEUED);  // slot 1 took the job it came back without
  EXPECT_EQ(Get(jobs[2]).failures(), 1);
  EXPECT_THAT(Get(jobs[2]).error(), HasSubstr("without gpu-1/slot3"));
  EXPECT_EQ(Get(jobs[1]).attempt(), 1);
  EXPECT_EQ(Get(jobs[1]).state(), Job::RUNNING);

  // Killed again, and back as a worker of one slot: slot 2's job too, without waiting out its
  // lease.
  scheduler_->DisconnectWorker(first_session);
  auto plain = std::make_shared<FakeConnection>();
  ASSERT_THAT(scheduler_->ConnectWorker(SlotHello("gpu-1", 0, 0), plain, gpu1), IsOk());
  EXPECT_EQ(Get(jobs[1]).state(), Job::QUEUED);
  EXPECT_EQ(Get(jobs[1]).failures(), 1);
  EXPECT_THAT(Get(jobs[1]).error(), HasSubstr("without gpu-1/slot2"));
  EXPECT_THAT(plain->assignments(), SizeIs(1));
}

TEST_F(SchedulerControlTest, AnotherCredentialMayNotAddSlotsBesideALiveWorkerNorPoseAsIt) {
  const Principal owner{"gpu-1", Role::kWorker, {}};
  const Principal pool{"pool", Role::kWorker, {"gpu-*"}};
  auto one = std::make_shared<FakeConnection>();
  ASSERT_THAT(scheduler_->ConnectWorker(SlotHello("gpu-1", 1, 2), one, owner), IsOk());
  auto intruder = std::make_shared<FakeConnection>();
  for (const tl::v1::WorkerHello& hello :
       {SlotHello("gpu-1", 2, 2), SlotHello("gpu-1", 3, 4), SlotHello("gpu-1", 0, 0)}) {
    EXPECT_THAT(scheduler_->ConnectWorker(hello, intruder, pool),
                StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("another credential")))
        << hello.worker_id();
  }
  EXPECT_FALSE(one->closed());
  // The owner's own second slot still joins.
  auto two = std::make_shared<FakeConnection>();
  EXPECT_THAT(scheduler_->ConnectWorker(SlotHello("gpu-1", 2, 2), two, owner), IsOk());
}

TEST_F(SchedulerControlTest, AResultPointingOutsideTheJobsFolderIsRefused) {
  for (const std::string& bad : {std::string("../../../etc/passwd"), std::string("/etc/passwd"),
                                 std::string("OTHER/model.pt"), std::string("ID/../x/model.pt"),
                                 std::string("ID")}) {
    const std::string id = Submit("flowers");
    FakeWorker worker = Connect("w-" + std::to_string(bad.size()));
    Started(worker, id, 1);
    auto watcher = std::make_shared<FakeWatcher>();
    ASSERT_THAT(scheduler_->WatchJob(id, watcher), IsOk());
    WorkerMessage message;
    JobFinished& finished = *message.mutable_finished();
    finished.set_job_id(id);
    finished.set_attempt(1);
    finished.set_outcome(JobFinished::SUCCEEDED);
    finished.mutable_result()->set_metrics_path(id + "/metrics.json");
    finished.mutable_result()->set_model_path(absl::StrReplaceAll(bad, {{"ID", id}}));
    scheduler_->HandleWorkerMessage(worker.session, message);
    const JobRecord stored = Stored(id);
    EXPECT_NE(stored.state(), Job::SUCCEEDED) << bad;
    EXPECT_EQ(stored.failures(), 1) << bad;
    EXPECT_EQ(stored.result().model_path(), "") << bad;
    // Requeued (then assigned again at once) with the reason.
    bool said_why = false;
    for (const JobEvent& event : watcher->events()) {
      said_why = said_why || (event.job().state() == Job::QUEUED &&
                              absl::StrContains(event.job().error(), "model_path"));
    }
    EXPECT_TRUE(said_why) << bad;
    ASSERT_THAT(scheduler_->CancelJob(id, ""), IsOk());
  }
}

TEST_F(SchedulerControlTest, FreeTextIsBoundedInCharactersAndFreeOfControls) {
  std::string accents;
  for (int i = 0; i < 200; ++i) accents += "\xC3\xA9";
  EXPECT_THAT(scheduler_->SubmitJob(Spec(accents), "alice"), IsOk());
  EXPECT_THAT(scheduler_->SubmitJob(Spec(accents + "e"), "alice"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("201 characters")));
  for (const std::string& name : {std::string("job\n2026-12-06T00:00:00.000Z I tlserver] forged"),
                                  std::string("\x1b[2Jred"), std::string("nul\0byte", 8)}) {
    EXPECT_THAT(scheduler_->SubmitJob(Spec(name), "alice"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name holds a control")));
  }
  EXPECT_THAT(scheduler_->SubmitJob(Spec("ok"), "eve\nadmin"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("owner")));
  EXPECT_THAT(scheduler_->SubmitJob(Spec("ok"), std::string(129, 'o')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("owner")));
  const std::string id = Submit("flowers");
  EXPECT_THAT(scheduler_->CancelJob(id, std::string(1001, 'r')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reason")));
  EXPECT_EQ(Stored(id).state(), Job::QUEUED);
  // A worker's long error is kept, clipped.
  FakeWorker worker = Connect("w1");
  ASSERT_THAT(worker.connection->assignments(), SizeIs(1));
  const std::string running = worker.connection->assignments()[0].job_id();
  Finished(worker, running, 1, JobFinished::FAILED, std::string(1 << 20, 'e'));
  EXPECT_EQ(Stored(running).state(), Job::FAILED);
  EXPECT_LE(Stored(running).error().size(), 4096u);
  EXPECT_GT(Stored(running).error().size(), 4000u);
}

TEST_F(SchedulerControlTest, ListingPagesStayUnderTheReplyLimit) {
  SchedulerOptions options = DefaultOptions();
  options.max_list_reply_bytes = 600;
  Restart(options);
  std::set<std::string> submitted;
  for (int i = 0; i < 12; ++i) submitted.insert(Submit(absl::StrCat("job-", i)));
  std::set<std::string> listed;
  std::string token;
  int pages = 0;
  for (; pages < 50; ++pages) {
    ASSERT_OK_AND_ASSIGN(Scheduler::JobPage page, scheduler_->ListJobs({}, 1000, token));
    size_t bytes = 0;
    for (const Job& job : page.jobs) {
      bytes += job.ByteSizeLong();
      listed.insert(job.id());
    }
    EXPECT_LE(bytes, options.max_list_reply_bytes);
    token = page.next_page_token;
    if (token.empty()) break;
  }
  EXPECT_EQ(listed, submitted);
  EXPECT_GT(pages, 1);
}

// After a restart (or a blip of its stream) a job waits for its worker; only that worker may
// claim it back, whatever job id and attempt another worker's hello names.
TEST_F(SchedulerControlTest, OnlyTheWorkerAnAttemptWasGivenToClaimsItBack) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  Restart(DefaultOptions());
  FakeWorker other = Connect("evil", {"cpu"}, id, 1);
  ASSERT_THAT(other.connection->cancels(), SizeIs(1));
  EXPECT_EQ(other.connection->cancels()[0].job_id(), id);
  EXPECT_EQ(Stored(id).worker_id(), "w1");
  EpochDone(other, id, 1, 1, 0.5);
  Finished(other, id, 1, JobFinished::SUCCEEDED);
  EXPECT_EQ(Stored(id).state(), Job::RUNNING);
  EXPECT_EQ(Stored(id).epoch(), 0);

  FakeWorker back = Connect("w1", {"cpu"}, id, 1);
  EXPECT_THAT(back.connection->cancels(), IsEmpty());
  Finished(back, id, 1, JobFinished::SUCCEEDED);
  EXPECT_EQ(Stored(id).state(), Job::SUCCEEDED);
  EXPECT_EQ(Stored(id).attempt(), 1);
}

// A watcher whose client has left is let go at the next event even when it is handed nothing.
TEST_F(SchedulerControlTest, AWatcherThatLeftIsDroppedThoughItAskedForLaterEvents) {
  const std::string id = Submit("flowers");
  auto gone = std::make_shared<FakeWatcher>(/*accepting=*/false);
  ASSERT_THAT(scheduler_->WatchJob(id, gone, /*after_sequence=*/100), IsOk());
  ASSERT_THAT(scheduler_->PauseJob(id), IsOk());
  const int checks = gone->gone_checks();
  EXPECT_GE(checks, 1);
  ASSERT_THAT(scheduler_->ResumeJob(id), IsOk());
  EXPECT_EQ(gone->gone_checks(), checks);  // no longer registered
  EXPECT_THAT(gone->events(), IsEmpty());
}

TEST_F(SchedulerControlTest, WhatWorkersReportIsBoundedWhereverItGoes) {
  FakeWorker worker = Connect("w1");
  const std::string refused = Submit("refused");
  WorkerMessage refusal;
  refusal.mutable_finished()->set_job_id(refused);
  refusal.mutable_finished()->set_attempt(1);
  refusal.mutable_finished()->set_outcome(JobFinished::REFUSED);
  refusal.mutable_finished()->set_error(std::string(1 << 20, 'x'));
  scheduler_->HandleWorkerMessage(worker.session, refusal);
  EXPECT_EQ(Stored(refused).state(), Job::QUEUED);
  EXPECT_LE(Stored(refused).error().size(), 4096u);
  ASSERT_THAT(scheduler_->CancelJob(refused, ""), IsOk());

  // A result of megabytes (a confusion matrix of 500 classes, twice) keeps everything but the
  // matrices, which report.json holds.
  FakeWorker second = Connect("w2");
  const std::string big = Submit("big");
  ASSERT_THAT(second.connection->assignments(), SizeIs(1));
  Started(second, big, 1);
  WorkerMessage finished;
  finished.mutable_finished()->set_job_id(big);
  finished.mutable_finished()->set_attempt(1);
  finished.mutable_finished()->set_outcome(JobFinished::SUCCEEDED);
  tl::v1::JobResult& result = *finished.mutable_finished()->mutable_result();
  result.set_model_path(big + "/model.pt");
  for (tl::v1::EvaluationReport* report : {result.mutable_val_report(),
                                           result.mutable_test_report()}) {
    report->set_accuracy(0.9);
    for (int i = 0; i < 500 * 500; ++i) report->add_confusion(1000000 + i);
  }
  ASSERT_GT(result.ByteSizeLong(), size_t{1} << 20);
  scheduler_->HandleWorkerMessage(second.session, finished);
  const JobRecord stored = Stored(big);
  EXPECT_EQ(stored.state(), Job::SUCCEEDED);
  EXPECT_LE(stored.result().ByteSizeLong(), size_t{1} << 20);
  EXPECT_EQ(stored.result().test_report().accuracy(), 0.9);
  EXPECT_EQ(stored.result().model_path(), big + "/model.pt");
}

// Every job a page holds stays far below the message limit whatever callers and workers send:
// pages of jobs with the largest results allowed stay under the reply bound.
TEST_F(SchedulerControlTest, PagesOfTheLargestJobsStayUnderTheReplyBound) {
  FakeWorker worker = Connect("w1");
  std::set<std::string> submitted;
  for (int i = 0; i < 6; ++i) {
    const std::string id = Submit(absl::StrCat("job-", i));
    submitted.insert(id);
    Started(worker, id, 1);
    WorkerMessage finished;
    finished.mutable_finished()->set_job_id(id);
    finished.mutable_finished()->set_attempt(1);
    finished.mutable_finished()->set_outcome(JobFinished::SUCCEEDED);
    tl::v1::DatasetSummary& dataset =
        *finished.mutable_finished()->mutable_result()->mutable_dataset();
    // Class names up to the bound: about 0.9 MiB of them.
    for (int c = 0; c < 900; ++c) dataset.add_class_names(std::string(1000, 'a' + c % 26));
    scheduler_->HandleWorkerMessage(worker.session, finished);
    ASSERT_EQ(Stored(id).state(), Job::SUCCEEDED);
  }
  // A spec padded with fields the server does not know is stored without them.
  JobSpec padded = Spec("padded");
  padded.GetReflection()->MutableUnknownFields(&padded)->AddLengthDelimited(
      999, std::string(3 << 20, 'p'));
  ASSERT_OK_AND_ASSIGN(Job stored_padded, scheduler_->SubmitJob(padded, "alice"));
  EXPECT_LT(stored_padded.spec().ByteSizeLong(), size_t{1} << 10);
  submitted.insert(stored_padded.id());

  std::set<std::string> listed;
  std::string token;
  int pages = 0;
  for (; pages < 20; ++pages) {
    ASSERT_OK_AND_ASSIGN(Scheduler::JobPage page, scheduler_->ListJobs({}, 1000, token));
    tl::v1::ListJobsResponse reply;
    for (const Job& job : page.jobs) {
      *reply.add_jobs() = job;
      listed.insert(job.id());
    }
    reply.set_next_page_token(page.next_page_token);
    EXPECT_LE(reply.ByteSizeLong(), DefaultOptions().max_list_reply_bytes);
    token = page.next_page_token;
    if (token.empty()) break;
  }
  EXPECT_EQ(listed, submitted);
  EXPECT_GE(pages, 2);
}

// A paused job has no worker and waits for ResumeJob, however many lease checks pass.
TEST_F(SchedulerControlTest, APausedJobStaysPausedThroughLeaseChecks) {
  const std::string running = Submit("running");
  const std::string queued = Submit("queued", 0, "cuda");  // no worker here runs it
  FakeWorker worker = Connect("w1");
  Started(worker, running, 1);
  ASSERT_THAT(scheduler_->PauseJob(running), IsOk());
  Finished(worker, running, 1, JobFinished::PAUSED);
  ASSERT_THAT(scheduler_->PauseJob(queued), IsOk());
  Heartbeat(worker);
  scheduler_->CheckLeases(absl::Now() + kLease / 2);
  scheduler_->CheckLeases(absl::Now() + 3 * kLease);
  for (const std::string& id : {running, queued}) {
    EXPECT_EQ(Stored(id).state(), Job::PAUSED) << id;
    EXPECT_EQ(Stored(id).failures(), 0) << id;
  }
}

TEST_F(SchedulerControlTest, DrainingStopsDispatchAndRefusesSubmissions) {
  const std::string running = Submit("running");
  const std::string waiting = Submit("waiting");
  FakeWorker busy = Connect("w0");
  Started(busy, running, 1);
  auto watcher = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(running, watcher), IsOk());

  scheduler_->BeginDrain();
  // Streams end at once; the watcher is told to come back, not that the job ended.
  EXPECT_TRUE(busy.connection->closed());
  EXPECT_EQ(watcher->interrupt_count(), 1);
  EXPECT_EQ(watcher->finish_count(), 0);
  // A watch or a log follow that arrives while draining is told the same after what is
  // stored, rather than left waiting until the transport goes.
  auto late_watcher = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(running, late_watcher), IsOk());
  EXPECT_GE(late_watcher->events().size(), 1u);
  EXPECT_EQ(late_watcher->interrupt_count(), 1);
  EXPECT_EQ(late_watcher->finish_count(), 0);
  auto late_follower = std::make_shared<FakeFollower>();
  ASSERT_THAT(scheduler_->GetJobLogs(running, 0, /*follow=*/true, late_follower), IsOk());
  EXPECT_EQ(late_follower->interrupt_count(), 1);
  FakeWorker late = Connect("w1");
  EXPECT_THAT(late.connection->assignments(), IsEmpty());
  EXPECT_EQ(Get(waiting).pending_reason(), "the server is shutting down");
  EXPECT_THAT(scheduler_->SubmitJob(Spec("late"), "alice"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));

  // After a restart the queued job is still queued and goes out; the running one is still
  // leased to its worker, which claims it when it reconnects.
  Restart(DefaultOptions());
  EXPECT_EQ(Get(running).state(), Job::RUNNING);
  FakeWorker again = Connect("w2");
  ASSERT_THAT(again.connection->assignments(), SizeIs(1));
  EXPECT_EQ(again.connection->assignments()[0].job_id(), waiting);
  FakeWorker back = Connect("w0", {"cpu"}, running, 1);
  EXPECT_EQ(Get(running).worker_id(), "w0");
}

TEST_F(SchedulerControlTest, LogLinesAreKeptBoundedReplayedAndFollowed) {
  SchedulerOptions options = DefaultOptions();
  options.max_log_lines_per_job = 3;
  Restart(options);
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  Log(worker, id, 1, {"one", "two"});
  auto follower = std::make_shared<FakeFollower>();
  ASSERT_THAT(scheduler_->GetJobLogs(id, 0, /*follow=*/true, follower), IsOk());
  EXPECT_THAT(follower->texts(), ElementsAre("one", "two"));
  Log(worker, id, 1, {"three", "four"});
  EXPECT_THAT(follower->texts(), ElementsAre("one", "two", "three", "four"));
  EXPECT_EQ(follower->lines()[3].sequence(), 4);
  EXPECT_EQ(follower->lines()[3].worker_id(), "w1");
  EXPECT_EQ(follower->lines()[3].attempt(), 1);
  // Lines from a session that does not hold the job are dropped.
  FakeWorker stranger = Connect("w2");
  Log(stranger, id, 1, {"forged"});
  EXPECT_THAT(follower->texts(), SizeIs(4));
  EXPECT_EQ(follower->finish_count(), 0);
  Finished(worker, id, 1, JobFinished::SUCCEEDED);
  EXPECT_EQ(follower->finish_count(), 1);

  // Only the newest three are kept; reading after a sequence skips what was seen.
  auto later = std::make_shared<FakeFollower>();
  ASSERT_THAT(scheduler_->GetJobLogs(id, 0, /*follow=*/true, later), IsOk());
  EXPECT_THAT(later->texts(), ElementsAre("two", "three", "four"));
  EXPECT_EQ(later->finish_count(), 1);  // the job has ended: nothing to follow
  auto tail = std::make_shared<FakeFollower>();
  ASSERT_THAT(scheduler_->GetJobLogs(id, 3, /*follow=*/false, tail), IsOk());
  EXPECT_THAT(tail->texts(), ElementsAre("four"));
}

}  // namespace
}  // namespace tl::server

namespace tl::server {
namespace {

// Data-parallel jobs: gangs of workers that start, fail and end together.
// Every write the scheduler makes, failed once by the store: the job the scheduler holds stays
// what is stored (nothing half-changed in memory), nobody is told of a change that did not
// happen, and the same step succeeds once the store works again.
class SchedulerWriteFailureTest : public SchedulerControlTest {
 protected:
  static constexpr FailingJobStore::Call kCommit = FailingJobStore::Call::kCommitJob;

  void FailNextWrite() { failing_->Fail(kCommit, absl::UnavailableError("disk gone"), 1); }

  // The scheduler's job and the stored row are the same, but for what GetJob works out anew.
  void ExpectConsistent(const std::string& id) {
    Job held = Get(id);
    held.clear_pending_reason();
    const Job stored = ToApiJob(Stored(id));
    EXPECT_TRUE(MessageDifferencer::Equals(held, stored))
        << "held:   " << held.ShortDebugString() << "\nstored: " << stored.ShortDebugString();
  }
};

TEST_F(SchedulerWriteFailureTest, SubmitStoresNothingAndCanBeRepeated) {
  failing_->Fail(FailingJobStore::Call::kCreateJobs, absl::UnavailableError("disk gone"), 1);
  EXPECT_THAT(scheduler_->SubmitJob(Spec("flowers"), "alice", "req-1"),
              StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK_AND_ASSIGN(Scheduler::JobPage none, scheduler_->ListJobs({}, 50, ""));
  EXPECT_THAT(none.jobs, IsEmpty());
  ASSERT_OK_AND_ASSIGN(Job job, scheduler_->SubmitJob(Spec("flowers"), "alice", "req-1"));
  EXPECT_EQ(job.state(), Job::QUEUED);
  ExpectConsistent(job.id());
}

TEST_F(SchedulerWriteFailureTest, AnAssignmentThatIsNotStoredIsNotSent) {
  const std::string id = Submit("flowers");
  FailNextWrite();
  FakeWorker worker = Connect("w1");
  EXPECT_THAT(worker.connection->assignments(), IsEmpty());
  EXPECT_EQ(Get(id).state(), Job::QUEUED);
  ExpectConsistent(id);
  scheduler_->CheckLeases(absl::Now());  // dispatches again
  ASSERT_THAT(worker.connection->assignments(), SizeIs(1));
  EXPECT_EQ(worker.connection->assignments()[0].attempt(), 1);
  ExpectConsistent(id);
}

TEST_F(SchedulerWriteFailureTest, StartAndEpochWritesLeaveTheJobAsStored) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  auto watcher = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(id, watcher), IsOk());
  const size_t events = watcher->events().size();
  FailNextWrite();
  Started(worker, id, 1);
  EXPECT_EQ(Get(id).state(), Job::ASSIGNED);
  ExpectConsistent(id);
  FailNextWrite();
  EpochDone(worker, id, 1, 1, 0.5);
  EXPECT_EQ(Get(id).epoch(), 0);
  ExpectConsistent(id);
  EXPECT_EQ(watcher->events().size(), events);  // nobody heard of either
  ASSERT_OK_AND_ASSIGN(auto stored, store_->GetEpochs(id));
  EXPECT_THAT(stored, IsEmpty());
  EpochDone(worker, id, 1, 1, 0.5);  // sent again, as a worker does after a break
  EXPECT_EQ(Get(id).state(), Job::RUNNING);
  EXPECT_EQ(Get(id).epoch(), 1);
  ExpectConsistent(id);
}

// The end of a job not stored leaves it running as it was: a later cancel asks its worker to
// stop (it used to find the job half-ended and put it back in the queue).
TEST_F(SchedulerWriteFailureTest, AnEndNotStoredLeavesTheJobRunning) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  FailNextWrite();
  Finished(worker, id, 1, JobFinished::FAILED, "bad labels");
  const Job held = Get(id);
  EXPECT_EQ(held.state(), Job::RUNNING);
  EXPECT_EQ(held.error(), "");
  EXPECT_FALSE(held.has_end_time());
  ExpectConsistent(id);
  ASSERT_OK_AND_ASSIGN(Job cancelling, scheduler_->CancelJob(id, "stop"));
  EXPECT_TRUE(cancelling.cancel_requested());
  EXPECT_EQ(cancelling.state(), Job::RUNNING);
  ASSERT_THAT(worker.connection->cancels(), SizeIs(1));
  ExpectConsistent(id);
  Finished(worker, id, 1, JobFinished::CANCELLED);
  EXPECT_EQ(Stored(id).state(), Job::CANCELLED);
  EXPECT_EQ(Stored(id).failures(), 0);
}

TEST_F(SchedulerWriteFailureTest, CancelPauseAndResumeNotStoredChangeNothing) {
  const std::string queued = Submit("queued", 0, "cuda");  // no worker here runs it
  FailNextWrite();
  EXPECT_THAT(scheduler_->CancelJob(queued, "x"), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(Get(queued).state(), Job::QUEUED);
  ExpectConsistent(queued);
  FailNextWrite();
  EXPECT_THAT(scheduler_->PauseJob(queued), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(Get(queued).state(), Job::QUEUED);
  ExpectConsistent(queued);
  ASSERT_THAT(scheduler_->PauseJob(queued), IsOk());
  FailNextWrite();
  EXPECT_THAT(scheduler_->ResumeJob(queued), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(Get(queued).state(), Job::PAUSED);
  ExpectConsistent(queued);
  ASSERT_THAT(scheduler_->ResumeJob(queued), IsOk());
  ExpectConsistent(queued);

  const std::string running = Submit("running");
  FakeWorker worker = Connect("w1");
  Started(worker, running, 1);
  FailNextWrite();
  EXPECT_THAT(scheduler_->CancelJob(running, "x"), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(Get(running).cancel_requested());
  EXPECT_THAT(worker.connection->cancels(), IsEmpty());
  ExpectConsistent(running);
  FailNextWrite();
  EXPECT_THAT(scheduler_->PauseJob(running), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(Get(running).pause_requested());
  for (const SchedulerMessage& message : worker.connection->messages()) {
    EXPECT_FALSE(message.has_pause());
  }
  ExpectConsistent(running);
}

TEST_F(SchedulerWriteFailureTest, ARequeueOrAPauseNotStoredLeavesTheAttemptAsItWas) {
  const std::string id = Submit("flowers");
  FakeWorker worker = Connect("w1");
  Started(worker, id, 1);
  FailNextWrite();
  WorkerMessage failed;
  failed.mutable_finished()->set_job_id(id);
  failed.mutable_finished()->set_attempt(1);
  failed.mutable_finished()->set_outcome(JobFinished::FAILED);
  failed.mutable_finished()->set_retryable(true);
  failed.mutable_finished()->set_error("trainer crashed");
  scheduler_->HandleWorkerMessage(worker.session, failed);
  EXPECT_EQ(Get(id).state(), Job::RUNNING);
  EXPECT_EQ(Get(id).failures(), 0);
  ExpectConsistent(id);

  ASSERT_THAT(scheduler_->PauseJob(id), IsOk());
  FailNextWrite();
  Finished(worker, id, 1, JobFinished::PAUSED);
  EXPECT_EQ(Get(id).state(), Job::RUNNING);
  EXPECT_TRUE(Get(id).pause_requested());
  ExpectConsistent(id);
  Finished(worker, id, 1, JobFinished::PAUSED);
  EXPECT_EQ(Stored(id).state(), Job::PAUSED);
  ExpectConsistent(id);
}

class SchedulerGangTest : public SchedulerControlTest {
 protected:
  // A worker that can train in a gang: it says where peers reach it.
  FakeWorker ConnectReplica(const std::string& worker_id, int port,
                            const std::string& held_job_id = "", int held_attempt = 0) {
    tl::v1::WorkerHello hello;
    hello.set_worker_id(worker_id);
    hello.add_devices()->set_kind("cpu");
    hello.set_replica_address("10.0.0." + std::to_string(port % 100));
    hello.set_rendezvous_port(port);
    hello.set_held_job_id(held_job_id);
    hello.set_held_attempt(held_attempt);
    return ConnectHello(hello);
  }
  std::string SubmitGang(const std::string& name, int replicas) {
    JobSpec spec = Spec(name);
    spec.mutable_resources()->set_replicas(replicas);
    absl::StatusOr<Job> job = scheduler_->SubmitJob(spec, "alice");
    EXPECT_THAT(job, IsOk());
    return job.ok() ? job->id() : "";
  }
  void FinishedAs(const FakeWorker& worker, const std::string& job_id, int attempt,
                  JobFinished::Outcome outcome, bool retryable, const std::string& error) {
    WorkerMessage message;
    JobFinished& finished = *message.mutable_finished();
    finished.set_job_id(job_id);
    finished.set_attempt(attempt);
    finished.set_outcome(outcome);
    finished.set_retryable(retryable);
    finished.set_error(error);
    scheduler_->HandleWorkerMessage(worker.session, message);
  }
  // The gang of two from a fresh start: job `id`, ranks 0 and 1.
  std::string StartGangOfTwo(FakeWorker& rank0, FakeWorker& rank1) {
    const std::string id = SubmitGang("wide", 2);
    rank0 = ConnectReplica("w1", 29501);
    rank1 = ConnectReplica("w2", 29502);
    EXPECT_THAT(rank0.connection->assignments(), SizeIs(1));
    EXPECT_THAT(rank1.connection->assignments(), SizeIs(1));
    Started(rank0, id, 1);
    return id;
  }
};

// A gang's assignment that is not stored reaches no rank, and the gang starts once it is.
TEST_F(SchedulerGangTest, AGangAssignmentNotStoredIsSentToNoRank) {
  const std::string id = SubmitGang("wide", 2);
  FakeWorker first = ConnectReplica("w1", 29501);
  failing_->Fail(FailingJobStore::Call::kCommitJob, absl::UnavailableError("disk gone"), 1);
  FakeWorker second = ConnectReplica("w2", 29502);
  EXPECT_THAT(first.connection->assignments(), IsEmpty());
  EXPECT_THAT(second.connection->assignments(), IsEmpty());
  Job held = Get(id);
  held.clear_pending_reason();
  EXPECT_TRUE(MessageDifferencer::Equals(held, ToApiJob(Stored(id))));
  EXPECT_EQ(held.state(), Job::QUEUED);
  EXPECT_EQ(held.replica_worker_ids_size(), 0);
  scheduler_->CheckLeases(absl::Now());
  ASSERT_THAT(first.connection->assignments(), SizeIs(1));
  ASSERT_THAT(second.connection->assignments(), SizeIs(1));
  EXPECT_EQ(Stored(id).replica_worker_ids_size(), 2);
}

TEST_F(SchedulerGangTest, GangStartsOnlyWhenEnoughWorkersAreFreeAndGetsRanksAndRendezvous) {
  const std::string id = SubmitGang("wide", 2);
  FakeWorker plain = Connect("plain");  // no replica address: never part of a gang
  FakeWorker first = ConnectReplica("w1", 29501);
  EXPECT_THAT(plain.connection->assignments(), IsEmpty());
  EXPECT_THAT(first.connection->assignments(), IsEmpty());
  EXPECT_THAT(Get(id).pending_reason(),
              HasSubstr("needs 2 workers at once that offer any device and a replica address; "
                        "1 such worker(s) connected"));

  FakeWorker second = ConnectReplica("w2", 29502);
  ASSERT_THAT(first.connection->assignments(), SizeIs(1));
  ASSERT_THAT(second.connection->assignments(), SizeIs(1));
  const Assignment rank0 = first.connection->assignments()[0];
  const Assignment rank1 = second.connection->assignments()[0];
  EXPECT_EQ(rank0.job_id(), id);
  EXPECT_EQ(rank1.job_id(), id);
  EXPECT_EQ(rank0.replica_rank(), 0);
  EXPECT_EQ(rank1.replica_rank(), 1);
  for (const Assignment& assignment : {rank0, rank1}) {
    EXPECT_EQ(assignment.replica_count(), 2);
    EXPECT_EQ(assignment.rendezvous_host(), "10.0.0.1");  // rank 0's address and port
    EXPECT_EQ(assignment.rendezvous_port(), 29501);
    EXPECT_EQ(assignment.rendezvous_key(), id + "/1");
  }
  const JobRecord stored = Stored(id);
  EXPECT_EQ(stored.state(), Job::ASSIGNED);
  EXPECT_EQ(stored.worker_id(), "w1");
  EXPECT_THAT(stored.replica_worker_ids(), ElementsAre("w1", "w2"));
  EXPECT_THAT(plain.connection->assignments(), IsEmpty());
}

TEST_F(SchedulerGangTest, WaitingGangHoldsFreeWorkersBackFromJobsBehindIt) {
  FakeWorker w1 = ConnectReplica("w1", 29501);
  FakeWorker w2 = ConnectReplica("w2", 29502);
  const std::string small = Submit("small");
  ASSERT_THAT(w1.connection->assignments(), SizeIs(1));
  const std::string wide = SubmitGang("wide", 2);
  const std::string behind = Submit("behind");
  // w2 is free, but taking "behind" there would let small jobs overtake the gang forever.
  EXPECT_THAT(w2.connection->assignments(), IsEmpty());
  EXPECT_THAT(Get(wide).pending_reason(), HasSubstr("waiting for 2 free workers at once"));

  Started(w1, small, 1);
  Finished(w1, small, 1, JobFinished::SUCCEEDED);
  ASSERT_THAT(w1.connection->assignments(), SizeIs(2));
  ASSERT_THAT(w2.connection->assignments(), SizeIs(1));
  EXPECT_EQ(w1.connection->assignments()[1].job_id(), wide);
  EXPECT_EQ(w2.connection->assignments()[0].job_id(), wide);
  EXPECT_EQ(Get(behind).state(), Job::QUEUED);
}

TEST_F(SchedulerGangTest, GangThatCannotEverStartHoldsNothingBack) {
  FakeWorker w1 = ConnectReplica("w1", 29501);
  const std::string wide = SubmitGang("wide", 3);
  const std::string small = Submit("small");
  ASSERT_THAT(w1.connection->assignments(), SizeIs(1));
  EXPECT_EQ(w1.connection->assignments()[0].job_id(), small);
  EXPECT_EQ(Get(wide).state(), Job::QUEUED);
}

TEST_F(SchedulerGangTest, OnlyRankZeroReportsEveryRankLogsAndTheJobEndsWithRankZero) {
  FakeWorker rank0, rank1;
  const std::string id = StartGangOfTwo(rank0, rank1);
  EpochDone(rank1, id, 1, 1, 0.7);  // ignored: rank 0's figures are the job's
  EpochDone(rank0, id, 1, 1, 0.8);
  Log(rank1, id, 1, {"rank 1 says hello"});
  EXPECT_EQ(Stored(id).result().final_metrics().train_loss(), 0.8);
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::LogLine> lines, store_->GetLogs(id, 0, 100));
  ASSERT_THAT(lines, SizeIs(1));
  EXPECT_EQ(lines[0].worker_id(), "w2");

  Finished(rank1, id, 1, JobFinished::SUCCEEDED);
  EXPECT_EQ(Stored(id).state(), Job::RUNNING);
  Finished(rank0, id, 1, JobFinished::SUCCEEDED);
  EXPECT_EQ(Stored(id).state(), Job::SUCCEEDED);
  // Both are free again.
  const std::string next = SubmitGang("next", 2);
  ASSERT_THAT(rank0.connection->assignments(), SizeIs(2));
  ASSERT_THAT(rank1.connection->assignments(), SizeIs(2));
  EXPECT_EQ(rank1.connection->assignments()[1].job_id(), next);
}

TEST_F(SchedulerGangTest, AFailedRankStopsTheGangAndTheJobRunsAgainOnANewGang) {
  FakeWorker rank0, rank1;
  const std::string id = StartGangOfTwo(rank0, rank1);
  FinishedAs(rank1, id, 1, JobFinished::FAILED, /*retryable=*/true,
             "internal error: Connection closed by peer");
  ASSERT_THAT(rank0.connection->cancels(), SizeIs(1));
  EXPECT_THAT(rank0.connection->cancels()[0].reason(), HasSubstr("replica on worker w2 FAILED"));
  JobRecord job = Stored(id);
  EXPECT_EQ(job.state(), Job::QUEUED);
  EXPECT_EQ(job.failures(), 1);
  EXPECT_THAT(job.replica_worker_ids(), IsEmpty());
  // Rank 0 still winds down: no new gang on it until it reports its end.
  EXPECT_THAT(rank1.connection->assignments(), SizeIs(1));

  FinishedAs(rank0, id, 1, JobFinished::CANCELLED, false, "cancelled");
  ASSERT_THAT(rank0.connection->assignments(), SizeIs(2));
  ASSERT_THAT(rank1.connection->assignments(), SizeIs(2));
  EXPECT_EQ(rank0.connection->assignments()[1].attempt(), 2);
  EXPECT_EQ(rank1.connection->assignments()[1].rendezvous_key(), id + "/2");
  EXPECT_EQ(Stored(id).state(), Job::ASSIGNED);
}

TEST_F(SchedulerGangTest, RankZerosFailureStopsTheOtherRanks) {
  FakeWorker rank0, rank1;
  const std::string id = StartGangOfTwo(rank0, rank1);
  FinishedRetryable(rank0, id, 1, "internal error: out of memory");
  ASSERT_THAT(rank1.connection->cancels(), SizeIs(1));
  EXPECT_EQ(rank1.connection->cancels()[0].job_id(), id);
  EXPECT_EQ(Stored(id).state(), Job::QUEUED);
  EXPECT_THAT(rank0.connection->assignments(), SizeIs(1));  // rank 1 is still winding down
  FinishedAs(rank1, id, 1, JobFinished::CANCELLED, false, "cancelled");
  EXPECT_EQ(Stored(id).state(), Job::ASSIGNED);
  EXPECT_EQ(Stored(id).attempt(), 2);
}

TEST_F(SchedulerGangTest, ARanksUserErrorFailsTheJobAndStopsRankZero) {
  FakeWorker rank0, rank1;
  const std::string id = StartGangOfTwo(rank0, rank1);
  FinishedAs(rank1, id, 1, JobFinished::FAILED, false, "dataset.train_dir: flowers is missing");
  const JobRecord job = Stored(id);
  EXPECT_EQ(job.state(), Job::FAILED);
  EXPECT_THAT(job.error(), HasSubstr("flowers is missing"));
  EXPECT_THAT(rank0.connection->cancels(), SizeIs(1));
}

TEST_F(SchedulerGangTest, CancelAndPauseReachEveryRank) {
  FakeWorker rank0, rank1;
  const std::string id = StartGangOfTwo(rank0, rank1);
  ASSERT_THAT(scheduler_->PauseJob(id), IsOk());
  EXPECT_THAT(Pauses(rank0), SizeIs(1));
  EXPECT_THAT(Pauses(rank1), SizeIs(1));
  FinishedAs(rank1, id, 1, JobFinished::PAUSED, false, "");
  FinishedAs(rank0, id, 1, JobFinished::PAUSED, false, "");
  EXPECT_EQ(Stored(id).state(), Job::PAUSED);

  ASSERT_THAT(scheduler_->ResumeJob(id), IsOk());
  ASSERT_THAT(rank1.connection->assignments(), SizeIs(2));
  ASSERT_OK_AND_ASSIGN(Job cancelling, scheduler_->CancelJob(id, "enough"));
  EXPECT_TRUE(cancelling.cancel_requested());
  EXPECT_THAT(rank0.connection->cancels(), SizeIs(1));
  ASSERT_THAT(rank1.connection->cancels(), SizeIs(1));
  EXPECT_EQ(rank1.connection->cancels()[0].reason(), "enough");
  FinishedAs(rank1, id, 2, JobFinished::CANCELLED, false, "cancelled");
  FinishedAs(rank0, id, 2, JobFinished::CANCELLED, false, "cancelled");
  EXPECT_EQ(Stored(id).state(), Job::CANCELLED);
}

TEST_F(SchedulerGangTest, ARankThatReconnectsHoldingItsAttemptRejoinsTheGang) {
  FakeWorker rank0, rank1;
  const std::string id = StartGangOfTwo(rank0, rank1);
  scheduler_->DisconnectWorker(rank1.session);
  FakeWorker back = ConnectReplica("w2", 29502, id, 1);
  EXPECT_THAT(back.connection->cancels(), IsEmpty());
  Log(back, id, 1, {"still training"});
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::LogLine> lines, store_->GetLogs(id, 0, 100));
  EXPECT_THAT(lines, SizeIs(1));
  // A worker that was never part of the gang is told to drop the job.
  FakeWorker stranger = ConnectReplica("w3", 29503, id, 1);
  EXPECT_THAT(stranger.connection->cancels(), SizeIs(1));
}

TEST_F(SchedulerGangTest, GangSurvivesASchedulerRestartWhenItsRanksReclaimIt) {
  FakeWorker rank0, rank1;
  const std::string id = StartGangOfTwo(rank0, rank1);
  Restart(DefaultOptions());
  FakeWorker back0 = ConnectReplica("w1", 29501, id, 1);
  FakeWorker back1 = ConnectReplica("w2", 29502, id, 1);
  EXPECT_THAT(back0.connection->cancels(), IsEmpty());
  EXPECT_THAT(back1.connection->cancels(), IsEmpty());
  Finished(back1, id, 1, JobFinished::SUCCEEDED);
  Finished(back0, id, 1, JobFinished::SUCCEEDED);
  EXPECT_EQ(Stored(id).state(), Job::SUCCEEDED);
}

TEST_F(SchedulerTest, ResumedAttemptsReplayOfStoredEpochsIsStoredOnce) {
  SchedulerOptions options = DefaultOptions();
  Restart(options);
  const std::string id = Submit("flowers");
  FakeWorker first = Connect("w1");
  Started(first, id, 1);
  EpochDone(first, id, 1, 1, 0.9);
  EpochDone(first, id, 1, 2, 0.7);
  scheduler_->DisconnectWorker(first.session);
  scheduler_->CheckLeases(absl::Now() + 2 * kLease);
  FakeWorker second = Connect("w2");
  ASSERT_THAT(second.connection->assignments(), SizeIs(1));
  Started(second, id, 2);
  // The checkpoint's epochs come again with the same figures, then new ones.
  EpochDone(second, id, 2, 1, 0.9);
  EpochDone(second, id, 2, 2, 0.7);
  EpochDone(second, id, 2, 3, 0.5);
  // An attempt that started over measures other figures: those replace the stored ones.
  EpochDone(second, id, 2, 2, 0.65);

  auto watcher = std::make_shared<FakeWatcher>();
  ASSERT_THAT(scheduler_->WatchJob(id, watcher), IsOk());
  std::vector<std::string> epochs;
  for (const JobEvent& event : watcher->events()) {
    if (event.has_epoch()) {
      epochs.push_back(absl::StrCat(event.epoch().epoch(), "@", event.epoch().attempt()));
    }
  }
  EXPECT_THAT(epochs, ElementsAre("1@1", "2@1", "3@2", "2@2"));
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::EpochMetrics> stored, store_->GetEpochs(id));
  ASSERT_THAT(stored, SizeIs(3));
  EXPECT_DOUBLE_EQ(stored[1].train_loss(), 0.65);
}

}  // namespace
}  // namespace tl::server

namespace tl::server {
namespace {

TEST_F(SchedulerTest, ConcurrentSubmitsAreCommittedTogetherAndRepeatsShareOneJob) {
  constexpr int kThreads = 16;
  constexpr int kPerThread = 20;
  std::vector<std::vector<std::string>> ids(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Every thread sends the same 20 request ids: 20 jobs in all.
        absl::StatusOr<Job> job =
            scheduler_->SubmitJob(Spec("flowers"), "alice", absl::StrCat("req-", i));
        ids[t].push_back(job.ok() ? job->id() : std::string(job.status().message()));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 1; t < kThreads; ++t) EXPECT_EQ(ids[t], ids[0]) << "thread " << t;
  ASSERT_OK_AND_ASSIGN(JobStore::Page page, store_->ListJobs({}, 1000, ""));
  EXPECT_THAT(page.jobs, SizeIs(kPerThread));
  EXPECT_THAT(Metric("tl_jobs", {{"state", "queued"}}), Optional(double{kPerThread}));
}

}  // namespace
}  // namespace tl::server
