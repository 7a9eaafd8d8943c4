// Who follows a job or a sweep: WatchJob streams and GetJobLogs followers, by job id, and
// WatchSweep streams, by sweep id,
// and the rules for handing them something, finishing and interrupting them.
// Used by the scheduler under its lock.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "server/core/scheduler.h"

namespace tl::server {

// Watchers and log followers, by job id.
template <typename Subscriber>
using Subscribers = std::map<std::string, std::vector<std::shared_ptr<Subscriber>>>;

// Hands something to each subscriber of a job through `deliver`, which says whether the
// subscriber took it. One that has gone away is dropped here rather than by its stream, so
// that streams never need the scheduler's lock.
template <typename Subscriber, typename Deliver>
void DeliverOrDrop(Subscribers<Subscriber>& by_job, const std::string& job_id, Deliver deliver) {
  auto it = by_job.find(job_id);
  if (it == by_job.end()) return;
  std::vector<std::shared_ptr<Subscriber>>& list = it->second;
  list.erase(std::remove_if(list.begin(), list.end(),
                            [&](const std::shared_ptr<Subscriber>& subscriber) {
                              return !deliver(*subscriber);
                            }),
             list.end());
  if (list.empty()) by_job.erase(it);
}

// The job has ended: its subscribers are finished and forgotten.
template <typename Subscriber>
void FinishAll(Subscribers<Subscriber>& by_job, const std::string& job_id) {
  auto it = by_job.find(job_id);
  if (it == by_job.end()) return;
  for (const std::shared_ptr<Subscriber>& subscriber : it->second) subscriber->Finish();
  by_job.erase(it);
}

// The server goes away: every subscriber is told to come back, and forgotten.
template <typename Subscriber>
void InterruptAll(Subscribers<Subscriber>& by_job) {
  for (auto& [job_id, list] : by_job) {
    for (const std::shared_ptr<Subscriber>& subscriber : list) subscriber->Interrupt();
  }
  by_job.clear();
}

// A watcher that asked for the events after `after_sequence`: numbered events at or below it
// are not delivered, whether replayed from the store or live. Progress has no number and
// always goes through.
class EventsAfter final : public JobWatcher {
 public:
  EventsAfter(std::shared_ptr<JobWatcher> watcher, int64_t after_sequence)
      : watcher_(std::move(watcher)), after_sequence_(after_sequence) {}
  bool Deliver(const tl::v1::JobEvent& event) override {
    // A watcher whose client left is dropped even when it is handed nothing.
    if (!event.has_progress() && event.sequence() <= after_sequence_) return !watcher_->Gone();
    return watcher_->Deliver(event);
  }
  bool Gone() const override { return watcher_->Gone(); }
  void Finish() override { watcher_->Finish(); }
  void Interrupt() override { watcher_->Interrupt(); }

 private:
  const std::shared_ptr<JobWatcher> watcher_;
  const int64_t after_sequence_;
};

// A WatchSweep stream's events numbered 2, 3 ... after the first (the sweep as it was when the
// watch began, numbered 1 by WatchSweep).
class NumberedSweepWatcher final : public SweepWatcher {
 public:
  explicit NumberedSweepWatcher(std::shared_ptr<SweepWatcher> watcher)
      : watcher_(std::move(watcher)) {}
  bool Deliver(const tl::v1::SweepEvent& event) override {
    tl::v1::SweepEvent numbered = event;
    numbered.set_sequence(++sequence_);
    return watcher_->Deliver(numbered);
  }
  bool Gone() const override { return watcher_->Gone(); }
  void Finish() override { watcher_->Finish(); }
  void Interrupt() override { watcher_->Interrupt(); }

 private:
  const std::shared_ptr<SweepWatcher> watcher_;
  int64_t sequence_ = 1;
};

}  // namespace tl::server
