// tlworker's own Prometheus metrics: the process (memory, CPU), the running
// job's training loop (throughput, batches, time spent waiting for data) and,
// in CUDA builds training on a GPU, the device memory LibTorch holds. Series
// of a job exist while it runs. Catalogue: docs/METRICS.md.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "worker/job_listener.h"

namespace tl::worker {

// This process's resident set, from /proc/self/statm; nullopt when unreadable.
std::optional<int64_t> ResidentMemoryBytes();
// User and system CPU time this process has used.
double CpuSeconds();

// Bytes the CUDA caching allocator has handed out and holds on one device.
struct DeviceMemory {
  int64_t allocated_bytes = 0;
  int64_t reserved_bytes = 0;
};
// nullopt in CPU builds of LibTorch and until the device has been used.
std::optional<DeviceMemory> CudaMemory(int device_index);

class WorkerMetrics : public JobListener {
 public:
  // `device` as the worker trains on it: "cpu", "cuda" or "cuda:N"; `slots`:
  // the jobs it runs at once (tlworker --slots), each job's series its own.
  explicit WorkerMetrics(const std::string& device, int slots = 1);

  // What /metrics serves: the registry with the process and device figures
  // read at each scrape.
  std::shared_ptr<prometheus::Collectable> collectable() const { return collectable_; }

  void OnBatch(const std::string& job_id, const engine::BatchProgress& progress) override;
  void OnJobEnded(const std::string& job_id) override;

 private:
  void Refresh();

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>& resident_memory_;
  prometheus::Family<prometheus::Counter>& cpu_seconds_;
  prometheus::Family<prometheus::Counter>& batches_;
  prometheus::Family<prometheus::Counter>& data_wait_;
  prometheus::Family<prometheus::Gauge>& job_images_per_second_;
  prometheus::Family<prometheus::Gauge>& cuda_allocated_;
  prometheus::Family<prometheus::Gauge>& cuda_reserved_;
  prometheus::Family<prometheus::Gauge>& slots_;
  const std::optional<int> cuda_index_;  // the CUDA device trained on, if any
  std::shared_ptr<prometheus::Collectable> collectable_;

  // A running job's series, and the data wait of its epoch in progress
  // already counted.
  struct RunningJob {
    prometheus::Gauge* images_per_second = nullptr;
    double epoch_data_wait_seen = 0;
    int64_t last_batch = 0;  // the batch count when it last reported one
  };
  const int slots_count_;
  std::mutex mutex_;  // guards the members below and the counters' catching up
  std::map<std::string, RunningJob> running_;  // by job id; at most slots_count_
  int64_t batches_seen_ = 0;
};

}  // namespace tl::worker
