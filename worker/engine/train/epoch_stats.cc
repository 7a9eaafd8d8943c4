#include "train/epoch_stats.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "base/errors.h"

namespace tl::engine {
namespace {

template <typename T>
T ReadFigure(const nlohmann::json& epoch, const char* name, EpochJson presence) {
  if (presence == EpochJson::kOptional) return epoch.value(name, T{});
  return epoch.at(name).get<T>();
}

constexpr size_t kRankZeroFigureCount = [] {
  size_t count = 0;
  for (const EpochMetricInfo& figure : kEpochMetrics) {
    if (figure.ranks == EpochRanks::kRankZero) ++count;
  }
  return count;
}();

// Broadcasts carry doubles, which hold every count an epoch can have exactly.
template <typename T>
T FromShared(double value) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(std::llround(value));
  } else {
    return value;
  }
}

}  // namespace

std::string EpochStatsToJson(const std::vector<EpochStats>& epochs) {
  nlohmann::json list = nlohmann::json::array();
  for (const EpochStats& stats : epochs) {
    nlohmann::json epoch = nlohmann::json::object();
#define TL_EPOCH_TO_JSON(member, ...) epoch[#member] = stats.member;
    TL_EPOCH_METRICS(TL_EPOCH_TO_JSON, TL_EPOCH_TO_JSON)
#undef TL_EPOCH_TO_JSON
    list.push_back(std::move(epoch));
  }
  return nlohmann::json({{"epochs", list}}).dump(2);
}

std::vector<EpochStats> EpochStatsFromJson(const std::string& json_text) {
  std::vector<EpochStats> epochs;
  const nlohmann::json root = nlohmann::json::parse(json_text);
  for (const nlohmann::json& raw : root.at("epochs")) {
    // JSON has no NaN: nlohmann writes a non-finite number as null.
    nlohmann::json epoch = raw;
    for (auto& [key, value] : epoch.items()) {
      if (value.is_null()) value = std::numeric_limits<double>::quiet_NaN();
    }
    EpochStats stats;
#define TL_EPOCH_FROM_JSON(member, type, ranks, json, ...) \
  stats.member = ReadFigure<type>(epoch, #member, EpochJson::json);
    TL_EPOCH_METRICS(TL_EPOCH_FROM_JSON, TL_EPOCH_FROM_JSON)
#undef TL_EPOCH_FROM_JSON
    epochs.push_back(stats);
  }
  return epochs;
}

std::vector<double> RankZeroEpochFigures(const EpochStats& stats) {
  std::vector<double> figures;
  figures.reserve(kRankZeroFigureCount);
#define TL_EPOCH_SHARE(member, type, ranks, ...)  \
  if (EpochRanks::ranks == EpochRanks::kRankZero) \
    figures.push_back(static_cast<double>(stats.member));
  TL_EPOCH_METRICS(TL_EPOCH_SHARE, TL_EPOCH_SHARE)
#undef TL_EPOCH_SHARE
  return figures;
}

void SetRankZeroEpochFigures(const std::vector<double>& figures, EpochStats& stats) {
  if (figures.size() != kRankZeroFigureCount) {
    throw EngineError(ErrorKind::kInternal, "rank 0 sent " + std::to_string(figures.size()) +
                                                " epoch figures, not " +
                                                std::to_string(kRankZeroFigureCount));
  }
  auto next = figures.begin();
#define TL_EPOCH_TAKE(member, type, ranks, ...) \
  if (EpochRanks::ranks == EpochRanks::kRankZero) stats.member = FromShared<type>(*next++);
  TL_EPOCH_METRICS(TL_EPOCH_TAKE, TL_EPOCH_TAKE)
#undef TL_EPOCH_TAKE
}

}  // namespace tl::engine
