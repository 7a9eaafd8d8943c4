#include "server/store/sqlite_job_store.h"

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <SQLiteCpp/SQLiteCpp.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "server/record/job_view.h"

namespace tl::server {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::google::protobuf::util::TimeUtil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::Pair;
using ::testing::SizeIs;
using ::tl::testing::IsOk;
using ::tl::testing::StatusIs;
using ::tl::v1::EpochMetrics;
using ::tl::v1::Job;
using ::tl::v1::JobSpec;

MATCHER_P(EqualsProto, expected, "equals " + expected.ShortDebugString()) {
  std::string difference;
  MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&difference);
  if (differencer.Compare(expected, arg)) return true;
  *result_listener << "which differs: " << difference;
  return false;
}

// Microsecond-aligned, as the store keeps times in microseconds.
const absl::Time kCreateTime = absl::FromUnixMicros(1'700'000'000'123'456);

JobSpec FullSpec(const std::string& name, int priority = 0) {
  JobSpec spec;
  spec.set_name(name);
  spec.set_priority(priority);
  spec.mutable_backbone()->set_path("backbones/resnet18.pt");
  spec.mutable_dataset()->set_train_dir("flowers/train");
  spec.mutable_dataset()->set_val_fraction(0.25);
  spec.mutable_preprocessing()->set_image_size(224);
  spec.mutable_preprocessing()->set_horizontal_flip(false);
  spec.mutable_training()->set_strategy(tl::v1::TrainingSpec::FINE_TUNE);
  spec.mutable_training()->set_epochs(12);
  spec.mutable_training()->set_learning_rate(0.003);
  spec.mutable_training()->set_seed(42);
  spec.mutable_resources()->set_device("cuda");
  return spec;
}

EpochMetrics Epoch(int epoch, int attempt, double train_loss) {
  EpochMetrics metrics;
  metrics.set_epoch(epoch);
  metrics.set_attempt(attempt);
  metrics.set_train_loss(train_loss);
  return metrics;
}

std::vector<std::string> IdsOf(const std::vector<JobRecord>& jobs) {
  std::vector<std::string> ids;
  for (const JobRecord& job : jobs) ids.push_back(job.id());
  return ids;
}

// Each test gets a fresh directory holding a fresh database file, removed afterwards.
class JobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_dir_.path();
    path_ = (dir_ / "jobs.db").string();
    ASSERT_OK_AND_ASSIGN(store_, SqliteJobStore::Open(path_));
  }

  void TearDown() override {
    store_.reset();
  }

  // Creates `count` jobs in order and returns their ids, oldest first.
  std::vector<std::string> CreateJobs(int count) {
    std::vector<std::string> ids;
    for (int i = 0; i < count; ++i) {
      absl::StatusOr<JobRecord> job = store_->CreateJob(FullSpec("job " + std::to_string(i)), "alice",
                                                  kCreateTime + absl::Seconds(i));
      EXPECT_THAT(job, IsOk());
      if (job.ok()) ids.push_back(job->id());
    }
    return ids;
  }

  void SetState(const std::string& job_id, Job::State state) {
    ASSERT_OK_AND_ASSIGN(JobRecord job, store_->GetJob(job_id));
    job.set_state(state);
    ASSERT_THAT(store_->UpdateJob(job), IsOk());
  }

  // Follows page tokens to the end and returns every job id seen, in order.
  std::vector<std::string> ListAllIds(const std::vector<Job::State>& states, int page_size,
                                      int* page_count) {
    std::vector<std::string> ids;
    std::string token;
    *page_count = 0;
    do {
      absl::StatusOr<JobStore::Page> page = store_->ListJobs(states, page_size, token);
      EXPECT_THAT(page, IsOk());
      if (!page.ok() || ++*page_count > 100) break;  // the bound stops a token loop
      EXPECT_LE(page->jobs.size(), static_cast<size_t>(page_size));
      for (const JobRecord& job : page->jobs) ids.push_back(job.id());
      token = page->next_page_token;
    } while (!token.empty());
    return ids;
  }

  tl::testing::TempDir temp_dir_;  // removed with the fixture, after TearDown
  std::filesystem::path dir_;
  std::string path_;
  std::unique_ptr<SqliteJobStore> store_;
};

TEST_F(JobStoreTest, CreatedJobReadsBackExactly) {
  const JobSpec spec = FullSpec("flowers", 5);
  ASSERT_OK_AND_ASSIGN(JobRecord created, store_->CreateJob(spec, "alice", kCreateTime));

  EXPECT_THAT(created.id(), MatchesRegex("[0-9a-f]{16}"));
  EXPECT_THAT(created.spec(), EqualsProto(spec));
  EXPECT_EQ(created.state(), Job::QUEUED);
  EXPECT_EQ(created.attempt(), 0);
  EXPECT_EQ(created.owner(), "alice");
  EXPECT_EQ(TimeUtil::TimestampToMicroseconds(created.create_time()),
            absl::ToUnixMicros(kCreateTime));
  EXPECT_THAT(created.update_time(), EqualsProto(created.create_time()));
  EXPECT_FALSE(created.has_start_time());
  EXPECT_FALSE(created.has_end_time());

  ASSERT_OK_AND_ASSIGN(JobRecord fetched, store_->GetJob(created.id()));
  EXPECT_THAT(fetched, EqualsProto(created));
}

TEST_F(JobStoreTest, GetOfUnknownIdIsNotFoundNamingTheId) {
  EXPECT_THAT(store_->GetJob("0123456789abcdef"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("0123456789abcdef")));
}

TEST_F(JobStoreTest, UpdatePersistsEveryColumn) {
  ASSERT_OK_AND_ASSIGN(JobRecord job, store_->CreateJob(FullSpec("before", 1), "alice", kCreateTime));

  *job.mutable_spec() = FullSpec("after", 9);
  job.set_state(Job::FAILED);
  job.set_attempt(3);
  job.set_owner("bob");
  *job.mutable_create_time() = TimeUtil::MicrosecondsToTimestamp(1'600'000'000'000'001);
  *job.mutable_start_time() = TimeUtil::MicrosecondsToTimestamp(1'700'000'100'000'002);
  *job.mutable_end_time() = TimeUtil::MicrosecondsToTimestamp(1'700'000'200'000'003);
  *job.mutable_update_time() = TimeUtil::MicrosecondsToTimestamp(1'700'000'300'000'004);
  job.set_error("out of memory");
  job.mutable_result()->set_model_path("jobs/x/model.pt");
  job.mutable_result()->mutable_dataset()->add_class_names("daisy");
  job.mutable_result()->mutable_final_metrics()->set_val_accuracy(0.91);
  job.mutable_result()->set_train_seconds(12.5);
  job.set_worker_id("worker-7");
  job.set_epoch(4);
  job.set_cancel_requested(true);
  ASSERT_THAT(store_->UpdateJob(job), IsOk());

  ASSERT_OK_AND_ASSIGN(JobRecord fetched, store_->GetJob(job.id()));
  EXPECT_THAT(fetched, EqualsProto(job));
}

TEST_F(JobStoreTest, UpdateOfUnknownJobIsNotFound) {
  JobRecord job;
  job.set_id("fedcba9876543210");
  EXPECT_THAT(store_->UpdateJob(job),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("fedcba9876543210")));
  ASSERT_OK_AND_ASSIGN(auto counts, store_->CountByState());
  EXPECT_THAT(counts, IsEmpty());  // the failed update inserted nothing
}

TEST_F(JobStoreTest, DataSurvivesReopening) {
  const std::vector<std::string> ids = CreateJobs(3);
  ASSERT_THAT(ids, SizeIs(3));
  SetState(ids[1], Job::RUNNING);
  ASSERT_THAT(store_->PutEpoch(ids[1], Epoch(1, 1, 0.7)), IsOk());
  ASSERT_OK_AND_ASSIGN(JobRecord before, store_->GetJob(ids[1]));

  store_.reset();
  ASSERT_OK_AND_ASSIGN(store_, SqliteJobStore::Open(path_));

  ASSERT_OK_AND_ASSIGN(JobRecord after, store_->GetJob(ids[1]));
  EXPECT_THAT(after, EqualsProto(before));
  ASSERT_OK_AND_ASSIGN(std::vector<EpochMetrics> epochs, store_->GetEpochs(ids[1]));
  EXPECT_THAT(epochs, ElementsAre(EqualsProto(Epoch(1, 1, 0.7))));
  // Insertion order carries over: a job created now lists before the old ones.
  ASSERT_OK_AND_ASSIGN(JobRecord newest, store_->CreateJob(FullSpec("new"), "bob", kCreateTime));
  ASSERT_OK_AND_ASSIGN(JobStore::Page page, store_->ListJobs({}, 10, ""));
  EXPECT_THAT(IdsOf(page.jobs), ElementsAre(newest.id(), ids[2], ids[1], ids[0]));
}

TEST_F(JobStoreTest, GangMembersSurviveReopeningAndClear) {
  const std::vector<std::string> ids = CreateJobs(1);
  ASSERT_THAT(ids, SizeIs(1));
  ASSERT_OK_AND_ASSIGN(JobRecord job, store_->GetJob(ids[0]));
  job.set_state(Job::RUNNING);
  job.add_replica_worker_ids("w1");
  job.add_replica_worker_ids("w2");
  ASSERT_THAT(store_->UpdateJob(job), IsOk());
  store_.reset();
  ASSERT_OK_AND_ASSIGN(store_, SqliteJobStore::Open(path_));
  ASSERT_OK_AND_ASSIGN(JobRecord reopened, store_->GetJob(ids[0]));
  EXPECT_THAT(reopened.replica_worker_ids(), ElementsAre("w1", "w2"));

  // Ids from servers that did not refuse control characters keep their shape.
  reopened.clear_replica_worker_ids();
  reopened.add_replica_worker_ids("odd\nid");
  reopened.add_replica_worker_ids("back\\slash");
  reopened.add_replica_worker_ids("w3");
  ASSERT_THAT(store_->UpdateJob(reopened), IsOk());
  ASSERT_OK_AND_ASSIGN(JobRecord odd, store_->GetJob(ids[0]));
  EXPECT_THAT(odd.replica_worker_ids(), ElementsAre("odd\nid", "back\\slash", "w3"));

  reopened.clear_replica_worker_ids();
  ASSERT_THAT(store_->UpdateJob(reopened), IsOk());
  ASSERT_OK_AND_ASSIGN(JobRecord cleared, store_->GetJob(ids[0]));
  EXPECT_THAT(cleared.replica_worker_ids(), IsEmpty());
}

TEST_F(JobStoreTest, WritesAreCommittedBeforeReturning) {
  // A second connection sees the write at once: nothing waits in a buffer of the first one.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> other, SqliteJobStore::Open(path_));
  ASSERT_OK_AND_ASSIGN(JobRecord job, store_->CreateJob(FullSpec("x"), "alice", kCreateTime));
  ASSERT_OK_AND_ASSIGN(JobRecord seen, other->GetJob(job.id()));
  EXPECT_THAT(seen, EqualsProto(job));
}

TEST_F(JobStoreTest, RecordsSchemaVersionAndRefusesNewerOnes) {
  store_.reset();  // closing checkpoints the WAL, so the header below is current
  // SQLite keeps PRAGMA user_version big-endian at byte 60 of the file header.
  constexpr std::streamoff kUserVersionOffset = 60;
  std::fstream file(path_, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(file.is_open());
  char version[4] = {};
  file.seekg(kUserVersionOffset);
  ASSERT_TRUE(file.read(version, sizeof(version)));
  EXPECT_THAT(std::vector<int>(version, version + 4), ElementsAre(0, 0, 0, 5));

  const char future_version[4] = {0, 0, 0, 6};
  file.seekp(kUserVersionOffset);
  ASSERT_TRUE(file.write(future_version, sizeof(future_version)));
  file.close();
  EXPECT_THAT(SqliteJobStore::Open(path_),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("schema version 6")));
}

TEST_F(JobStoreTest, ListPagesNewestFirstWithoutGapsOrDuplicates) {
  const std::vector<std::string> ids = CreateJobs(7);
  ASSERT_THAT(ids, SizeIs(7));
  const std::vector<std::string> newest_first(ids.rbegin(), ids.rend());

  int page_count = 0;
  EXPECT_EQ(ListAllIds({}, 3, &page_count), newest_first);
  EXPECT_EQ(page_count, 3);  // 3 + 3 + 1
  EXPECT_EQ(ListAllIds({}, 1, &page_count), newest_first);
  EXPECT_EQ(page_count, 7);
}

TEST_F(JobStoreTest, PageHoldingExactlyTheRestHasNoToken) {
  ASSERT_THAT(CreateJobs(6), SizeIs(6));

  ASSERT_OK_AND_ASSIGN(JobStore::Page first, store_->ListJobs({}, 3, ""));
  EXPECT_THAT(first.jobs, SizeIs(3));
  ASSERT_FALSE(first.next_page_token.empty());
  ASSERT_OK_AND_ASSIGN(JobStore::Page second, store_->ListJobs({}, 3, first.next_page_token));
  EXPECT_THAT(second.jobs, SizeIs(3));
  EXPECT_THAT(second.next_page_token, IsEmpty());

  ASSERT_OK_AND_ASSIGN(JobStore::Page whole, store_->ListJobs({}, 6, ""));
  EXPECT_THAT(whole.jobs, SizeIs(6));
  EXPECT_THAT(whole.next_page_token, IsEmpty());
}

TEST_F(JobStoreTest, ListFiltersByState) {
  const std::vector<std::string> ids = CreateJobs(6);
  ASSERT_THAT(ids, SizeIs(6));
  SetState(ids[1], Job::RUNNING);
  SetState(ids[2], Job::FAILED);
  SetState(ids[4], Job::RUNNING);

  int page_count = 0;
  EXPECT_THAT(ListAllIds({Job::RUNNING, Job::FAILED}, 2, &page_count),
              ElementsAre(ids[4], ids[2], ids[1]));
  EXPECT_EQ(page_count, 2);
  EXPECT_THAT(ListAllIds({Job::QUEUED, Job::QUEUED}, 10, &page_count),
              ElementsAre(ids[5], ids[3], ids[0]));
  EXPECT_THAT(ListAllIds({Job::CANCELLED}, 10, &page_count), IsEmpty());
  EXPECT_THAT(store_->ListJobs({static_cast<Job::State>(99)}, 10, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("99")));
}

TEST_F(JobStoreTest, ListRejectsPageSizesOutOfRange) {
  ASSERT_THAT(CreateJobs(2), SizeIs(2));
  for (int page_size : {-1, 0, 1001}) {
    EXPECT_THAT(store_->ListJobs({}, page_size, ""),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")))
        << page_size;
  }
  EXPECT_THAT(store_->ListJobs({}, 1, ""), IsOk());
  EXPECT_THAT(store_->ListJobs({}, 1000, ""), IsOk());
}

TEST_F(JobStoreTest, ListRejectsMalformedTokens) {
  ASSERT_THAT(CreateJobs(3), SizeIs(3));
  ASSERT_OK_AND_ASSIGN(JobStore::Page page, store_->ListJobs({}, 1, ""));
  ASSERT_FALSE(page.next_page_token.empty());
  EXPECT_THAT(store_->ListJobs({}, 1, page.next_page_token), IsOk());

  for (const char* token : {"x", "s", "3", "s-1", "s+1", "s 1", " s1", "s01", "s0", "s1a", "S1",
                            "s99999999999999999999"}) {
    EXPECT_THAT(store_->ListJobs({}, 1, token),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page token")))
        << token;
  }
}

TEST_F(JobStoreTest, JobsInStatesIsOldestFirst) {
  // Priorities deliberately disagree with creation order: this is not the queue order.
  std::vector<std::string> ids;
  for (int priority : {1, 9, 5, 7}) {
    ASSERT_OK_AND_ASSIGN(JobRecord job, store_->CreateJob(FullSpec("p", priority), "alice", kCreateTime));
    ids.push_back(job.id());
  }
  SetState(ids[2], Job::RUNNING);
  SetState(ids[3], Job::SUCCEEDED);

  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> active, store_->JobsInStates({Job::RUNNING, Job::QUEUED}));
  EXPECT_THAT(IdsOf(active), ElementsAre(ids[0], ids[1], ids[2]));
  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> none, store_->JobsInStates({}));
  EXPECT_THAT(none, IsEmpty());
}

TEST_F(JobStoreTest, PutEpochReplacesTheSameEpoch) {
  const std::vector<std::string> ids = CreateJobs(2);
  ASSERT_THAT(ids, SizeIs(2));
  // Stored out of order, and epoch 2 reported again by a second attempt.
  ASSERT_THAT(store_->PutEpoch(ids[0], Epoch(3, 1, 0.3)), IsOk());
  ASSERT_THAT(store_->PutEpoch(ids[0], Epoch(2, 1, 0.9)), IsOk());
  ASSERT_THAT(store_->PutEpoch(ids[0], Epoch(1, 1, 1.2)), IsOk());
  ASSERT_THAT(store_->PutEpoch(ids[0], Epoch(2, 2, 0.5)), IsOk());
  ASSERT_THAT(store_->PutEpoch(ids[1], Epoch(1, 1, 2.0)), IsOk());

  ASSERT_OK_AND_ASSIGN(std::vector<EpochMetrics> first, store_->GetEpochs(ids[0]));
  EXPECT_THAT(first, ElementsAre(EqualsProto(Epoch(1, 1, 1.2)), EqualsProto(Epoch(2, 2, 0.5)),
                                 EqualsProto(Epoch(3, 1, 0.3))));
  ASSERT_OK_AND_ASSIGN(std::vector<EpochMetrics> second, store_->GetEpochs(ids[1]));
  EXPECT_THAT(second, ElementsAre(EqualsProto(Epoch(1, 1, 2.0))));
}

TEST_F(JobStoreTest, EpochsOfUnknownJobAreNotFound) {
  ASSERT_THAT(CreateJobs(1), SizeIs(1));
  EXPECT_THAT(store_->PutEpoch("0000000000000bad", Epoch(1, 1, 0.1)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("0000000000000bad")));
  EXPECT_THAT(store_->GetEpochs("0000000000000bad"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("0000000000000bad")));
}

TEST_F(JobStoreTest, JobWithoutEpochsHasAnEmptyList) {
  const std::vector<std::string> ids = CreateJobs(1);
  ASSERT_THAT(ids, SizeIs(1));
  ASSERT_OK_AND_ASSIGN(std::vector<EpochMetrics> epochs, store_->GetEpochs(ids[0]));
  EXPECT_THAT(epochs, IsEmpty());
}

TEST_F(JobStoreTest, CountByStateListsOnlyStatesWithJobs) {
  ASSERT_OK_AND_ASSIGN(auto empty_counts, store_->CountByState());
  EXPECT_THAT(empty_counts, IsEmpty());

  const std::vector<std::string> ids = CreateJobs(5);
  ASSERT_THAT(ids, SizeIs(5));
  SetState(ids[0], Job::RUNNING);
  SetState(ids[3], Job::RUNNING);
  SetState(ids[4], Job::FAILED);

  ASSERT_OK_AND_ASSIGN(auto counts, store_->CountByState());
  EXPECT_THAT(counts,
              ElementsAre(Pair(Job::QUEUED, 2), Pair(Job::RUNNING, 2), Pair(Job::FAILED, 1)));
}

TEST_F(JobStoreTest, OpenInMissingDirectoryFailsNamingThePath) {
  const std::string path = (dir_ / "missing" / "jobs.db").string();
  EXPECT_THAT(SqliteJobStore::Open(path), StatusIs(absl::StatusCode::kInternal, HasSubstr(path)));
}

TEST_F(JobStoreTest, OpenOfANonDatabaseFileFails) {
  const std::string path = (dir_ / "not_a_database").string();
  std::ofstream(path) << std::string(4096, 'x');
  EXPECT_THAT(SqliteJobStore::Open(path), StatusIs(absl::StatusCode::kInternal, HasSubstr(path)));
}

TEST_F(JobStoreTest, ConcurrentCreatesAllSucceedWithUniqueIds) {
  constexpr int kThreads = 8;
  constexpr int kJobsPerThread = 10;
  std::vector<std::vector<absl::StatusOr<JobRecord>>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t, &results] {
      for (int i = 0; i < kJobsPerThread; ++i) {
        results[t].push_back(store_->CreateJob(FullSpec("c"), "alice", kCreateTime));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  std::set<std::string> ids;
  for (const auto& thread_results : results) {
    for (const absl::StatusOr<JobRecord>& job : thread_results) {
      ASSERT_THAT(job, IsOk());
      ids.insert(job->id());
    }
  }
  EXPECT_THAT(ids, SizeIs(kThreads * kJobsPerThread));
  ASSERT_OK_AND_ASSIGN(auto counts, store_->CountByState());
  EXPECT_THAT(counts, ElementsAre(Pair(Job::QUEUED, kThreads * kJobsPerThread)));
}

}  // namespace
}  // namespace tl::server

namespace tl::server {
namespace {

class JobStoreV2Test : public JobStoreTest {};

TEST_F(JobStoreV2Test, CreateWritesTheFirstEventAndTheRequestId) {
  ASSERT_OK_AND_ASSIGN(JobRecord job, store_->CreateJob(FullSpec("a"), "alice", kCreateTime, "req-7"));
  EXPECT_EQ(job.last_event_sequence(), 1);
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::JobEvent> events, store_->GetEvents(job.id(), 0));
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].sequence(), 1);
  EXPECT_EQ(events[0].job().id(), job.id());
  EXPECT_EQ(events[0].job().state(), Job::QUEUED);

  ASSERT_OK_AND_ASSIGN(std::optional<JobRecord> found, store_->FindByRequestId("alice", "req-7"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id(), job.id());
  ASSERT_OK_AND_ASSIGN(std::optional<JobRecord> other_owner, store_->FindByRequestId("bob", "req-7"));
  EXPECT_FALSE(other_owner.has_value());
  // The unique index is the last line of defence against a duplicate key.
  EXPECT_THAT(store_->CreateJob(FullSpec("a"), "alice", kCreateTime, "req-7"), Not(IsOk()));
}

TEST_F(JobStoreV2Test, CommitStoresRowEpochAndEventsTogether) {
  ASSERT_OK_AND_ASSIGN(JobRecord job, store_->CreateJob(FullSpec("a"), "alice", kCreateTime));
  tl::v1::EpochMetrics epoch;
  epoch.set_epoch(1);
  epoch.set_train_loss(0.5);
  job.set_epoch(1);
  job.set_last_event_sequence(3);
  job.set_failures(2);
  job.set_pause_requested(true);
  std::vector<tl::v1::JobEvent> events(2);
  events[0].set_sequence(2);
  *events[0].mutable_epoch() = epoch;
  events[1].set_sequence(3);
  *events[1].mutable_job() = ToApiJob(job);
  ASSERT_THAT(store_->CommitJob(job, events, &epoch), IsOk());

  ASSERT_OK_AND_ASSIGN(JobRecord stored, store_->GetJob(job.id()));
  EXPECT_EQ(stored.epoch(), 1);
  EXPECT_EQ(stored.last_event_sequence(), 3);
  EXPECT_EQ(stored.failures(), 2);
  EXPECT_TRUE(stored.pause_requested());
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::EpochMetrics> epochs, store_->GetEpochs(job.id()));
  ASSERT_THAT(epochs, SizeIs(1));
  ASSERT_OK_AND_ASSIGN(std::optional<tl::v1::EpochMetrics> one, store_->GetEpoch(job.id(), 1));
  ASSERT_TRUE(one.has_value());
  EXPECT_DOUBLE_EQ(one->train_loss(), 0.5);
  ASSERT_OK_AND_ASSIGN(std::optional<tl::v1::EpochMetrics> two, store_->GetEpoch(job.id(), 2));
  EXPECT_FALSE(two.has_value());
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::JobEvent> after_one, store_->GetEvents(job.id(), 1));
  ASSERT_THAT(after_one, SizeIs(2));
  EXPECT_TRUE(after_one[0].has_epoch());
  EXPECT_TRUE(after_one[1].has_job());

  // A sequence that is already taken fails the whole commit: the row keeps its old values.
  JobRecord again = stored;
  again.set_epoch(2);
  std::vector<tl::v1::JobEvent> duplicate(1);
  duplicate[0].set_sequence(3);
  *duplicate[0].mutable_job() = ToApiJob(again);
  EXPECT_THAT(store_->CommitJob(again, duplicate, nullptr), Not(IsOk()));
  ASSERT_OK_AND_ASSIGN(JobRecord unchanged, store_->GetJob(job.id()));
  EXPECT_EQ(unchanged.epoch(), 1);
  EXPECT_THAT(store_->GetEvents("0000000000000000", 0), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(JobStoreV2Test, LogsAreNumberedAndBounded) {
  ASSERT_OK_AND_ASSIGN(JobRecord job, store_->CreateJob(FullSpec("a"), "alice", kCreateTime));
  std::vector<tl::v1::LogLine> lines(4);
  for (int i = 0; i < 4; ++i) lines[i].set_text("line " + std::to_string(i + 1));
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::LogLine> stored,
                       store_->AppendLogs(job.id(), lines, /*max_lines_kept=*/3));
  ASSERT_THAT(stored, SizeIs(4));
  EXPECT_EQ(stored[3].sequence(), 4);
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::LogLine> kept, store_->GetLogs(job.id(), 0, 100));
  ASSERT_THAT(kept, SizeIs(3));
  EXPECT_EQ(kept[0].text(), "line 2");
  EXPECT_EQ(kept[0].sequence(), 2);
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::LogLine> more,
                       store_->AppendLogs(job.id(), {lines[0]}, 3));
  EXPECT_EQ(more[0].sequence(), 5);
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::LogLine> after, store_->GetLogs(job.id(), 4, 100));
  ASSERT_THAT(after, SizeIs(1));
  EXPECT_EQ(after[0].text(), "line 1");
  EXPECT_THAT(store_->AppendLogs("0000000000000000", lines, 3),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(JobStoreV2Test, ListCanBeLimitedToOneOwner) {
  ASSERT_THAT(store_->CreateJob(FullSpec("a"), "alice", kCreateTime), IsOk());
  ASSERT_OK_AND_ASSIGN(JobRecord bobs, store_->CreateJob(FullSpec("b"), "bob", kCreateTime));
  ASSERT_OK_AND_ASSIGN(JobStore::Page page, store_->ListJobs({}, 10, "", "bob"));
  ASSERT_THAT(page.jobs, SizeIs(1));
  EXPECT_EQ(page.jobs[0].id(), bobs.id());
}

// A file written by the first release (schema version 1) opens, gains the new columns, and
// each old job gets one event so that watching it still works.
TEST_F(JobStoreV2Test, VersionOneFilesAreMigrated) {
  store_.reset();
  const std::string old_path = (dir_ / "v1.db").string();
  {
    SQLite::Database db(old_path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec(R"sql(
      CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
        state INTEGER NOT NULL, priority INTEGER NOT NULL, owner TEXT NOT NULL,
        attempt INTEGER NOT NULL, worker_id TEXT NOT NULL, epoch INTEGER NOT NULL,
        cancel_requested INTEGER NOT NULL, error TEXT NOT NULL, create_time_us INTEGER NOT NULL,
        start_time_us INTEGER NOT NULL, end_time_us INTEGER NOT NULL,
        update_time_us INTEGER NOT NULL, spec BLOB NOT NULL, result BLOB);
      CREATE TABLE epochs (job_id TEXT NOT NULL REFERENCES jobs (id), epoch INTEGER NOT NULL,
        attempt INTEGER NOT NULL, metrics BLOB NOT NULL, PRIMARY KEY (job_id, epoch))
        WITHOUT ROWID;
      INSERT INTO jobs (id, state, priority, owner, attempt, worker_id, epoch, cancel_requested,
        error, create_time_us, start_time_us, end_time_us, update_time_us, spec)
        VALUES ('00000000000000aa', 4, 0, 'alice', 1, 'w1', 3, 0, '', 1, 2, 3, 3, x'');
      PRAGMA user_version = 1;
    )sql");
  }
  ASSERT_OK_AND_ASSIGN(store_, SqliteJobStore::Open(old_path));
  ASSERT_OK_AND_ASSIGN(JobRecord job, store_->GetJob("00000000000000aa"));
  EXPECT_EQ(job.state(), Job::SUCCEEDED);
  EXPECT_EQ(job.epoch(), 3);
  EXPECT_EQ(job.last_event_sequence(), 1);
  EXPECT_EQ(job.failures(), 0);
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::JobEvent> events, store_->GetEvents(job.id(), 0));
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].job().state(), Job::SUCCEEDED);
  ASSERT_THAT(store_->CreateJob(FullSpec("new"), "alice", kCreateTime, "r"), IsOk());
}

// A file written by the store of schema version 3 (testdata/schema_v3.db: a finished two-worker
// gang job with its epochs, events and log lines; a queued job; a running one with a failure
// and a pending cancel; a paused one) opens as version 4 with every job, event, epoch and line.
TEST_F(JobStoreV2Test, VersionThreeFilesAreMigrated) {
  store_.reset();
  const std::string old_path = (dir_ / "v3.db").string();
  std::filesystem::copy_file(TL_SCHEMA_V3_DB, old_path);
  ASSERT_OK_AND_ASSIGN(store_, SqliteJobStore::Open(old_path));

  ASSERT_OK_AND_ASSIGN(JobRecord gang, store_->GetJob("69d36f08541a8ebd"));
  EXPECT_EQ(gang.state(), Job::SUCCEEDED);
  EXPECT_EQ(gang.owner(), "alice");
  EXPECT_EQ(gang.request_id(), "req-1");
  EXPECT_EQ(gang.spec().resources().replicas(), 2);
  EXPECT_THAT(gang.replica_worker_ids(), ElementsAre("w1", "w2"));
  EXPECT_EQ(gang.epoch(), 3);
  EXPECT_EQ(gang.last_event_sequence(), 8);
  EXPECT_EQ(gang.result().model_path(), "69d36f08541a8ebd/model.pt");
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::JobEvent> events, store_->GetEvents(gang.id(), 0));
  ASSERT_THAT(events, SizeIs(8));
  EXPECT_EQ(events.back().job().state(), Job::SUCCEEDED);
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::EpochMetrics> epochs, store_->GetEpochs(gang.id()));
  ASSERT_THAT(epochs, SizeIs(3));
  EXPECT_DOUBLE_EQ(epochs[2].train_loss(), 1.0 / 3);
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::LogLine> lines, store_->GetLogs(gang.id(), 0, 10));
  EXPECT_THAT(lines, SizeIs(2));

  ASSERT_OK_AND_ASSIGN(JobRecord running, store_->GetJob("244b2694d66954ed"));
  EXPECT_EQ(running.state(), Job::RUNNING);
  EXPECT_EQ(running.attempt(), 2);
  EXPECT_EQ(running.failures(), 1);
  EXPECT_TRUE(running.cancel_requested());
  EXPECT_THAT(running.replica_worker_ids(), IsEmpty());
  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> waiting,
                       store_->JobsInStates({Job::QUEUED, Job::PAUSED}));
  EXPECT_THAT(IdsOf(waiting), ElementsAre("f03e62aa843c522b", "1cf0c719adcdf42b"));

  // The migrated file takes new writes, and opens again without migrating twice.
  gang.clear_replica_worker_ids();
  ASSERT_THAT(store_->UpdateJob(gang), IsOk());
  store_.reset();
  ASSERT_OK_AND_ASSIGN(store_, SqliteJobStore::Open(old_path));
  ASSERT_OK_AND_ASSIGN(JobRecord reopened, store_->GetJob(gang.id()));
  EXPECT_THAT(reopened.replica_worker_ids(), IsEmpty());
  ASSERT_OK_AND_ASSIGN(JobStore::Page page, store_->ListJobs({}, 10, ""));
  EXPECT_THAT(page.jobs, SizeIs(4));
}

// A file written by the store of schema version 4 (testdata/schema_v4.db: the version 3 file's
// jobs, migrated by a version 4 server) opens as version 5: every job a job of its own, and
// sweeps stored beside them.
TEST_F(JobStoreV2Test, VersionFourFilesAreMigrated) {
  store_.reset();
  const std::string old_path = (dir_ / "v4.db").string();
  std::filesystem::copy_file(TL_SCHEMA_V4_DB, old_path);
  ASSERT_OK_AND_ASSIGN(store_, SqliteJobStore::Open(old_path));
  ASSERT_OK_AND_ASSIGN(JobRecord gang, store_->GetJob("69d36f08541a8ebd"));
  EXPECT_EQ(gang.state(), Job::SUCCEEDED);
  EXPECT_THAT(gang.replica_worker_ids(), ElementsAre("w1", "w2"));
  EXPECT_EQ(gang.sweep_id(), "");
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::EpochMetrics> epochs, store_->GetEpochs(gang.id()));
  EXPECT_THAT(epochs, SizeIs(3));
  ASSERT_OK_AND_ASSIGN(JobStore::Page page, store_->ListJobs({}, 10, ""));
  EXPECT_THAT(page.jobs, SizeIs(4));

  SweepRecord sweep;
  sweep.set_owner("alice");
  sweep.set_state(tl::v1::Sweep::RUNNING);
  ASSERT_OK_AND_ASSIGN(sweep, store_->CreateSweep(sweep));
  store_.reset();
  ASSERT_OK_AND_ASSIGN(store_, SqliteJobStore::Open(old_path));
  EXPECT_THAT(store_->GetSweep(sweep.id()), IsOk());
}

class SweepStoreTest : public JobStoreTest {
 protected:
  SweepRecord NewSweep(const std::string& owner = "alice", const std::string& request_id = "") {
    SweepRecord sweep;
    sweep.set_owner(owner);
    sweep.set_request_id(request_id);
    sweep.set_state(tl::v1::Sweep::RUNNING);
    sweep.mutable_spec()->set_name("lr");
    sweep.mutable_spec()->set_max_trials(4);
    *sweep.mutable_create_time() = google::protobuf::util::TimeUtil::SecondsToTimestamp(100);
    absl::StatusOr<SweepRecord> created = store_->CreateSweep(sweep);
    EXPECT_THAT(created, IsOk());
    return created.ok() ? *created : sweep;
  }

  // Trial `index` of `sweep`, with the sweep's counter moved past it.
  absl::StatusOr<JobRecord> AddTrial(SweepRecord& sweep, int index) {
    JobRecord trial;
    *trial.mutable_spec() = FullSpec("lr-trial-" + std::to_string(index));
    trial.set_owner(sweep.owner());
    trial.set_sweep_trial(index);
    SweepRecord next = sweep;
    next.set_trials_created(index + 1);
    absl::StatusOr<JobRecord> job = store_->CreateTrial(next, trial, kCreateTime);
    if (job.ok()) sweep = next;
    return job;
  }
};

TEST_F(SweepStoreTest, ASweepReadsBackAndUpdates) {
  SweepRecord sweep = NewSweep();
  EXPECT_EQ(sweep.id().size(), 16u);
  ASSERT_OK_AND_ASSIGN(SweepRecord stored, store_->GetSweep(sweep.id()));
  EXPECT_THAT(stored, EqualsProto(sweep));
  sweep.set_state(tl::v1::Sweep::PAUSED);
  sweep.set_best_objective(0.5);
  ASSERT_THAT(store_->UpdateSweep(sweep), IsOk());
  store_.reset();
  ASSERT_OK_AND_ASSIGN(store_, SqliteJobStore::Open(path_));
  ASSERT_OK_AND_ASSIGN(stored, store_->GetSweep(sweep.id()));
  EXPECT_THAT(stored, EqualsProto(sweep));
  EXPECT_THAT(store_->GetSweep("nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("sweep \"nope\" not found")));
  SweepRecord missing = sweep;
  missing.set_id("nope");
  EXPECT_THAT(store_->UpdateSweep(missing), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(SweepStoreTest, TrialsAreCreatedWithTheCounterAndNeverTwice) {
  SweepRecord sweep = NewSweep();
  ASSERT_OK_AND_ASSIGN(JobRecord first, AddTrial(sweep, 0));
  EXPECT_EQ(first.sweep_id(), sweep.id());
  EXPECT_EQ(first.state(), Job::QUEUED);
  ASSERT_OK_AND_ASSIGN(JobRecord second, AddTrial(sweep, 1));
  // Trial 1 again (a scheduler that lost track of its counter): refused, nothing stored.
  SweepRecord stale = sweep;
  stale.set_trials_created(1);
  EXPECT_THAT(AddTrial(stale, 1), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr("trial 1 is not the next")));
  ASSERT_OK_AND_ASSIGN(SweepRecord stored, store_->GetSweep(sweep.id()));
  EXPECT_EQ(stored.trials_created(), 2);
  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> trials, store_->TrialsOf(sweep.id()));
  ASSERT_THAT(trials, SizeIs(2));
  EXPECT_EQ(trials[0].id(), first.id());
  EXPECT_EQ(trials[1].sweep_trial(), 1);
  ASSERT_OK_AND_ASSIGN(std::vector<tl::v1::JobEvent> events, store_->GetEvents(second.id(), 0));
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].job().sweep_id(), sweep.id());
  // ListJobs can keep to one sweep's trials.
  CreateJobs(2);
  ASSERT_OK_AND_ASSIGN(JobStore::Page page, store_->ListJobs({}, 10, "", "", SIZE_MAX, sweep.id()));
  EXPECT_THAT(IdsOf(page.jobs), ElementsAre(second.id(), first.id()));
}

TEST_F(SweepStoreTest, ACounterThatSkipsTrialsIsRefused) {
  SweepRecord sweep = NewSweep();
  ASSERT_THAT(AddTrial(sweep, 0), IsOk());
  // Trial 1 with the counter moved to 3 would leave trials 1 and 2 uncreated for good.
  SweepRecord skipping = sweep;
  skipping.set_trials_created(3);
  JobRecord trial;
  trial.set_sweep_trial(1);
  EXPECT_THAT(store_->CreateTrial(skipping, trial, kCreateTime),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK_AND_ASSIGN(SweepRecord stored, store_->GetSweep(sweep.id()));
  EXPECT_EQ(stored.trials_created(), 1);
}

TEST_F(SweepStoreTest, SweepsListNewestFirstByOwnerAndStateAndRequestId) {
  const SweepRecord a = NewSweep("alice", "r1");
  SweepRecord b = NewSweep("bob");
  const SweepRecord c = NewSweep("alice");
  b.set_state(tl::v1::Sweep::SUCCEEDED);
  ASSERT_THAT(store_->UpdateSweep(b), IsOk());
  ASSERT_OK_AND_ASSIGN(JobStore::SweepPage first, store_->ListSweeps({}, 2, ""));
  ASSERT_THAT(first.sweeps, SizeIs(2));
  EXPECT_EQ(first.sweeps[0].id(), c.id());
  ASSERT_OK_AND_ASSIGN(JobStore::SweepPage rest, store_->ListSweeps({}, 2, first.next_page_token));
  ASSERT_THAT(rest.sweeps, SizeIs(1));
  EXPECT_EQ(rest.sweeps[0].id(), a.id());
  EXPECT_TRUE(rest.next_page_token.empty());
  ASSERT_OK_AND_ASSIGN(JobStore::SweepPage alices, store_->ListSweeps({}, 10, "", "alice"));
  EXPECT_THAT(alices.sweeps, SizeIs(2));
  ASSERT_OK_AND_ASSIGN(std::vector<SweepRecord> running,
                       store_->SweepsInStates({tl::v1::Sweep::RUNNING}));
  ASSERT_THAT(running, SizeIs(2));
  EXPECT_EQ(running[0].id(), a.id());  // oldest first
  ASSERT_OK_AND_ASSIGN(std::optional<SweepRecord> found, store_->FindSweepByRequestId("alice", "r1"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id(), a.id());
  ASSERT_OK_AND_ASSIGN(found, store_->FindSweepByRequestId("bob", "r1"));
  EXPECT_FALSE(found.has_value());
  EXPECT_THAT(store_->ListSweeps({static_cast<tl::v1::Sweep::State>(99)}, 10, ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace tl::server
