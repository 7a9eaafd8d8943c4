#include "server/metrics/server_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string>

#include "common/epoch_metrics.h"

namespace tl::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::tl::v1::Job;
using Labels = std::map<std::string, std::string>;

const prometheus::ClientMetric* Find(const std::vector<prometheus::MetricFamily>& families,
                                     const std::string& name, const Labels& labels) {
  for (const prometheus::MetricFamily& family : families) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      Labels found;
      for (const prometheus::ClientMetric::Label& label : metric.label) found[label.name] = label.value;
      if (found == labels) return &metric;
    }
  }
  return nullptr;
}

std::optional<double> Gauge(ServerMetrics& metrics, const std::string& name, const Labels& labels) {
  const auto families = metrics.collectable()->Collect();
  const prometheus::ClientMetric* metric = Find(families, name, labels);
  if (metric == nullptr) return std::nullopt;
  return metric->gauge.value;
}

// (observations, sum) of a histogram series.
std::pair<uint64_t, double> Histogram(ServerMetrics& metrics, const std::string& name,
                                      const Labels& labels = {}) {
  const auto families = metrics.collectable()->Collect();
  const prometheus::ClientMetric* metric = Find(families, name, labels);
  if (metric == nullptr) return {0, -1};
  return {metric->histogram.sample_count, metric->histogram.sample_sum};
}

google::protobuf::Timestamp SecondsAgo(double seconds) {
  const auto now = std::chrono::system_clock::now() -
                   std::chrono::duration_cast<std::chrono::system_clock::duration>(
                       std::chrono::duration<double>(seconds));
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  google::protobuf::Timestamp time;
  time.set_seconds(micros / 1000000);
  time.set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
  return time;
}

tl::v1::Progress ProgressOf(int epoch, int epochs, int batch, int batches) {
  tl::v1::Progress progress;
  progress.set_epoch(epoch);
  progress.set_epochs(epochs);
  progress.set_batch(batch);
  progress.set_batches(batches);
  progress.set_images_per_second(80);
  return progress;
}

TEST(ServerMetricsTest, HistogramsExistAtZeroFromTheStart) {
  ServerMetrics metrics;
  EXPECT_EQ(Histogram(metrics, "tl_job_queue_wait_seconds"), std::make_pair(uint64_t{0}, 0.0));
  EXPECT_EQ(Histogram(metrics, "tl_epoch_duration_seconds"), std::make_pair(uint64_t{0}, 0.0));
  for (const char* outcome : {"succeeded", "failed", "cancelled"}) {
    EXPECT_EQ(Histogram(metrics, "tl_job_duration_seconds", {{"outcome", outcome}}).first, 0u)
        << outcome;
  }
}

TEST(ServerMetricsTest, QueueWaitIsTheTimeSinceTheJobEnteredTheQueue) {
  ServerMetrics metrics;
  Job job;
  *job.mutable_update_time() = SecondsAgo(42);
  metrics.JobAssigned(job);
  const auto [count, sum] = Histogram(metrics, "tl_job_queue_wait_seconds");
  EXPECT_EQ(count, 1u);
  EXPECT_NEAR(sum, 42, 5);
}

TEST(ServerMetricsTest, JobDurationRunsFromSubmissionToTheEndByOutcome) {
  ServerMetrics metrics;
  Job job;
  job.set_state(Job::FAILED);
  job.mutable_create_time()->set_seconds(1000);
  job.mutable_end_time()->set_seconds(1090);
  job.mutable_end_time()->set_nanos(500000000);
  metrics.JobFinished(job);
  EXPECT_EQ(Histogram(metrics, "tl_job_duration_seconds", {{"outcome", "failed"}}),
            std::make_pair(uint64_t{1}, 90.5));
  EXPECT_EQ(Histogram(metrics, "tl_job_duration_seconds", {{"outcome", "succeeded"}}).first, 0u);
}

TEST(ServerMetricsTest, EpochsFeedTheJobGaugesTheEpochHistogramAndTheEta) {
  ServerMetrics metrics;
  const Labels job = {{"job_id", "j1"}};
  metrics.Progressed("j1", ProgressOf(1, 4, 2, 8));
  tl::v1::EpochMetrics epoch;
  epoch.set_epoch(1);
  epoch.set_val_macro_f1(0.75);
  epoch.set_seconds(20);
  metrics.EpochFinished("j1", epoch);
  EXPECT_EQ(Gauge(metrics, "tl_job_val_macro_f1", job), 0.75);
  EXPECT_EQ(Histogram(metrics, "tl_epoch_duration_seconds"), std::make_pair(uint64_t{1}, 20.0));
  EXPECT_EQ(Gauge(metrics, "tl_job_eta_seconds", job), 60);  // three epochs of 20 s
  metrics.Progressed("j1", ProgressOf(2, 4, 4, 8));
  EXPECT_EQ(Gauge(metrics, "tl_job_eta_seconds", job), 50);
}

TEST(ServerMetricsTest, AJobWithoutValidationImagesHasNoValidationGauges) {
  ServerMetrics metrics;
  const Labels job = {{"job_id", "j1"}};
  tl::v1::EpochMetrics epoch;
  epoch.set_epoch(1);
  epoch.set_train_loss(0.5);
  // Not before the first epoch either: progress makes the job's series.
  metrics.Progressed("j1", ProgressOf(1, 4, 2, 8));
  EXPECT_EQ(Gauge(metrics, "tl_job_val_accuracy", job), std::nullopt);
  metrics.EpochFinished("j1", epoch, /*validated=*/false);
  metrics.EpochFinished("j1", epoch, /*validated=*/false);
  EXPECT_EQ(Gauge(metrics, "tl_job_train_loss", job), 0.5);
  EXPECT_EQ(Gauge(metrics, "tl_job_val_accuracy", job), std::nullopt);
  EXPECT_EQ(Gauge(metrics, "tl_job_val_loss", job), std::nullopt);
  EXPECT_EQ(Gauge(metrics, "tl_job_val_macro_f1", job), std::nullopt);
  metrics.RemoveJob("j1");
  EXPECT_EQ(Gauge(metrics, "tl_job_train_loss", job), std::nullopt);
  // Another job's are there.
  epoch.set_val_accuracy(0.75);
  metrics.EpochFinished("j2", epoch);
  EXPECT_EQ(Gauge(metrics, "tl_job_val_accuracy", {{"job_id", "j2"}}), 0.75);
}

TEST(ServerMetricsTest, AutoProbeProgressLeavesTheJobsEpochGaugesAlone) {
  ServerMetrics metrics;
  const Labels job = {{"job_id", "j1"}};
  tl::v1::Progress probe = ProgressOf(2, 6, 4, 8);  // run 2 of 6, half done
  probe.set_phase(tl::v1::Progress::AUTO_PROBE);
  metrics.Progressed("j1", probe);
  EXPECT_EQ(Gauge(metrics, "tl_job_epoch_progress_ratio", job), std::nullopt);
  metrics.Progressed("j1", ProgressOf(1, 4, 2, 8));
  EXPECT_EQ(Gauge(metrics, "tl_job_epoch_progress_ratio", job), 0.25);
  metrics.Progressed("j1", probe);  // a late probe report moves nothing back
  EXPECT_EQ(Gauge(metrics, "tl_job_epoch_progress_ratio", job), 0.25);
}

// Every field of an epoch report set to a value of its own, by reflection.
tl::v1::EpochMetrics DistinctEpochMetrics() {
  tl::v1::EpochMetrics metrics;
  const google::protobuf::Descriptor* message = metrics.GetDescriptor();
  const google::protobuf::Reflection* reflection = metrics.GetReflection();
  for (int i = 0; i < message->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = message->field(i);
    if (field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_INT32) {
      reflection->SetInt32(&metrics, field, i + 1);
    } else if (field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_DOUBLE) {
      reflection->SetDouble(&metrics, field, i + 1.25);
    } else {
      ADD_FAILURE() << field->name() << " is neither an int32 nor a double";
    }
  }
  return metrics;
}

TEST(ServerMetricsTest, EveryListedGaugeShowsItsEpochFigure) {
  ServerMetrics metrics;
  const tl::v1::EpochMetrics epoch = DistinctEpochMetrics();
  metrics.EpochFinished("j1", epoch);
  const auto families = metrics.collectable()->Collect();
  for (const EpochMetricInfo& figure : kEpochMetrics) {
    if (figure.gauge.empty()) continue;
    const std::string name(figure.gauge);
    const auto family = std::find_if(families.begin(), families.end(),
                                     [&](const auto& found) { return found.name == name; });
    ASSERT_NE(family, families.end()) << name;
    EXPECT_EQ(family->help, figure.help) << name;
    EXPECT_EQ(family->type, prometheus::MetricType::Gauge) << name;
    const google::protobuf::FieldDescriptor* field =
        epoch.GetDescriptor()->FindFieldByName(std::string(figure.name));
    ASSERT_NE(field, nullptr) << figure.name;
    const double sent = field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_INT32
                            ? epoch.GetReflection()->GetInt32(epoch, field)
                            : epoch.GetReflection()->GetDouble(epoch, field);
    EXPECT_EQ(Gauge(metrics, name, {{"job_id", "j1"}}), sent) << name;
  }
}

TEST(ServerMetricsTest, EverySeriesOfAJobGoesWhenItIsRemoved) {
  ServerMetrics metrics;
  metrics.Progressed("j1", ProgressOf(1, 2, 1, 2));
  tl::v1::EpochMetrics epoch;
  epoch.set_epoch(1);
  epoch.set_seconds(3);
  metrics.EpochFinished("j1", epoch);
  metrics.Progressed("j2", ProgressOf(1, 2, 1, 2));
  prometheus::TextSerializer serializer;
  const std::string before = serializer.Serialize(metrics.collectable()->Collect());
  for (const char* name : {"tl_job_epoch", "tl_job_epoch_progress_ratio", "tl_job_train_loss",
                           "tl_job_val_loss", "tl_job_val_accuracy", "tl_job_val_macro_f1",
                           "tl_job_images_per_second", "tl_job_eta_seconds"}) {
    EXPECT_THAT(before, HasSubstr(std::string(name) + "{job_id=\"j1\"}")) << name;
  }
  for (const EpochMetricInfo& figure : kEpochMetrics) {
    if (figure.gauge.empty()) continue;
    EXPECT_THAT(before, HasSubstr(std::string(figure.gauge) + "{job_id=\"j1\"}")) << figure.gauge;
  }
  metrics.RemoveJob("j1");
  const std::string after = serializer.Serialize(metrics.collectable()->Collect());
  EXPECT_THAT(after, Not(HasSubstr("job_id=\"j1\"")));
  EXPECT_THAT(after, HasSubstr("tl_job_epoch{job_id=\"j2\"}"));
}

TEST(ServerMetricsTest, LeaseAgeGrowsUntilTheWorkerIsSeenAgainAndGoesWithIt) {
  ServerMetrics metrics;
  const Labels worker = {{"worker_id", "w1"}};
  metrics.WorkerSeen("w1");
  // Waits until the age has visibly grown, within a bounded time.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  double age = 0;
  while (std::chrono::steady_clock::now() < deadline && age < 0.05) {
    age = Gauge(metrics, "tl_worker_lease_age_seconds", worker).value_or(-1);
  }
  EXPECT_GE(age, 0.05);
  metrics.WorkerSeen("w1");
  EXPECT_LT(*Gauge(metrics, "tl_worker_lease_age_seconds", worker), age);
  metrics.WorkerGone("w1");
  EXPECT_FALSE(Gauge(metrics, "tl_worker_lease_age_seconds", worker).has_value());
  metrics.WorkerGone("never-seen");  // harmless
}

}  // namespace
}  // namespace tl::server
