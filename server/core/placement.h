// Where queued jobs go: which free workers each job in the queue gets, as a
// pure function of the queue and the connected workers, so that priority,
// per-owner limits, resource matching and gangs are decided (and tested) in
// one place. The scheduler applies the result: it stores each assignment and
// only then sends it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "server/record/job_record.pb.h"
#include "tl/v1/service.pb.h"

namespace tl::server {

// Workers one attempt of `job` needs at once (resources.replicas, at least 1).
int Replicas(const JobRecord& job);
// Whether `resources` asks for CUDA devices: device "cuda", a gpu_count, or
// GPU memory (which only a CUDA device has, even where device is empty).
bool WantsCuda(const tl::v1::ResourceRequest& resources);
// Whether the worker offers the devices `resources` asks for.
bool WorkerFits(const tl::v1::WorkerHello& worker, const tl::v1::ResourceRequest& resources);
// Whether the worker may train in a gang: it said where peers reach it.
bool CanJoinGang(const tl::v1::WorkerHello& worker);
// The worker process a session belongs to: for a slot of a worker that runs
// several jobs at once (common/worker_slots.h) its process's worker id,
// else its own. The ranks of a gang go to different processes.
const std::string& WorkerProcessOf(const tl::v1::WorkerHello& worker);
// A hello's slot fields: all unset, or slots in [1, kMaxWorkerSlots], slot
// in [1, slots] and worker_id the slot's id under slot_of. INVALID_ARGUMENT
// names the field.
absl::Status CheckWorkerSlots(const tl::v1::WorkerHello& worker);
// "any device", "cpu", "2 CUDA device(s) with at least 16384 MiB each".
std::string DescribeResources(const tl::v1::ResourceRequest& resources);

struct PlacementWorker {
  int64_t session = 0;
  const tl::v1::WorkerHello* hello = nullptr;
  bool free = false;  // idle, and not busy with work of its own
};

struct Placement {
  std::string job_id;
  std::vector<int64_t> sessions;  // rank 0 first
};

struct PlacementLimits {
  // Jobs one owner may run at once; 0: no limit.
  int max_running_per_owner = 0;
  // Jobs each owner runs now (ASSIGNED or RUNNING).
  std::map<std::string, int64_t> running_per_owner;
};

// Worker processes with a connected session, free or not, that could take part in `job`
// (for a gang: that can join); the slots of one process count once.
int CountSuitableWorkers(const std::vector<PlacementWorker>& workers, const JobRecord& job);

// The assignments to make now, in queue order. `queue` is the queued jobs in dispatch order
// (highest priority, then oldest). A job goes to the first free workers that fit it (as many
// as it has replicas, each in a worker process of its own), unless its owner is at the running
// limit. A gang job that cannot start
// yet holds back the free workers it could use, so that jobs behind it do not take them and
// overtake it forever, but only while enough suitable workers are connected for it to start
// once the busy ones finish.
std::vector<Placement> PlaceJobs(const std::vector<const JobRecord*>& queue,
                                 std::vector<PlacementWorker> workers, PlacementLimits limits);

}  // namespace tl::server
