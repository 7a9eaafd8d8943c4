// The scheduler's Prometheus metrics, built once. Per-job series exist only
// while the job runs: they are removed when it ends, so that label values
// stay bounded by the number of running jobs.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "tl/v1/jobs.pb.h"

namespace tl::server {

class ServerMetrics {
 public:
  ServerMetrics();

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  void JobSubmitted();
  void JobFinished(tl::v1::Job::State outcome);
  void SetJobsInState(tl::v1::Job::State state, int64_t count);
  void SetWorkers(int64_t connected, int64_t busy);

  void EpochFinished(const std::string& job_id, const tl::v1::EpochMetrics& metrics);
  void Progressed(const std::string& job_id, const tl::v1::Progress& progress);
  void RemoveJob(const std::string& job_id);

 private:
  struct JobSeries {
    prometheus::Gauge* epoch;
    prometheus::Gauge* epoch_progress;
    prometheus::Gauge* train_loss;
    prometheus::Gauge* val_loss;
    prometheus::Gauge* val_accuracy;
    prometheus::Gauge* images_per_second;
  };
  JobSeries& SeriesFor(const std::string& job_id);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& submitted_;
  prometheus::Family<prometheus::Counter>& finished_;
  prometheus::Family<prometheus::Gauge>& jobs_;
  prometheus::Family<prometheus::Gauge>& queue_depth_;
  prometheus::Family<prometheus::Gauge>& workers_connected_;
  prometheus::Family<prometheus::Gauge>& workers_busy_;
  prometheus::Family<prometheus::Gauge>& job_epoch_;
  prometheus::Family<prometheus::Gauge>& job_epoch_progress_;
  prometheus::Family<prometheus::Gauge>& job_train_loss_;
  prometheus::Family<prometheus::Gauge>& job_val_loss_;
  prometheus::Family<prometheus::Gauge>& job_val_accuracy_;
  prometheus::Family<prometheus::Gauge>& job_images_per_second_;

  std::mutex mutex_;  // guards series_
  std::map<std::string, JobSeries> series_;
};

}  // namespace tl::server
