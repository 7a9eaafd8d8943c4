// An engine epoch as the tl.v1.EpochMetrics the worker reports: every figure
// common/epoch_metrics.h lists for the wire, under its own name.
#pragma once

#include "tl/v1/jobs.pb.h"
#include "train/epoch_stats.h"

namespace tl::worker {

tl::v1::EpochMetrics EpochMetricsProto(const engine::EpochStats& stats, int attempt);

}  // namespace tl::worker
