#include "server/core/placement.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

#include "common/worker_slots.h"

namespace tl::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::tl::v1::Job;
using ::tl::v1::WorkerHello;

// Jobs and workers made for one test, kept where the pointers placement takes stay valid.
class PlacementTest : public ::testing::Test {
 protected:
  const JobRecord* AddJob(const std::string& id, const std::string& owner = "alice",
                    const std::string& device = "", int replicas = 0, int gpus = 0) {
    JobRecord& job = jobs_.emplace_back();
    job.set_id(id);
    job.set_owner(owner);
    job.mutable_spec()->mutable_resources()->set_device(device);
    job.mutable_spec()->mutable_resources()->set_replicas(replicas);
    job.mutable_spec()->mutable_resources()->set_gpu_count(gpus);
    return &job;
  }
  PlacementWorker AddWorker(int64_t session, const std::vector<std::string>& devices,
                            bool free = true, bool gang_ready = false) {
    WorkerHello& hello = hellos_.emplace_back();
    hello.set_worker_id("w" + std::to_string(session));
    for (const std::string& kind : devices) {
      tl::v1::Device& device = *hello.add_devices();
      device.set_kind(kind);
      device.set_memory_bytes(kind == "cuda" ? (int64_t{16} << 30) : 0);
    }
    if (gang_ready) {
      hello.set_replica_address("10.0.0." + std::to_string(session));
      hello.set_rendezvous_port(29500);
    }
    return {session, &hello, free};
  }
  // Slot `slot` of worker process `process` (common/worker_slots.h), with `memory_gib` of GPU
  // memory as its share.
  PlacementWorker AddSlot(int64_t session, const std::string& process, int slot, int slots,
                          int64_t memory_gib = 0, bool free = true) {
    PlacementWorker worker = AddWorker(session, {memory_gib > 0 ? "cuda" : "cpu"}, free, true);
    WorkerHello& hello = hellos_.back();
    hello.set_worker_id(process + "/slot" + std::to_string(slot));
    hello.set_slot_of(process);
    hello.set_slot(slot);
    hello.set_slots(slots);
    hello.set_replica_address("10.0.1." + process);
    if (memory_gib > 0) hello.mutable_devices(0)->set_memory_bytes(memory_gib << 30);
    return worker;
  }
  static std::vector<std::string> Describe(const std::vector<Placement>& placements) {
    std::vector<std::string> text;
    for (const Placement& placement : placements) {
      std::string line = placement.job_id + ":";
      for (int64_t session : placement.sessions) line += " " + std::to_string(session);
      text.push_back(line);
    }
    return text;
  }

  std::deque<JobRecord> jobs_;
  std::deque<WorkerHello> hellos_;
};

TEST_F(PlacementTest, JobsTakeFreeWorkersInQueueOrder) {
  const std::vector<const JobRecord*> queue = {AddJob("a"), AddJob("b"), AddJob("c")};
  const std::vector<PlacementWorker> workers = {AddWorker(1, {"cpu"}), AddWorker(2, {"cpu"}, false),
                                                AddWorker(3, {"cpu"})};
  EXPECT_THAT(Describe(PlaceJobs(queue, workers, {})), ElementsAre("a: 1", "b: 3"));
}

TEST_F(PlacementTest, AJobWaitsForAWorkerWithItsDevicesWhileOthersGoAhead) {
  const std::vector<const JobRecord*> queue = {AddJob("gpu", "alice", "cuda", 0, 2), AddJob("any")};
  const std::vector<PlacementWorker> workers = {AddWorker(1, {"cuda"}), AddWorker(2, {"cpu"})};
  EXPECT_THAT(Describe(PlaceJobs(queue, workers, {})), ElementsAre("any: 1"));
  const std::vector<PlacementWorker> two_gpus = {AddWorker(3, {"cuda", "cuda"})};
  EXPECT_THAT(Describe(PlaceJobs(queue, two_gpus, {})), ElementsAre("gpu: 3"));
}

TEST_F(PlacementTest, AnOwnerAtItsRunningLimitWaitsAndOthersGo) {
  const std::vector<const JobRecord*> queue = {AddJob("a1", "alice"), AddJob("a2", "alice"),
                                         AddJob("b1", "bob")};
  const std::vector<PlacementWorker> workers = {AddWorker(1, {"cpu"}), AddWorker(2, {"cpu"}),
                                                AddWorker(3, {"cpu"})};
  PlacementLimits limits;
  limits.max_running_per_owner = 1;
  EXPECT_THAT(Describe(PlaceJobs(queue, workers, limits)), ElementsAre("a1: 1", "b1: 2"));
  limits.running_per_owner["alice"] = 1;
  EXPECT_THAT(Describe(PlaceJobs(queue, workers, limits)), ElementsAre("b1: 1"));
}

TEST_F(PlacementTest, AGangStartsOnlyWithEnoughFreeWorkersThatCanJoin) {
  const std::vector<const JobRecord*> queue = {AddJob("gang", "alice", "", 2)};
  const std::vector<PlacementWorker> one_ready = {AddWorker(1, {"cpu"}, true, true),
                                                  AddWorker(2, {"cpu"})};
  EXPECT_THAT(PlaceJobs(queue, one_ready, {}), IsEmpty());
  const std::vector<PlacementWorker> two_ready = {AddWorker(3, {"cpu"}, true, true),
                                                  AddWorker(4, {"cpu"}),
                                                  AddWorker(5, {"cpu"}, true, true)};
  EXPECT_THAT(Describe(PlaceJobs(queue, two_ready, {})), ElementsAre("gang: 3 5"));
}

// A gang that can start once a busy worker frees up keeps the free ones for itself; one that
// could never start (too few suitable workers connected) holds nothing back.
TEST_F(PlacementTest, AWaitingGangHoldsBackOnlyWhileItCanStartSoon) {
  const std::vector<const JobRecord*> queue = {AddJob("gang", "alice", "", 2), AddJob("small")};
  const std::vector<PlacementWorker> one_busy = {AddWorker(1, {"cpu"}, true, true),
                                                 AddWorker(2, {"cpu"}, false, true)};
  EXPECT_THAT(PlaceJobs(queue, one_busy, {}), IsEmpty());
  const std::vector<PlacementWorker> never = {AddWorker(3, {"cpu"}, true, true),
                                              AddWorker(4, {"cpu"})};
  EXPECT_THAT(Describe(PlaceJobs(queue, never, {})), ElementsAre("small: 3"));
}

TEST_F(PlacementTest, EachSlotOfAWorkerTakesAJobOfItsOwn) {
  const std::vector<const JobRecord*> queue = {AddJob("a"), AddJob("b"), AddJob("c")};
  const std::vector<PlacementWorker> slots = {AddSlot(1, "1", 1, 2), AddSlot(2, "1", 2, 2)};
  EXPECT_THAT(Describe(PlaceJobs(queue, slots, {})), ElementsAre("a: 1", "b: 2"));
}

TEST_F(PlacementTest, AGangsRanksGoToDifferentWorkerProcesses) {
  const std::vector<const JobRecord*> queue = {AddJob("gang", "alice", "", 2)};
  // Two slots of one process are one worker to a gang: it waits, and holds nothing back.
  const std::vector<PlacementWorker> one_process = {AddSlot(1, "1", 1, 2), AddSlot(2, "1", 2, 2)};
  EXPECT_THAT(PlaceJobs(queue, one_process, {}), IsEmpty());
  EXPECT_EQ(CountSuitableWorkers(one_process, *queue[0]), 1);
  const std::vector<const JobRecord*> with_small = {queue[0], AddJob("small")};
  EXPECT_THAT(Describe(PlaceJobs(with_small, one_process, {})), ElementsAre("small: 1"));
  const std::vector<PlacementWorker> two_processes = {AddSlot(3, "1", 1, 2), AddSlot(4, "1", 2, 2),
                                                      AddSlot(5, "2", 1, 2)};
  EXPECT_EQ(CountSuitableWorkers(two_processes, *queue[0]), 2);
  EXPECT_THAT(Describe(PlaceJobs(queue, two_processes, {})), ElementsAre("gang: 3 5"));
}

TEST_F(PlacementTest, AJobGoesOnlyToASlotWhoseShareOfGpuMemoryFitsIt) {
  JobRecord& big = *const_cast<JobRecord*>(AddJob("big", "alice", "cuda"));
  big.mutable_spec()->mutable_resources()->set_min_gpu_memory_bytes(int64_t{30} << 30);
  const std::vector<const JobRecord*> queue = {&big, AddJob("small", "alice", "cuda")};
  // An 80 GiB device in 4 slots of 20 GiB, and one in 2 slots of 40 GiB.
  const std::vector<PlacementWorker> quarters = {AddSlot(1, "1", 1, 4, 20), AddSlot(2, "1", 2, 4, 20)};
  EXPECT_THAT(Describe(PlaceJobs(queue, quarters, {})), ElementsAre("small: 1"));
  const std::vector<PlacementWorker> halves = {AddSlot(3, "2", 1, 2, 40), AddSlot(4, "2", 2, 2, 40)};
  EXPECT_THAT(Describe(PlaceJobs(queue, halves, {})), ElementsAre("big: 3", "small: 4"));
}

TEST_F(PlacementTest, GpuMemoryAskedForWithoutADeviceStillNeedsACudaDeviceWithThatMuch) {
  JobRecord& big = *const_cast<JobRecord*>(AddJob("big", "alice"));  // resources.device empty
  big.mutable_spec()->mutable_resources()->set_min_gpu_memory_bytes(int64_t{30} << 30);
  const std::vector<const JobRecord*> queue = {&big};
  const std::vector<PlacementWorker> cpu_and_quarters = {AddWorker(1, {"cpu"}),
                                                         AddSlot(2, "1", 1, 4, 20)};
  EXPECT_THAT(Describe(PlaceJobs(queue, cpu_and_quarters, {})), ElementsAre());
  EXPECT_THAT(Describe(PlaceJobs(queue, {AddSlot(3, "2", 1, 2, 40)}, {})), ElementsAre("big: 3"));
  EXPECT_EQ(DescribeResources(big.spec().resources()),
            "1 CUDA device(s) with at least 30720 MiB each");
}

TEST_F(PlacementTest, SlotFieldsOfAHelloAreCheckedAndNamed) {
  WorkerHello hello;
  hello.set_worker_id("w1");
  EXPECT_TRUE(CheckWorkerSlots(hello).ok());
  EXPECT_EQ(WorkerProcessOf(hello), "w1");
  hello.set_worker_id("w1/slot2");
  hello.set_slot_of("w1");
  hello.set_slot(2);
  hello.set_slots(2);
  EXPECT_TRUE(CheckWorkerSlots(hello).ok()) << CheckWorkerSlots(hello);
  EXPECT_EQ(WorkerProcessOf(hello), "w1");
  const auto refused = [](WorkerHello bad, const std::string& field) {
    const absl::Status status = CheckWorkerSlots(bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_NE(status.message().find(field), absl::string_view::npos) << status;
  };
  WorkerHello bad = hello;
  bad.set_slots(17);
  refused(bad, "hello.slots");
  bad = hello;
  bad.set_slot(3);
  refused(bad, "hello.slot ");
  bad = hello;
  bad.set_slot(0);
  refused(bad, "hello.slot ");
  bad = hello;
  bad.set_worker_id("w2/slot2");  // a slot under another process's name
  refused(bad, "hello.worker_id");
  bad = hello;
  bad.set_slot_of("");
  refused(bad, "hello.slot_of");
  // A worker of one slot under a slot's id would be taken for that slot.
  WorkerHello plain;
  plain.set_worker_id("w1/slot2");
  refused(plain, "hello.worker_id");
  plain.set_worker_id("w1/slot0");
  EXPECT_TRUE(CheckWorkerSlots(plain).ok());
  // Nor may a process of slots: its slot 1 would be "w1/slot2/slot1", and "w1/slot2" a job's.
  bad = hello;
  bad.set_slot_of("w1/slot2");
  bad.set_worker_id("w1/slot2/slot2");
  refused(bad, "hello.slot_of");
}

TEST(SlotProcessOfTest, NamesTheProcessOfASlotsIdAndNothingElse) {
  EXPECT_EQ(SlotProcessOf(SlotWorkerId("gpu-0", 2)), "gpu-0");
  EXPECT_EQ(SlotProcessOf(SlotWorkerId("a/slot1", kMaxWorkerSlots)), "a/slot1");
  for (const char* other : {"gpu-0", "gpu-0/slot", "gpu-0/slot0", "gpu-0/slot02", "gpu-0/slot17",
                            "gpu-0/slot1x", "/slot1", "gpu-0/slots2"}) {
    EXPECT_EQ(SlotProcessOf(other), "") << other;
  }
}

TEST_F(PlacementTest, ResourcesAreDescribedForPeople) {
  tl::v1::ResourceRequest resources;
  EXPECT_EQ(DescribeResources(resources), "any device");
  resources.set_device("cpu");
  EXPECT_EQ(DescribeResources(resources), "cpu");
  resources.set_device("cuda");
  resources.set_gpu_count(2);
  resources.set_min_gpu_memory_bytes(int64_t{16} << 30);
  EXPECT_EQ(DescribeResources(resources), "2 CUDA device(s) with at least 16384 MiB each");
}

}  // namespace
}  // namespace tl::server
