// How long a running job has left, from what its worker reports: the
// duration of its finished epochs and the progress of the current one.
#pragma once

#include <chrono>
#include <optional>

namespace tl::server {

// What one run of a job has reported so far. Fed from EpochReports and
// ProgressReports in the order they arrive; `now` comes from the caller so
// that tests need no clock.
class JobEta {
 public:
  using Clock = std::chrono::steady_clock;

  void EpochFinished(int epoch, double seconds, Clock::time_point now);
  // `epoch` is the 1-based epoch in progress, `batch` of `batches` done in it.
  void Progressed(int epoch, int epochs, int batch, int batches, Clock::time_point now);

  // Seconds until the last epoch ends: the epochs left (the current one
  // counted by its undone fraction) times the mean of the finished epochs'
  // durations. Before any epoch has finished, the current epoch's duration
  // is projected from its progress and the time since its first report.
  // nullopt while neither is known (no progress yet, or no time passed).
  std::optional<double> SecondsLeft(Clock::time_point now) const;

 private:
  int epochs_ = 0;       // the run's last epoch; 0 until a progress report tells
  int epochs_done_ = 0;  // highest finished epoch
  double current_fraction_ = 0;  // of epoch epochs_done_ + 1
  double finished_seconds_ = 0;  // sum over the epochs finished in this run
  int finished_count_ = 0;
  std::optional<Clock::time_point> current_started_;
};

}  // namespace tl::server
