// How tlctl shows jobs to people: a progress bar within the epoch, a table
// of finished epochs, one-line job summaries.
#pragma once

#include <string>

#include "tl/v1/service.pb.h"

namespace tl::client {

// Whether a job in `state` has ended for good: SUCCEEDED, FAILED, CANCELLED,
// or STOPPED_EARLY (a sweep's trial that the sweep stopped).
bool JobHasEnded(tl::v1::Job::State state);

// "2026-11-28 10:00:01" in the local time zone; "-" for an unset time.
std::string FormatTimestamp(const google::protobuf::Timestamp& timestamp);

// "epoch 3/10 [########............] 40%  12/30 batches  loss 0.5321  812 img/s"
std::string ProgressLine(const tl::v1::Progress& progress, int bar_width = 24);

std::string EpochTableHeader();
// `validated` false: the job holds out no validation images, and the
// validation columns show "-" rather than zeros.
std::string EpochTableRow(const tl::v1::EpochMetrics& metrics, bool validated = true);
// False once the job's result says it has no validation images (a refit, a
// small set under the data-sized defaults, val_fraction 0); true until its
// dataset is known.
bool HasValidationImages(const tl::v1::Job& job);

// Several lines: id, name, state, attempt, owner, times, error, result.
std::string JobDetails(const tl::v1::Job& job);
std::string JobListHeader();
std::string JobListRow(const tl::v1::Job& job);

// "2026-11-28 10:00:01 gpu-1#2  epoch 3: train loss ..."
std::string LogLineText(const tl::v1::LogLine& line);

}  // namespace tl::client
