// The figures of a finished epoch as the engine holds them, their JSON (a
// job's metrics.json and its checkpoints' epochs.json) and their exchange
// between data-parallel ranks. The members and everything done with them
// follow the one list in common/epoch_metrics.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/epoch_metrics.h"

namespace tl::engine {

struct EpochStats {
#define TL_EPOCH_STATS_MEMBER(member, type, ...) type member = 0;
  TL_EPOCH_METRICS(TL_EPOCH_STATS_MEMBER, TL_EPOCH_STATS_MEMBER)
#undef TL_EPOCH_STATS_MEMBER
};

// Every listed figure under its name, for metrics.json and checkpoints. A
// non-finite figure is written as null and read back as NaN. Reading throws
// nlohmann::json's exceptions when a required figure is missing; a missing
// optional one reads as 0.
std::string EpochStatsToJson(const std::vector<EpochStats>& epochs);
std::vector<EpochStats> EpochStatsFromJson(const std::string& json_text);

// The figures ranks take from rank 0 (EpochRanks::kRankZero), in list order,
// as doubles for one broadcast; and those values set back, counts rounded.
std::vector<double> RankZeroEpochFigures(const EpochStats& stats);
void SetRankZeroEpochFigures(const std::vector<double>& figures, EpochStats& stats);

}  // namespace tl::engine
