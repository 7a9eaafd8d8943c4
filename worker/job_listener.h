// What a job runner tells the rest of the worker process about its job,
// beside the reports to the scheduler: every batch, and the job's end. The
// worker's own /metrics (worker_metrics.h) listens.
#pragma once

#include <string>

#include "train/trainer.h"

namespace tl::worker {

class JobListener {
 public:
  virtual ~JobListener() = default;
  // On the job's thread, after every training batch.
  virtual void OnBatch(const std::string& job_id, const engine::BatchProgress& progress) = 0;
  // On the job's thread, once the job has stopped, whatever its outcome.
  virtual void OnJobEnded(const std::string& job_id) = 0;
};

}  // namespace tl::worker
