// How tlctl shows jobs to people: a progress bar within the epoch, a table
// of finished epochs, one-line job summaries.
#pragma once

#include <string>

#include "tl/v1/jobs.pb.h"

namespace tl::client {

// "epoch 3/10 [########............] 40%  12/30 batches  loss 0.5321  812 img/s"
std::string ProgressLine(const tl::v1::Progress& progress, int bar_width = 24);

std::string EpochTableHeader();
std::string EpochTableRow(const tl::v1::EpochMetrics& metrics);

// Several lines: id, name, state, attempt, owner, times, error, result.
std::string JobDetails(const tl::v1::Job& job);
std::string JobListHeader();
std::string JobListRow(const tl::v1::Job& job);

}  // namespace tl::client
