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

}  // namespace tl
