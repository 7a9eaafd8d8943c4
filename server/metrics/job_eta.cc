#include "server/metrics/job_eta.h"

#include <algorithm>

namespace tl::server {

void JobEta::EpochFinished(int epoch, double seconds, Clock::time_point now) {
  if (seconds > 0) {
    finished_seconds_ += seconds;
    ++finished_count_;
  }
  if (epoch > epochs_done_) {
    epochs_done_ = epoch;
    current_fraction_ = 0;
    current_started_ = now;
  }
}

void JobEta::Progressed(int epoch, int epochs, int batch, int batches, Clock::time_point now) {
  if (epochs > 0) epochs_ = epochs;
  // A resumed run starts past the epochs of its checkpoint.
  if (epoch - 1 > epochs_done_) {
    epochs_done_ = epoch - 1;
    current_started_.reset();
  }
  if (epoch != epochs_done_ + 1 || batches <= 0) return;
  if (!current_started_) current_started_ = now;
  current_fraction_ = std::clamp(static_cast<double>(batch) / batches, 0.0, 1.0);
}

std::optional<double> JobEta::SecondsLeft(Clock::time_point now) const {
  if (epochs_ <= 0) return std::nullopt;
  double epoch_seconds = 0;
  if (finished_count_ > 0) {
    epoch_seconds = finished_seconds_ / finished_count_;
  } else if (current_started_ && current_fraction_ > 0) {
    epoch_seconds = std::chrono::duration<double>(now - *current_started_).count() /
                    current_fraction_;
  }
  if (epoch_seconds <= 0) return std::nullopt;
  const double epochs_left = std::max(0.0, epochs_ - epochs_done_ - current_fraction_);
  return epochs_left * epoch_seconds;
}

}  // namespace tl::server
