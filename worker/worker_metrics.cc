#include "worker/worker_metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "common/refreshed_registry.h"

#ifdef TL_WITH_C10_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace tl::worker {
namespace {

std::optional<int> CudaIndexOf(const std::string& device) {
  if (device.rfind("cuda", 0) != 0) return std::nullopt;
  if (device.size() <= 5) return 0;
  try {
    return std::stoi(device.substr(5));
  } catch (const std::exception&) {
    return std::nullopt;  // tlworker refused such a --device before getting here
  }
}

prometheus::Family<prometheus::Gauge>& Gauge(prometheus::Registry& registry,
                                             const std::string& name, const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}

prometheus::Family<prometheus::Counter>& Counter(prometheus::Registry& registry,
                                                 const std::string& name,
                                                 const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

// Counters only go up: they follow a figure read elsewhere by its increase.
void CatchUp(prometheus::Counter& counter, double value) {
  if (value > counter.Value()) counter.Increment(value - counter.Value());
}

}  // namespace

std::optional<int64_t> ResidentMemoryBytes() {
  // statm: size resident shared text lib data dt, in pages.
  std::ifstream statm("/proc/self/statm");
  int64_t size_pages = 0;
  int64_t resident_pages = 0;
  if (!(statm >> size_pages >> resident_pages)) return std::nullopt;
  return resident_pages * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

double CpuSeconds() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  auto seconds = [](const timeval& time) { return time.tv_sec + time.tv_usec * 1e-6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

std::optional<DeviceMemory> CudaMemory(int device_index) {
#ifdef TL_WITH_C10_CUDA
  try {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device_index);
    // Element 0 of each statistic is the aggregate over the allocator's pools, in LibTorch 1.x
    // and 2.x alike (the enum naming it moved between namespaces).
    return DeviceMemory{stats.allocated_bytes[0].current, stats.reserved_bytes[0].current};
  } catch (const std::exception&) {
    return std::nullopt;  // the allocator is not set up until the device is first used
  }
#else
  (void)device_index;
  return std::nullopt;
#endif
}

WorkerMetrics::WorkerMetrics(const std::string& device, int slots)
    : registry_(std::make_shared<prometheus::Registry>()),
      resident_memory_(Gauge(*registry_, "process_resident_memory_bytes",
                             "Resident memory of the tlworker process.")),
      cpu_seconds_(Counter(*registry_, "process_cpu_seconds_total",
                           "User and system CPU time of the tlworker process.")),
      batches_(Counter(*registry_, "tl_worker_batches_total",
                       "Training batches this worker has completed.")),
      data_wait_(Counter(*registry_, "tl_worker_data_wait_seconds_total",
                         "Time training waited for the next batch of images.")),
      job_images_per_second_(Gauge(*registry_, "tl_worker_job_images_per_second",
                                   "Training throughput of the running job's epoch so far.")),
      cuda_allocated_(Gauge(*registry_, "tl_worker_cuda_memory_allocated_bytes",
                            "CUDA memory in tensors LibTorch has allocated.")),
      cuda_reserved_(Gauge(*registry_, "tl_worker_cuda_memory_reserved_bytes",
                           "CUDA memory LibTorch's caching allocator holds.")),
      slots_(Gauge(*registry_, "tl_worker_slots",
                   "Jobs this worker runs at once on its device (tlworker --slots).")),
      cuda_index_(CudaIndexOf(device)),
      collectable_(std::make_shared<RefreshedRegistry>(registry_, [this] { Refresh(); })),
      slots_count_(std::max(1, slots)) {
  batches_.Add({});
  data_wait_.Add({});
  slots_.Add({}).Set(slots);
  Refresh();
}

void WorkerMetrics::Refresh() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (std::optional<int64_t> resident = ResidentMemoryBytes()) {
    resident_memory_.Add({}).Set(static_cast<double>(*resident));
  }
  CatchUp(cpu_seconds_.Add({}), CpuSeconds());
  if (!cuda_index_) return;
  if (std::optional<DeviceMemory> memory = CudaMemory(*cuda_index_)) {
    const std::map<std::string, std::string> labels = {{"device", std::to_string(*cuda_index_)}};
    cuda_allocated_.Add(labels).Set(static_cast<double>(memory->allocated_bytes));
    cuda_reserved_.Add(labels).Set(static_cast<double>(memory->reserved_bytes));
  }
}

void WorkerMetrics::OnBatch(const std::string& job_id, const engine::BatchProgress& progress) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!running_.count(job_id) && static_cast<int>(running_.size()) >= slots_count_) {
    // More jobs than slots: one ended without its end reaching here. The
    // one that reported last longest ago goes, so series cannot pile up.
    auto stale = std::min_element(running_.begin(), running_.end(), [](const auto& a, const auto& b) {
      return a.second.last_batch < b.second.last_batch;
    });
    job_images_per_second_.Remove(stale->second.images_per_second);
    running_.erase(stale);
  }
  RunningJob& job = running_[job_id];
  if (job.images_per_second == nullptr) {
    job.images_per_second = &job_images_per_second_.Add({{"job_id", job_id}});
  }
  job.last_batch = ++batches_seen_;
  batches_.Add({}).Increment();
  // The progress holds the epoch's wait so far; the counter takes what is new.
  if (progress.batch <= 1) job.epoch_data_wait_seen = 0;
  data_wait_.Add({}).Increment(
      std::max(0.0, progress.data_wait_seconds - job.epoch_data_wait_seen));
  job.epoch_data_wait_seen = progress.data_wait_seconds;
  job.images_per_second->Set(progress.images_per_second);
}

void WorkerMetrics::OnJobEnded(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto job = running_.find(job_id);
  if (job == running_.end()) return;
  job_images_per_second_.Remove(job->second.images_per_second);
  running_.erase(job);
}

}  // namespace tl::worker
