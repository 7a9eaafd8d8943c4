#include "worker/epoch_metrics_proto.h"

namespace tl::worker {

tl::v1::EpochMetrics EpochMetricsProto(const engine::EpochStats& stats, int attempt) {
  tl::v1::EpochMetrics metrics;
  metrics.set_attempt(attempt);
#define TL_EPOCH_TO_PROTO(member, ...) metrics.set_##member(stats.member);
  TL_EPOCH_METRICS(TL_EPOCH_TO_PROTO, TL_EPOCH_METRICS_SKIP)
#undef TL_EPOCH_TO_PROTO
  return metrics;
}

}  // namespace tl::worker
