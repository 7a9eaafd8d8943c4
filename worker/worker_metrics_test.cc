#include "worker/worker_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <chrono>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace tl::worker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Labels = std::map<std::string, std::string>;

// The value of one series in a scrape of `metrics`; nullopt when absent.
std::optional<double> Value(const WorkerMetrics& metrics, const std::string& name,
                            const Labels& labels = {}) {
  for (const prometheus::MetricFamily& family : metrics.collectable()->Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      Labels found;
      for (const prometheus::ClientMetric::Label& label : metric.label) found[label.name] = label.value;
      if (found != labels) continue;
      return family.type == prometheus::MetricType::Counter ? metric.counter.value
                                                            : metric.gauge.value;
    }
  }
  return std::nullopt;
}

// VmRSS of /proc/self/status, which the kernel fills from the same counters
// as statm, in kB.
int64_t StatusResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      int64_t kilobytes = 0;
      status >> kilobytes;
      return kilobytes * 1024;
    }
  }
  return -1;
}

engine::BatchProgress Batch(int epoch, int64_t batch, double data_wait_seconds) {
  engine::BatchProgress progress;
  progress.epoch = epoch;
  progress.epochs = 2;
  progress.batch = batch;
  progress.batches = 3;
  progress.images_per_second = 100.0 * batch;
  progress.data_wait_seconds = data_wait_seconds;
  return progress;
}

TEST(ProcessStatsTest, ResidentMemoryFollowsWhatTheProcessTouches) {
  const std::optional<int64_t> before = ResidentMemoryBytes();
  ASSERT_TRUE(before.has_value());
  EXPECT_NEAR(static_cast<double>(*before), static_cast<double>(StatusResidentBytes()),
              0.1 * static_cast<double>(*before));
  std::vector<char> block(64 << 20, 1);  // written, so resident
  const std::optional<int64_t> after = ResidentMemoryBytes();
  EXPECT_GE(*after - *before, 48 << 20);
  EXPECT_EQ(block[block.size() / 2], 1);
}

TEST(ProcessStatsTest, CpuSecondsGrowWithWork) {
  const double start = CpuSeconds();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  volatile double sink = 0;
  while (CpuSeconds() - start < 0.05 && std::chrono::steady_clock::now() < deadline) {
    for (int i = 0; i < 100000; ++i) sink = sink + i;
  }
  EXPECT_GE(CpuSeconds() - start, 0.05);
}

TEST(WorkerMetricsTest, ScrapeReadsTheProcessFigures) {
  WorkerMetrics metrics("cpu");
  const double cpu_before = CpuSeconds();
  const std::optional<double> cpu = Value(metrics, "process_cpu_seconds_total");
  ASSERT_TRUE(cpu.has_value());
  EXPECT_GE(*cpu, cpu_before);
  const std::optional<double> resident = Value(metrics, "process_resident_memory_bytes");
  ASSERT_TRUE(resident.has_value());
  EXPECT_NEAR(*resident, static_cast<double>(StatusResidentBytes()), 0.1 * *resident);
}

TEST(WorkerMetricsTest, BatchesAndDataWaitAccumulateAcrossEpochsAndJobs) {
  WorkerMetrics metrics("cpu");
  EXPECT_EQ(Value(metrics, "tl_worker_batches_total"), 0);
  EXPECT_EQ(Value(metrics, "tl_worker_data_wait_seconds_total"), 0);
  // The progress holds each epoch's wait so far.
  metrics.OnBatch("j1", Batch(1, 1, 0.5));
  metrics.OnBatch("j1", Batch(1, 2, 0.75));
  metrics.OnBatch("j1", Batch(1, 3, 1.0));
  metrics.OnBatch("j1", Batch(2, 1, 0.25));
  EXPECT_EQ(Value(metrics, "tl_worker_batches_total"), 4);
  EXPECT_EQ(Value(metrics, "tl_worker_data_wait_seconds_total"), 1.25);
  EXPECT_EQ(Value(metrics, "tl_worker_job_images_per_second", {{"job_id", "j1"}}), 100);
  metrics.OnJobEnded("j1");
  metrics.OnBatch("j2", Batch(1, 1, 0.5));
  EXPECT_EQ(Value(metrics, "tl_worker_batches_total"), 5);
  EXPECT_EQ(Value(metrics, "tl_worker_data_wait_seconds_total"), 1.75);
}

TEST(WorkerMetricsTest, TheJobSeriesGoesWhenTheJobEnds) {
  WorkerMetrics metrics("cpu");
  metrics.OnBatch("j1", Batch(1, 2, 0));
  prometheus::TextSerializer serializer;
  EXPECT_THAT(serializer.Serialize(metrics.collectable()->Collect()),
              HasSubstr("tl_worker_job_images_per_second{job_id=\"j1\"} 200"));
  metrics.OnJobEnded("other");  // not the running job: nothing changes
  EXPECT_TRUE(Value(metrics, "tl_worker_job_images_per_second", {{"job_id", "j1"}}));
  metrics.OnJobEnded("j1");
  EXPECT_THAT(serializer.Serialize(metrics.collectable()->Collect()), Not(HasSubstr("job_id")));
  // A job that starts without the last one's end being seen replaces its series.
  metrics.OnBatch("j2", Batch(1, 1, 0));
  metrics.OnBatch("j3", Batch(1, 1, 0));
  EXPECT_FALSE(Value(metrics, "tl_worker_job_images_per_second", {{"job_id", "j2"}}));
  EXPECT_TRUE(Value(metrics, "tl_worker_job_images_per_second", {{"job_id", "j3"}}));
}

TEST(WorkerMetricsTest, EachSlotsJobHasItsOwnSeriesAndWaitAccount) {
  WorkerMetrics metrics("cpu", /*slots=*/2);
  EXPECT_EQ(Value(metrics, "tl_worker_slots"), 2);
  // Two jobs' batches interleave; each epoch's wait is counted from its own job's figures.
  metrics.OnBatch("a", Batch(1, 1, 0.5));
  metrics.OnBatch("b", Batch(1, 1, 0.25));
  metrics.OnBatch("a", Batch(1, 2, 0.75));
  metrics.OnBatch("b", Batch(1, 3, 1.25));
  EXPECT_EQ(Value(metrics, "tl_worker_batches_total"), 4);
  EXPECT_EQ(Value(metrics, "tl_worker_data_wait_seconds_total"), 0.75 + 1.25);
  EXPECT_EQ(Value(metrics, "tl_worker_job_images_per_second", {{"job_id", "a"}}), 200);
  EXPECT_EQ(Value(metrics, "tl_worker_job_images_per_second", {{"job_id", "b"}}), 300);
  metrics.OnJobEnded("a");
  EXPECT_FALSE(Value(metrics, "tl_worker_job_images_per_second", {{"job_id", "a"}}));
  EXPECT_TRUE(Value(metrics, "tl_worker_job_images_per_second", {{"job_id", "b"}}));
  // A third job while two have series: the one heard from longest ago goes.
  metrics.OnBatch("c", Batch(1, 1, 0));
  metrics.OnBatch("b", Batch(1, 1, 0));
  metrics.OnBatch("d", Batch(1, 1, 0));
  EXPECT_FALSE(Value(metrics, "tl_worker_job_images_per_second", {{"job_id", "c"}}));
  EXPECT_TRUE(Value(metrics, "tl_worker_job_images_per_second", {{"job_id", "b"}}));
  EXPECT_TRUE(Value(metrics, "tl_worker_job_images_per_second", {{"job_id", "d"}}));
}

#ifndef TL_WITH_C10_CUDA
TEST(WorkerMetricsTest, CpuBuildsExportNoDeviceMemory) {
  EXPECT_FALSE(CudaMemory(0).has_value());
  WorkerMetrics metrics("cuda:0");
  EXPECT_THAT(prometheus::TextSerializer().Serialize(metrics.collectable()->Collect()),
              Not(HasSubstr("tl_worker_cuda_memory_allocated_bytes{")));
}
#endif

}  // namespace
}  // namespace tl::worker
