// Runs one assignment through the engine on its own thread and reports what
// happens as tl.v1 worker messages. The only place where the worker's
// protobuf world meets the engine's plain C++ one.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "tl/v1/service.pb.h"
#include "job/image_job.h"
#include "worker/job_listener.h"

namespace tl::worker {

struct WorkerSettings {
  std::string data_root;
  std::string artifact_root;
  std::string device = "cpu";  // what this worker trains on: "cpu", "cuda:0", ...
  int threads = 0;             // intra-op threads; 0: every core
  // A slot's share of the cores (worker/slot_options.h): a job's own
  // training.threads is capped at it, so that one slot's job cannot slow
  // the others'; 0: no cap.
  int max_threads = 0;
  int loader_threads = 0;      // 0: chosen from the core count
  // Images whose header states more pixels are skipped undecoded
  // (--max_image_pixels).
  int64_t max_image_pixels = engine::kDefaultMaxImagePixels;
  // Frozen-backbone features kept under artifact_root/feature_cache for
  // later jobs (--feature_cache); false: in memory, per job.
  bool feature_cache = true;
  // Its bound (--feature_cache_max_gib): least recently used tables are
  // removed beyond it; 0: none.
  int64_t feature_cache_max_bytes = 0;
  // Data-parallel jobs: the address other workers reach this one on (its
  // process-group traffic binds there) and the port of the rendezvous store
  // it serves as rank 0. Empty address: it takes no part in them.
  std::string replica_address;
  int rendezvous_port = 0;
  std::shared_ptr<JobListener> listener;  // told of batches and ends; may be null
};

// The engine configuration of an assignment, paths resolved against the
// worker's roots (and confined to them), every engine option set from the
// stored spec. INVALID_ARGUMENT names a path field that escapes its root;
// FAILED_PRECONDITION names a field the server fills in at submit that the
// spec lacks.
absl::StatusOr<engine::ImageJobConfig> EngineConfigFor(const tl::v1::Assignment& assignment,
                                                       const WorkerSettings& settings);

class JobRunner {
 public:
  // Messages to send; called on the runner's thread.
  using Report = std::function<void(const tl::v1::WorkerMessage&)>;

  JobRunner(tl::v1::Assignment assignment, WorkerSettings settings, Report report);
  ~JobRunner();  // cancels and joins

  void Start();
  // Stops the job before its next batch; it then reports CANCELLED.
  void Cancel();
  // Stops the job after its current epoch (checkpoint written); it then
  // reports PAUSED.
  void Pause();
  // Stops the job before its next batch because the worker is shutting
  // down; it then reports RELEASED (its last checkpoint stays for the next
  // attempt).
  void Release();
  bool finished() const { return finished_.load(); }
  bool cancel_requested() const { return cancel_requested_.load(); }
  void Join();

  const std::string& job_id() const { return assignment_.job_id(); }
  int attempt() const { return assignment_.attempt(); }

 private:
  void Run();
  // The job's result from the engine's, paths relative to the artifact root.
  void SetResult(const engine::ImageJobResult& result, tl::v1::JobResult& out) const;
  // Logs a line to stderr and sends it to the scheduler as the job's log.
  void Log(const std::string& text);

  const tl::v1::Assignment assignment_;
  const WorkerSettings settings_;
  const Report report_;
  std::atomic<bool> cancel_requested_{false};
  std::atomic<bool> pause_requested_{false};
  std::atomic<bool> release_requested_{false};
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

}  // namespace tl::worker
