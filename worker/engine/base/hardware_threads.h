// How many threads "every core" means, for the engine and the tools beside
// it that must count as a job does (engine_bench): one header with no
// library, since engine_bench builds where OpenCV's side of the engine does
// not.
#pragma once

#include <algorithm>
#include <thread>

namespace tl::engine {

// Every core of this machine (at least one: hardware_concurrency may say 0).
inline int HardwareThreads() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace tl::engine
