// The scheduler's Prometheus metrics, built once. Per-job series exist only
// while the job runs: they are removed when it ends, so that label values
// stay bounded by the number of running jobs.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <map>
#include <optional>
#include <set>
#include <memory>
#include <mutex>
#include <string>

#include "common/epoch_metrics.h"
#include "server/metrics/job_eta.h"
#include "tl/v1/jobs.pb.h"
#include "tl/v1/sweeps.pb.h"

namespace tl::server {

class ServerMetrics {
 public:
  ServerMetrics();

  // The metrics as they stand; figures that age between reports (the lease
  // ages) are current only after RefreshLeaseAges().
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  // What /metrics serves: the registry, refreshed at each scrape.
  std::shared_ptr<prometheus::Collectable> collectable() const { return collectable_; }

  void JobSubmitted();
  // `job` in its end state, end_time set: counts it and observes its duration.
  void JobFinished(const tl::v1::Job& job);
  // Observes the queue wait of `job` as it leaves the queue for a worker: the
  // time since its last update, which for a queued job is when it entered
  // the queue (submitted, requeued or resumed).
  void JobAssigned(const tl::v1::Job& job);
  void SetJobsInState(tl::v1::Job::State state, int64_t count);
  void SetWorkers(int64_t connected, int64_t busy);
  // A worker's stream delivered a message (its lease is renewed), or the
  // worker is gone.
  void WorkerSeen(const std::string& worker_id);
  void WorkerGone(const std::string& worker_id);
  void RefreshLeaseAges();

  // `validated` false: the job holds out no validation images, so its
  // validation gauges are left out rather than set to zeros.
  void EpochFinished(const std::string& job_id, const tl::v1::EpochMetrics& metrics,
                     bool validated = true);
  void Progressed(const std::string& job_id, const tl::v1::Progress& progress);
  void RemoveJob(const std::string& job_id);

  // Sweeps: how many are stored in each state, and for each sweep that has not ended its
  // trials by job state and its best objective so far (absent until a trial succeeds).
  void SetSweepsInState(tl::v1::Sweep::State state, int64_t count);
  void SweepServed(const std::string& sweep_id, const std::map<tl::v1::Job::State, int>& trials,
                   std::optional<double> best_objective);
  void RemoveSweep(const std::string& sweep_id);

 private:
  // By position in common/epoch_metrics.h; null where a figure has no gauge.
  template <typename T>
  using PerEpochFigure = std::array<T*, kEpochMetricCount>;

  struct JobSeries {
    PerEpochFigure<prometheus::Gauge> figures{};
    prometheus::Gauge* epoch_progress = nullptr;
    prometheus::Gauge* eta = nullptr;  // added once an estimate exists
    JobEta estimator;
  };
  JobSeries& SeriesFor(const std::string& job_id);
  void UpdateEta(const std::string& job_id, JobSeries& series);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& submitted_;
  prometheus::Family<prometheus::Counter>& finished_;
  prometheus::Family<prometheus::Gauge>& jobs_;
  prometheus::Family<prometheus::Gauge>& queue_depth_;
  prometheus::Family<prometheus::Gauge>& workers_connected_;
  prometheus::Family<prometheus::Gauge>& workers_busy_;
  const PerEpochFigure<prometheus::Family<prometheus::Gauge>> job_figures_;
  prometheus::Family<prometheus::Gauge>& job_epoch_progress_;
  prometheus::Family<prometheus::Gauge>& job_eta_;
  prometheus::Family<prometheus::Gauge>& worker_lease_age_;
  prometheus::Family<prometheus::Histogram>& queue_wait_;
  prometheus::Family<prometheus::Histogram>& job_duration_;
  prometheus::Family<prometheus::Histogram>& epoch_duration_;
  prometheus::Family<prometheus::Gauge>& sweeps_;
  prometheus::Family<prometheus::Gauge>& sweep_trials_;
  prometheus::Family<prometheus::Gauge>& sweep_best_objective_;
  std::shared_ptr<prometheus::Collectable> collectable_;

  std::mutex mutex_;  // guards series_ and workers_seen_
  std::map<std::string, JobSeries> series_;
  std::map<std::string, std::chrono::steady_clock::time_point> workers_seen_;
  std::set<std::string> sweeps_with_best_;  // sweep ids with a best-objective series
};

}  // namespace tl::server
