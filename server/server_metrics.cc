#include "server/server_metrics.h"

#include <algorithm>
#include <cctype>

namespace tl::server {
namespace {

using ::tl::v1::Job;

std::string LowerStateName(Job::State state) {
  std::string name = Job::State_Name(state);
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return name;
}

prometheus::Family<prometheus::Gauge>& JobGauge(prometheus::Registry& registry,
                                                const std::string& name,
                                                const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}

}  // namespace

ServerMetrics::ServerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      submitted_(prometheus::BuildCounter()
                     .Name("tl_jobs_submitted_total")
                     .Help("Jobs accepted by SubmitJob.")
                     .Register(*registry_)),
      finished_(prometheus::BuildCounter()
                    .Name("tl_jobs_finished_total")
                    .Help("Jobs that reached an end state, by outcome.")
                    .Register(*registry_)),
      jobs_(JobGauge(*registry_, "tl_jobs", "Stored jobs by state.")),
      queue_depth_(JobGauge(*registry_, "tl_queue_depth", "Jobs waiting for a worker.")),
      workers_connected_(JobGauge(*registry_, "tl_workers_connected", "Connected workers.")),
      workers_busy_(JobGauge(*registry_, "tl_workers_busy", "Workers holding a job.")),
      job_epoch_(JobGauge(*registry_, "tl_job_epoch", "Last finished epoch of a running job.")),
      job_epoch_progress_(JobGauge(*registry_, "tl_job_epoch_progress_ratio",
                                   "Fraction of the current epoch's batches done.")),
      job_train_loss_(JobGauge(*registry_, "tl_job_train_loss",
                               "Training loss of a running job's last epoch.")),
      job_val_loss_(JobGauge(*registry_, "tl_job_val_loss",
                             "Validation loss of a running job's last epoch.")),
      job_val_accuracy_(JobGauge(*registry_, "tl_job_val_accuracy",
                                 "Validation accuracy of a running job's last epoch.")),
      job_images_per_second_(JobGauge(*registry_, "tl_job_images_per_second",
                                      "Training throughput of a running job.")) {
  // Every state and outcome exists from the start, so that rate() and
  // dashboards see zeros instead of missing series.
  for (Job::State state : {Job::QUEUED, Job::ASSIGNED, Job::RUNNING, Job::SUCCEEDED, Job::FAILED,
                           Job::CANCELLED}) {
    jobs_.Add({{"state", LowerStateName(state)}}).Set(0);
  }
  for (Job::State outcome : {Job::SUCCEEDED, Job::FAILED, Job::CANCELLED}) {
    finished_.Add({{"outcome", LowerStateName(outcome)}});
  }
  submitted_.Add({});
  queue_depth_.Add({}).Set(0);
  workers_connected_.Add({}).Set(0);
  workers_busy_.Add({}).Set(0);
}

void ServerMetrics::JobSubmitted() { submitted_.Add({}).Increment(); }

void ServerMetrics::JobFinished(Job::State outcome) {
  finished_.Add({{"outcome", LowerStateName(outcome)}}).Increment();
}

void ServerMetrics::SetJobsInState(Job::State state, int64_t count) {
  jobs_.Add({{"state", LowerStateName(state)}}).Set(static_cast<double>(count));
  if (state == Job::QUEUED) queue_depth_.Add({}).Set(static_cast<double>(count));
}

void ServerMetrics::SetWorkers(int64_t connected, int64_t busy) {
  workers_connected_.Add({}).Set(static_cast<double>(connected));
  workers_busy_.Add({}).Set(static_cast<double>(busy));
}

ServerMetrics::JobSeries& ServerMetrics::SeriesFor(const std::string& job_id) {
  auto it = series_.find(job_id);
  if (it != series_.end()) return it->second;
  const std::map<std::string, std::string> labels = {{"job_id", job_id}};
  JobSeries series{&job_epoch_.Add(labels),      &job_epoch_progress_.Add(labels),
                   &job_train_loss_.Add(labels), &job_val_loss_.Add(labels),
                   &job_val_accuracy_.Add(labels), &job_images_per_second_.Add(labels)};
  return series_.emplace(job_id, series).first->second;
}

void ServerMetrics::EpochFinished(const std::string& job_id, const tl::v1::EpochMetrics& metrics) {
  std::lock_guard<std::mutex> lock(mutex_);
  JobSeries& series = SeriesFor(job_id);
  series.epoch->Set(metrics.epoch());
  series.train_loss->Set(metrics.train_loss());
  series.val_loss->Set(metrics.val_loss());
  series.val_accuracy->Set(metrics.val_accuracy());
  series.images_per_second->Set(metrics.images_per_second());
}

void ServerMetrics::Progressed(const std::string& job_id, const tl::v1::Progress& progress) {
  std::lock_guard<std::mutex> lock(mutex_);
  JobSeries& series = SeriesFor(job_id);
  if (progress.batches() > 0) {
    series.epoch_progress->Set(static_cast<double>(progress.batch()) / progress.batches());
  }
  series.images_per_second->Set(progress.images_per_second());
}

void ServerMetrics::RemoveJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = series_.find(job_id);
  if (it == series_.end()) return;
  job_epoch_.Remove(it->second.epoch);
  job_epoch_progress_.Remove(it->second.epoch_progress);
  job_train_loss_.Remove(it->second.train_loss);
  job_val_loss_.Remove(it->second.val_loss);
  job_val_accuracy_.Remove(it->second.val_accuracy);
  job_images_per_second_.Remove(it->second.images_per_second);
  series_.erase(it);
}

}  // namespace tl::server
