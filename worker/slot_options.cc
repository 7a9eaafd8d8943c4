#include "worker/slot_options.h"

#include <algorithm>

#include "common/worker_slots.h"

namespace tl::worker {

std::vector<AgentOptions> SlotAgentOptions(const AgentOptions& worker, int slots, int cores) {
  if (slots <= 1) return {worker};
  std::vector<AgentOptions> agents;
  const int threads = worker.settings.threads > 0 ? worker.settings.threads : std::max(1, cores);
  for (int slot = 1; slot <= slots; ++slot) {
    AgentOptions agent = worker;
    agent.worker_id = SlotWorkerId(worker.worker_id, slot);
    agent.slot_of = worker.worker_id;
    agent.slot = slot;
    agent.slots = slots;
    agent.settings.threads = std::max(1, threads / slots);
    agent.settings.max_threads = agent.settings.threads;
    if (worker.settings.loader_threads > 0) {
      agent.settings.loader_threads = std::max(1, worker.settings.loader_threads / slots);
    }
    for (tl::v1::Device& device : agent.devices) {
      device.set_memory_bytes(device.memory_bytes() / slots);
    }
    if (worker.settings.rendezvous_port > 0) {
      agent.settings.rendezvous_port = worker.settings.rendezvous_port + slot - 1;
    }
    agents.push_back(std::move(agent));
  }
  return agents;
}

}  // namespace tl::worker
