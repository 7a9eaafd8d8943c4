// How a tlworker started with --slots N splits itself: one agent per slot
// (common/worker_slots.h), each with its own session, worker id and share
// of the device.
#pragma once

#include <vector>

#include "worker/worker_agent.h"

namespace tl::worker {

// The options of each slot's agent, slot 1 first. With one slot, `worker`
// unchanged. With more, slot k connects as SlotWorkerId(worker_id, k), and
// each slot gets an equal share (at least 1) of the intra-op threads (of
// settings.threads, or of `cores` when that is 0: every core; a job's own
// training.threads is capped at it: settings.max_threads) and of the
// decoding threads when settings.loader_threads is set (else the engine
// chooses per job from the core count, as for one slot), and reports an
// equal share of each device's memory as its own, so that the scheduler
// places a job on a slot only where the GPU memory it asks for
// (resources.min_gpu_memory_bytes) fits the share. A set rendezvous port P
// becomes P + k - 1 for slot k; 0 stays 0 for the caller to choose.
std::vector<AgentOptions> SlotAgentOptions(const AgentOptions& worker, int slots, int cores);

}  // namespace tl::worker
