#include "server/metrics/server_metrics.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <string>

#include "common/refreshed_registry.h"

namespace tl::server {
namespace {

using ::tl::v1::Job;

// Progress reports set the throughput gauge between epochs.
static_assert(!kEpochMetrics[EpochMetricIndex::images_per_second].gauge.empty());

std::string LowerStateName(Job::State state) {
  std::string name = Job::State_Name(state);
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return name;
}

std::string LowerSweepStateName(tl::v1::Sweep::State state) {
  std::string name = tl::v1::Sweep::State_Name(state);
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return name;
}

constexpr tl::v1::Sweep::State kSweepStates[] = {tl::v1::Sweep::RUNNING, tl::v1::Sweep::PAUSED,
                                                 tl::v1::Sweep::SUCCEEDED, tl::v1::Sweep::FAILED,
                                                 tl::v1::Sweep::CANCELLED};
// The states a trial's series cover, each present (zero or not) while the sweep runs.
constexpr Job::State kTrialStates[] = {Job::QUEUED,    Job::ASSIGNED, Job::RUNNING,
                                       Job::PAUSED,    Job::SUCCEEDED, Job::FAILED,
                                       Job::CANCELLED, Job::STOPPED_EARLY};

prometheus::Family<prometheus::Gauge>& JobGauge(prometheus::Registry& registry,
                                                const std::string& name,
                                                const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}

// A gauge of each epoch figure that common/epoch_metrics.h gives one.
std::array<prometheus::Family<prometheus::Gauge>*, kEpochMetricCount> EpochFigureGauges(
    prometheus::Registry& registry) {
  std::array<prometheus::Family<prometheus::Gauge>*, kEpochMetricCount> families{};
  for (size_t i = 0; i < kEpochMetricCount; ++i) {
    const EpochMetricInfo& figure = kEpochMetrics[i];
    if (figure.gauge.empty()) continue;
    families[i] = &JobGauge(registry, std::string(figure.gauge), std::string(figure.help));
  }
  return families;
}

prometheus::Family<prometheus::Histogram>& SecondsHistogram(prometheus::Registry& registry,
                                                            const std::string& name,
                                                            const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry);
}

// Buckets in seconds. Queue waits range from a free worker's instant to a
// busy cluster's day; jobs from a minute to days; epochs from a tiny
// dataset's fraction of a second to an hour.
const prometheus::Histogram::BucketBoundaries kQueueWaitBuckets = {
    0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600};
const prometheus::Histogram::BucketBoundaries kJobDurationBuckets = {
    1, 10, 60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 24 * 3600, 72 * 3600};
const prometheus::Histogram::BucketBoundaries kEpochDurationBuckets = {
    0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};

double SecondsOf(const google::protobuf::Timestamp& time) {
  return static_cast<double>(time.seconds()) + time.nanos() * 1e-9;
}

double SecondsBetween(const google::protobuf::Timestamp& from,
                      const google::protobuf::Timestamp& to) {
  return std::max(0.0, SecondsOf(to) - SecondsOf(from));
}

double UnixSecondsNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
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
      job_figures_(EpochFigureGauges(*registry_)),
      job_epoch_progress_(JobGauge(*registry_, "tl_job_epoch_progress_ratio",
                                   "Fraction of the current epoch's batches done.")),
      job_eta_(JobGauge(*registry_, "tl_job_eta_seconds",
                        "Estimated seconds until a running job's last epoch ends.")),
      worker_lease_age_(JobGauge(*registry_, "tl_worker_lease_age_seconds",
                                 "Seconds since a connected worker was last heard from.")),
      queue_wait_(SecondsHistogram(*registry_, "tl_job_queue_wait_seconds",
                                   "Time jobs waited in the queue before an assignment.")),
      job_duration_(SecondsHistogram(*registry_, "tl_job_duration_seconds",
                                     "Time from submission to the end state, by outcome.")),
      epoch_duration_(SecondsHistogram(*registry_, "tl_epoch_duration_seconds",
                                       "Duration of finished epochs, validation included.")),
      sweeps_(JobGauge(*registry_, "tl_sweeps", "Stored sweeps by state.")),
      sweep_trials_(JobGauge(*registry_, "tl_sweep_trials",
                             "Trials of each sweep that has not ended, by job state.")),
      sweep_best_objective_(JobGauge(*registry_, "tl_sweep_best_objective",
                                     "Best objective of a sweep's succeeded trials so far.")),
      collectable_(std::make_shared<RefreshedRegistry>(registry_,
                                                       [this] { RefreshLeaseAges(); })) {
  // Every state and outcome exists from the start, so that rate() and
  // dashboards see zeros instead of missing series.
  for (Job::State state : {Job::QUEUED, Job::ASSIGNED, Job::RUNNING, Job::SUCCEEDED, Job::FAILED,
                           Job::CANCELLED, Job::STOPPED_EARLY}) {
    jobs_.Add({{"state", LowerStateName(state)}}).Set(0);
  }
  for (Job::State outcome : {Job::SUCCEEDED, Job::FAILED, Job::CANCELLED, Job::STOPPED_EARLY}) {
    finished_.Add({{"outcome", LowerStateName(outcome)}});
    job_duration_.Add({{"outcome", LowerStateName(outcome)}}, kJobDurationBuckets);
  }
  for (tl::v1::Sweep::State state : kSweepStates) sweeps_.Add({{"state", LowerSweepStateName(state)}}).Set(0);
  queue_wait_.Add({}, kQueueWaitBuckets);
  epoch_duration_.Add({}, kEpochDurationBuckets);
  submitted_.Add({});
  queue_depth_.Add({}).Set(0);
  workers_connected_.Add({}).Set(0);
  workers_busy_.Add({}).Set(0);
}

void ServerMetrics::JobSubmitted() { submitted_.Add({}).Increment(); }

void ServerMetrics::JobFinished(const Job& job) {
  const std::map<std::string, std::string> labels = {{"outcome", LowerStateName(job.state())}};
  finished_.Add(labels).Increment();
  if (job.has_create_time() && job.has_end_time()) {
    job_duration_.Add(labels, kJobDurationBuckets)
        .Observe(SecondsBetween(job.create_time(), job.end_time()));
  }
}

void ServerMetrics::JobAssigned(const Job& job) {
  if (!job.has_update_time()) return;
  queue_wait_.Add({}, kQueueWaitBuckets)
      .Observe(std::max(0.0, UnixSecondsNow() - SecondsOf(job.update_time())));
}

void ServerMetrics::SetJobsInState(Job::State state, int64_t count) {
  jobs_.Add({{"state", LowerStateName(state)}}).Set(static_cast<double>(count));
  if (state == Job::QUEUED) queue_depth_.Add({}).Set(static_cast<double>(count));
}

void ServerMetrics::SetWorkers(int64_t connected, int64_t busy) {
  workers_connected_.Add({}).Set(static_cast<double>(connected));
  workers_busy_.Add({}).Set(static_cast<double>(busy));
}

void ServerMetrics::WorkerSeen(const std::string& worker_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  workers_seen_[worker_id] = std::chrono::steady_clock::now();
}

void ServerMetrics::WorkerGone(const std::string& worker_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (workers_seen_.erase(worker_id) == 0) return;
  worker_lease_age_.Remove(&worker_lease_age_.Add({{"worker_id", worker_id}}));
}

void ServerMetrics::RefreshLeaseAges() {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  for (const auto& [worker_id, seen] : workers_seen_) {
    worker_lease_age_.Add({{"worker_id", worker_id}})
        .Set(std::chrono::duration<double>(now - seen).count());
  }
}

ServerMetrics::JobSeries& ServerMetrics::SeriesFor(const std::string& job_id) {
  auto it = series_.find(job_id);
  if (it != series_.end()) return it->second;
  const std::map<std::string, std::string> labels = {{"job_id", job_id}};
  JobSeries series;
  // The validation figures wait for an epoch of a job that has validation images
  // (EpochFinished): before it they would be zeros that measured nothing.
  for (size_t i = 0; i < kEpochMetricCount; ++i) {
    if (job_figures_[i] != nullptr && !IsValidationFigure(i)) {
      series.figures[i] = &job_figures_[i]->Add(labels);
    }
  }
  series.epoch_progress = &job_epoch_progress_.Add(labels);
  return series_.emplace(job_id, series).first->second;
}

void ServerMetrics::UpdateEta(const std::string& job_id, JobSeries& series) {
  const std::optional<double> seconds_left =
      series.estimator.SecondsLeft(JobEta::Clock::now());
  if (!seconds_left) return;
  if (series.eta == nullptr) series.eta = &job_eta_.Add({{"job_id", job_id}});
  series.eta->Set(*seconds_left);
}

void ServerMetrics::EpochFinished(const std::string& job_id, const tl::v1::EpochMetrics& metrics,
                                  bool validated) {
  std::lock_guard<std::mutex> lock(mutex_);
  JobSeries& series = SeriesFor(job_id);
  // A validation figure of a job without validation images is a zero that measured nothing:
  // its series goes (a dashboard then shows no line rather than a model stuck at 0).
  const std::map<std::string, std::string> labels = {{"job_id", job_id}};
#define TL_SET_JOB_GAUGE(member, ...)                                                 \
  {                                                                                   \
    constexpr size_t i = EpochMetricIndex::member;                                    \
    prometheus::Gauge*& gauge = series.figures[i];                                    \
    if (job_figures_[i] != nullptr && (validated || !IsValidationFigure(i))) {        \
      if (gauge == nullptr) gauge = &job_figures_[i]->Add(labels);                    \
      gauge->Set(static_cast<double>(metrics.member()));                              \
    } else if (gauge != nullptr) {                                                    \
      job_figures_[i]->Remove(gauge);                                                 \
      gauge = nullptr;                                                                \
    }                                                                                 \
  }
  TL_EPOCH_METRICS(TL_SET_JOB_GAUGE, TL_EPOCH_METRICS_SKIP)
#undef TL_SET_JOB_GAUGE
  epoch_duration_.Add({}, kEpochDurationBuckets).Observe(metrics.seconds());
  series.estimator.EpochFinished(metrics.epoch(), metrics.seconds(), JobEta::Clock::now());
  UpdateEta(job_id, series);
}

void ServerMetrics::Progressed(const std::string& job_id, const tl::v1::Progress& progress) {
  // AUTO's probe runs are not the job's epochs: they would move its epoch
  // progress and estimate backwards once training starts.
  if (progress.phase() == tl::v1::Progress::AUTO_PROBE) return;
  std::lock_guard<std::mutex> lock(mutex_);
  JobSeries& series = SeriesFor(job_id);
  if (progress.batches() > 0) {
    series.epoch_progress->Set(static_cast<double>(progress.batch()) / progress.batches());
  }
  series.figures[EpochMetricIndex::images_per_second]->Set(progress.images_per_second());
  series.estimator.Progressed(progress.epoch(), progress.epochs(), progress.batch(),
                              progress.batches(), JobEta::Clock::now());
  UpdateEta(job_id, series);
}

void ServerMetrics::RemoveJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = series_.find(job_id);
  if (it == series_.end()) return;
  for (size_t i = 0; i < kEpochMetricCount; ++i) {
    if (job_figures_[i] != nullptr && it->second.figures[i] != nullptr) {
      job_figures_[i]->Remove(it->second.figures[i]);
    }
  }
  job_epoch_progress_.Remove(it->second.epoch_progress);
  if (it->second.eta != nullptr) job_eta_.Remove(it->second.eta);
  series_.erase(it);
}

void ServerMetrics::SetSweepsInState(tl::v1::Sweep::State state, int64_t count) {
  sweeps_.Add({{"state", LowerSweepStateName(state)}}).Set(static_cast<double>(count));
}

void ServerMetrics::SweepServed(const std::string& sweep_id,
                                const std::map<Job::State, int>& trials,
                                std::optional<double> best_objective) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Job::State state : kTrialStates) {
    auto count = trials.find(state);
    sweep_trials_.Add({{"sweep_id", sweep_id}, {"state", LowerStateName(state)}})
        .Set(count == trials.end() ? 0 : count->second);
  }
  if (best_objective) {
    sweep_best_objective_.Add({{"sweep_id", sweep_id}}).Set(*best_objective);
    sweeps_with_best_.insert(sweep_id);
  }
}

void ServerMetrics::RemoveSweep(const std::string& sweep_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Job::State state : kTrialStates) {
    sweep_trials_.Remove(
        &sweep_trials_.Add({{"sweep_id", sweep_id}, {"state", LowerStateName(state)}}));
  }
  if (sweeps_with_best_.erase(sweep_id) > 0) {
    sweep_best_objective_.Remove(&sweep_best_objective_.Add({{"sweep_id", sweep_id}}));
  }
}

}  // namespace tl::server
