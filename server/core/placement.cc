#include "server/core/placement.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/worker_slots.h"

namespace tl::server {

int Replicas(const JobRecord& job) { return std::max(1, job.spec().resources().replicas()); }

bool WantsCuda(const tl::v1::ResourceRequest& resources) {
  // GPU memory asked for is a GPU asked for: else the job would land on any worker, a CPU one
  // or a slot whose share of the memory is smaller.
  return resources.device() == "cuda" || resources.gpu_count() > 0 ||
         resources.min_gpu_memory_bytes() > 0;
}

bool WorkerFits(const tl::v1::WorkerHello& worker, const tl::v1::ResourceRequest& resources) {
  if (!WantsCuda(resources)) {
    if (resources.device().empty()) return true;
    for (const tl::v1::Device& device : worker.devices()) {
      if (device.kind() == resources.device()) return true;
    }
    return false;
  }
  int suitable = 0;
  for (const tl::v1::Device& device : worker.devices()) {
    if (device.kind() == "cuda" && device.memory_bytes() >= resources.min_gpu_memory_bytes()) {
      ++suitable;
    }
  }
  return suitable >= std::max(1, resources.gpu_count());
}

bool CanJoinGang(const tl::v1::WorkerHello& worker) {
  return !worker.replica_address().empty() && worker.rendezvous_port() > 0;
}

const std::string& WorkerProcessOf(const tl::v1::WorkerHello& worker) {
  return worker.slot_of().empty() ? worker.worker_id() : worker.slot_of();
}

absl::Status CheckWorkerSlots(const tl::v1::WorkerHello& worker) {
  const bool one_slot = worker.slot_of().empty() && worker.slot() == 0 && worker.slots() == 0;
  // The scheduler reads a job's slot from its worker id (SlotProcessOf), so a process's own id
  // may not read as a slot's: a job of that slot would be taken for this process's.
  const std::string& process_id = one_slot ? worker.worker_id() : worker.slot_of();
  if (const std::string_view owner = SlotProcessOf(process_id); !owner.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        one_slot ? "hello.worker_id" : "hello.slot_of", " is \"", process_id,
        "\", the id of a slot of worker \"", std::string(owner),
        "\"; a worker process takes an id of another form"));
  }
  if (one_slot) return absl::OkStatus();
  if (worker.slots() < 1 || worker.slots() > kMaxWorkerSlots) {
    return absl::InvalidArgumentError(absl::StrCat("hello.slots is ", worker.slots(),
                                                   "; it must lie in [1, ", kMaxWorkerSlots, "]"));
  }
  if (worker.slot() < 1 || worker.slot() > worker.slots()) {
    return absl::InvalidArgumentError(absl::StrCat("hello.slot is ", worker.slot(),
                                                   "; it must lie in [1, hello.slots = ",
                                                   worker.slots(), "]"));
  }
  if (worker.slot_of().empty()) {
    return absl::InvalidArgumentError("hello.slot_of is empty: a slot names its worker's id");
  }
  if (worker.worker_id() != SlotWorkerId(worker.slot_of(), worker.slot())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hello.worker_id is \"", worker.worker_id(), "\"; slot ", worker.slot(), " of worker \"",
        worker.slot_of(), "\" connects as \"", SlotWorkerId(worker.slot_of(), worker.slot()),
        "\""));
  }
  return absl::OkStatus();
}

std::string DescribeResources(const tl::v1::ResourceRequest& resources) {
  if (!WantsCuda(resources)) {
    return resources.device().empty() ? "any device" : resources.device();
  }
  std::string text = absl::StrCat(std::max(1, resources.gpu_count()), " CUDA device(s)");
  if (resources.min_gpu_memory_bytes() > 0) {
    absl::StrAppend(&text, " with at least ", resources.min_gpu_memory_bytes() >> 20,
                    " MiB each");
  }
  return text;
}

int CountSuitableWorkers(const std::vector<PlacementWorker>& workers, const JobRecord& job) {
  std::set<std::string> processes;
  for (const PlacementWorker& worker : workers) {
    if (WorkerFits(*worker.hello, job.spec().resources()) && CanJoinGang(*worker.hello)) {
      processes.insert(WorkerProcessOf(*worker.hello));
    }
  }
  return static_cast<int>(processes.size());
}

std::vector<Placement> PlaceJobs(const std::vector<const JobRecord*>& queue,
                                 std::vector<PlacementWorker> workers, PlacementLimits limits) {
  std::vector<Placement> placements;
  std::set<int64_t> held_back;
  auto at_limit = [&](const std::string& owner) {
    return limits.max_running_per_owner > 0 &&
           limits.running_per_owner[owner] >= limits.max_running_per_owner;
  };
  for (const JobRecord* job : queue) {
    if (at_limit(job->owner())) continue;
    const size_t replicas = static_cast<size_t>(Replicas(*job));
    std::vector<PlacementWorker*> chosen;
    // A gang's ranks each get a process of their own: two slots of one
    // device would only split its work between them.
    std::set<std::string> chosen_processes;
    bool any_free = false;
    for (PlacementWorker& worker : workers) {
      if (!worker.free || held_back.count(worker.session)) continue;
      any_free = true;
      if (!WorkerFits(*worker.hello, job->spec().resources()) ||
          (replicas > 1 && (!CanJoinGang(*worker.hello) ||
                            !chosen_processes.insert(WorkerProcessOf(*worker.hello)).second))) {
        continue;
      }
      chosen.push_back(&worker);
      if (chosen.size() == replicas) break;
    }
    if (!any_free) break;
    if (chosen.size() == replicas) {
      Placement& placement = placements.emplace_back();
      placement.job_id = job->id();
      for (PlacementWorker* worker : chosen) {
        placement.sessions.push_back(worker->session);
        worker->free = false;
      }
      ++limits.running_per_owner[job->owner()];
      continue;
    }
    if (static_cast<size_t>(CountSuitableWorkers(workers, *job)) >= replicas) {
      for (PlacementWorker* worker : chosen) held_back.insert(worker->session);
    }
  }
  return placements;
}

}  // namespace tl::server
