// Slots: a tlworker started with --slots N runs up to N jobs at once on its
// device. Each slot connects to the scheduler as a session of its own,
// under a worker id derived from the process's, so that everything the
// scheduler does per session (placement, leases, cancel, pause, gangs,
// requeueing a dead worker's job, its gauges) it does per slot, and a
// process that dies takes all its slots' sessions with it. Header only, so
// that the worker and the scheduler share one spelling of the rule.
#pragma once

#include <string>
#include <string_view>

namespace tl {

// The most slots one worker process may run: each is a stream, a thread
// and a share of the device, and a bound keeps a hello from asking for
// unbounded numbers of them.
inline constexpr int kMaxWorkerSlots = 16;

// The worker id slot `slot` (1 to slots) of worker `worker_id` connects as:
// "gpu-0/slot2".
inline std::string SlotWorkerId(std::string_view worker_id, int slot) {
  return std::string(worker_id) + "/slot" + std::to_string(slot);
}

// The worker process a slot's id names ("gpu-0" for "gpu-0/slot2"), or empty
// where `worker_id` is not of SlotWorkerId's form with a slot in [1,
// kMaxWorkerSlots]. A worker of one slot may not take such an id, so the
// scheduler can tell a job's slot from its stored worker id alone.
inline std::string_view SlotProcessOf(std::string_view worker_id) {
  constexpr std::string_view kMark = "/slot";
  const size_t mark = worker_id.rfind(kMark);
  if (mark == std::string_view::npos || mark == 0) return {};
  const std::string_view digits = worker_id.substr(mark + kMark.size());
  if (digits.empty() || digits.size() > 2 || digits.front() == '0') return {};
  int slot = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return {};
    slot = slot * 10 + (c - '0');
  }
  if (slot > kMaxWorkerSlots) return {};
  return worker_id.substr(0, mark);
}

}  // namespace tl
