// The figures of a finished epoch, listed once. The engine's EpochStats, its
// JSON (metrics.json and checkpoints), what data-parallel ranks take from
// rank 0, the worker's tl.v1.EpochMetrics and the scheduler's per-job gauges
// all follow this list, so a new figure is one entry here, its computation
// in the trainer and, when it travels, its field in proto/tl/v1/jobs.proto.
//
// Standard library only: the engine includes it too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string_view>
#include <type_traits>

namespace tl {

// Whether data-parallel ranks keep their own value of a figure after an
// epoch or take rank 0's (so that every rank's early stopping decides alike).
enum class EpochRanks { kOwn, kRankZero };
// Whether every stored epochs.json holds a figure, or checkpoints written
// before it existed lack it (read as 0). A figure added later is kOptional,
// or older checkpoints would no longer load.
enum class EpochJson { kRequired, kOptional };

}  // namespace tl

// TL_EPOCH_METRICS(WIRE, LOCAL) expands WIRE(...) for each figure that
// tl.v1.EpochMetrics carries, a field of the same name and type
// (common/epoch_metrics_test.cc holds the two together), and LOCAL(...) for
// each that stays in the worker's files, with the arguments
//   (member, type, ranks, json, gauge, help)
//   member  the EpochStats member, the JSON key and the proto field
//   type    int (int32 on the wire), int64_t or double
//   ranks   an EpochRanks
//   json    an EpochJson
//   gauge   the scheduler's gauge of the figure, one series per running job,
//   help    and its help text; "" for figures without one (LOCAL ones never
//           reach the scheduler)
// Order: the proto's field numbers, then the local figures. Ranks exchange
// the kRankZero figures in this order, so a build that reorders them cannot
// train in one gang with an older one.
#define TL_EPOCH_METRICS(WIRE, LOCAL)                                                        \
  WIRE(epoch, int, kOwn, kRequired, "tl_job_epoch", "Last finished epoch of a running job.") \
  WIRE(train_loss, double, kRankZero, kRequired, "tl_job_train_loss",                        \
       "Training loss of a running job's last epoch.")                                       \
  WIRE(train_accuracy, double, kRankZero, kRequired, "", "")                                 \
  WIRE(val_loss, double, kRankZero, kRequired, "tl_job_val_loss",                            \
       "Validation loss of a running job's last epoch.")                                     \
  WIRE(val_accuracy, double, kRankZero, kRequired, "tl_job_val_accuracy",                    \
       "Validation accuracy of a running job's last epoch.")                                 \
  WIRE(val_macro_precision, double, kRankZero, kRequired, "", "")                            \
  WIRE(val_macro_recall, double, kRankZero, kRequired, "", "")                               \
  WIRE(val_macro_f1, double, kRankZero, kRequired, "tl_job_val_macro_f1",                    \
       "Validation macro F1 of a running job's last epoch.")                                 \
  /* Training images per second of training time; progress reports set the */                \
  /* gauge while an epoch runs. */                                                           \
  WIRE(images_per_second, double, kRankZero, kRequired, "tl_job_images_per_second",          \
       "Training throughput of a running job.")                                              \
  /* The whole epoch, validation included. */                                                \
  WIRE(seconds, double, kRankZero, kRequired, "", "")                                        \
  /* The head's, at the epoch's last batch. */                                               \
  WIRE(learning_rate, double, kRankZero, kRequired, "", "")                                  \
  /* k = kTopK, or the class count when fewer. */                                            \
  WIRE(val_top_k_accuracy, double, kRankZero, kOptional, "", "")                             \
  WIRE(val_weighted_f1, double, kRankZero, kOptional, "", "")                                \
  LOCAL(train_images, int64_t, kRankZero, kRequired, "", "")                                 \
  LOCAL(val_images, int64_t, kRankZero, kRequired, "", "")

// For the side of TL_EPOCH_METRICS a use has nothing to do with.
#define TL_EPOCH_METRICS_SKIP(...)

namespace tl {

enum class EpochMetricType { kInt32, kInt64, kDouble };

template <typename T>
constexpr EpochMetricType EpochMetricTypeOf() {
  static_assert(
      std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t> || std::is_same_v<T, double>,
      "an epoch figure is an int, an int64_t or a double");
  if constexpr (std::is_same_v<T, double>) return EpochMetricType::kDouble;
  if constexpr (std::is_same_v<T, int64_t>) return EpochMetricType::kInt64;
  return EpochMetricType::kInt32;
}

// One entry of the list, for code that looks at the list as a whole.
struct EpochMetricInfo {
  std::string_view name;
  EpochMetricType type;
  bool on_wire;  // in tl.v1.EpochMetrics
  EpochRanks ranks;
  EpochJson json;
  std::string_view gauge;  // empty: none
  std::string_view help;
};

#define TL_EPOCH_METRIC_INFO_(on_wire, member, type, ranks, json, gauge, help)            \
  EpochMetricInfo{#member, EpochMetricTypeOf<type>(), on_wire, EpochRanks::ranks,         \
                  EpochJson::json, gauge, help},
#define TL_EPOCH_METRIC_WIRE_INFO_(...) TL_EPOCH_METRIC_INFO_(true, __VA_ARGS__)
#define TL_EPOCH_METRIC_LOCAL_INFO_(...) TL_EPOCH_METRIC_INFO_(false, __VA_ARGS__)
inline constexpr EpochMetricInfo kEpochMetrics[] = {
    TL_EPOCH_METRICS(TL_EPOCH_METRIC_WIRE_INFO_, TL_EPOCH_METRIC_LOCAL_INFO_)};
#undef TL_EPOCH_METRIC_INFO_
#undef TL_EPOCH_METRIC_WIRE_INFO_
#undef TL_EPOCH_METRIC_LOCAL_INFO_

inline constexpr std::size_t kEpochMetricCount = std::size(kEpochMetrics);

// Whether figure `index` of kEpochMetrics is measured on the validation
// images (its name starts "val_"): for a job without any, such a figure is a
// zero that measured nothing.
constexpr bool IsValidationFigure(std::size_t index) {
  return index < kEpochMetricCount && kEpochMetrics[index].name.substr(0, 4) == "val_";
}

// Each figure's position in kEpochMetrics, by member name, for arrays that
// hold something per figure (EpochMetricIndex::val_loss).
struct EpochMetricIndex {
#define TL_EPOCH_METRIC_INDEX_(member, ...) member,
  enum : std::size_t { TL_EPOCH_METRICS(TL_EPOCH_METRIC_INDEX_, TL_EPOCH_METRIC_INDEX_) };
#undef TL_EPOCH_METRIC_INDEX_
};

}  // namespace tl
