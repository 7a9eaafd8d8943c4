#include "worker/slot_options.h"

#include <gtest/gtest.h>

namespace tl::worker {
namespace {

AgentOptions Worker() {
  AgentOptions worker;
  worker.worker_id = "gpu-0";
  worker.settings.threads = 0;
  worker.settings.loader_threads = 0;
  worker.settings.rendezvous_port = 0;
  tl::v1::Device cpu;
  cpu.set_kind("cpu");
  cpu.set_memory_bytes(64LL << 30);
  tl::v1::Device cuda;
  cuda.set_kind("cuda");
  cuda.set_memory_bytes(80LL << 30);
  worker.devices = {cpu, cuda};
  return worker;
}

TEST(SlotOptionsTest, OneSlotIsTheWorkerUnchanged) {
  const std::vector<AgentOptions> agents = SlotAgentOptions(Worker(), 1, 16);
  ASSERT_EQ(agents.size(), 1u);
  EXPECT_EQ(agents[0].worker_id, "gpu-0");
  EXPECT_TRUE(agents[0].slot_of.empty());
  EXPECT_EQ(agents[0].slot, 0);
  EXPECT_EQ(agents[0].settings.threads, 0);
  EXPECT_EQ(agents[0].settings.max_threads, 0);
  EXPECT_EQ(agents[0].devices[1].memory_bytes(), 80LL << 30);
}

TEST(SlotOptionsTest, EachSlotHasItsIdAndAnEqualShareOfThreadsAndMemory) {
  const std::vector<AgentOptions> agents = SlotAgentOptions(Worker(), 4, 16);
  ASSERT_EQ(agents.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    const AgentOptions& agent = agents[i];
    EXPECT_EQ(agent.worker_id, "gpu-0/slot" + std::to_string(i + 1));
    EXPECT_EQ(agent.slot_of, "gpu-0");
    EXPECT_EQ(agent.slot, i + 1);
    EXPECT_EQ(agent.slots, 4);
    EXPECT_EQ(agent.settings.threads, 4) << "16 cores over 4 slots";
    EXPECT_EQ(agent.settings.loader_threads, 0) << "left to the engine's rule";
    EXPECT_EQ(agent.devices[0].memory_bytes(), 16LL << 30);
    EXPECT_EQ(agent.devices[1].memory_bytes(), 20LL << 30);
    EXPECT_EQ(agent.settings.rendezvous_port, 0) << "chosen by the caller per slot";
  }
}

TEST(SlotOptionsTest, SetThreadsAndPortsAreShared) {
  AgentOptions worker = Worker();
  worker.settings.threads = 3;
  worker.settings.loader_threads = 5;
  worker.settings.rendezvous_port = 29500;
  const std::vector<AgentOptions> agents = SlotAgentOptions(worker, 2, 16);
  ASSERT_EQ(agents.size(), 2u);
  EXPECT_EQ(agents[0].settings.threads, 1);
  EXPECT_EQ(agents[0].settings.loader_threads, 2);
  EXPECT_EQ(agents[0].settings.rendezvous_port, 29500);
  EXPECT_EQ(agents[1].settings.rendezvous_port, 29501);
  // More slots than cores still gives every slot a thread.
  EXPECT_EQ(SlotAgentOptions(Worker(), 8, 2)[7].settings.threads, 1);
}

}  // namespace
}  // namespace tl::worker
