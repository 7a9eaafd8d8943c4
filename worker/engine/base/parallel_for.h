// One parallel loop for the engine's file work: decoding a dataset ahead of
// training and reading every file of both splits for the dataset check.
//
// Threads of its own rather than LibTorch's intra-op pool
// (at::parallel_for): the work is file reading and OpenCV decoding, not
// tensor arithmetic; images differ in cost by orders of magnitude (a
// thumbnail beside a photo), so threads take the next index as they finish
// one instead of a fixed share each; a stop request must end the loop
// within one item; and the intra-op pool belongs to training (its OpenMP
// threads spin while they wait, which cost decoding beside training 4x of
// throughput, docs/BENCHMARKS.md).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tl::engine {

// Runs body(i) for every i in [0, count) on at most `threads` threads (at
// least one), each taking the next index when it has finished one, and
// returns once every thread has ended. `stop_requested` (may be empty) is
// polled before each index, from any of the threads; once it says true no
// index is started any more, and ParallelFor returns false. The first
// exception a body throws ends the loop the same way and is rethrown here.
// With one thread, the bodies run on the calling thread.
inline bool ParallelFor(int64_t count, int threads, const std::function<void(int64_t)>& body,
                        const std::function<bool()>& stop_requested = {}) {
  std::atomic<int64_t> next{0};
  std::atomic<bool> stopped{false};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::exception_ptr error;
  const auto work = [&] {
    for (int64_t i = next++; i < count && !failed; i = next++) {
      if (stopped || (stop_requested && stop_requested())) {
        stopped = true;
        return;
      }
      try {
        body(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        failed = true;
        return;
      }
    }
  };
  const int64_t thread_count = std::clamp<int64_t>(count, 1, std::max(1, threads));
  if (thread_count == 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    pool.reserve(thread_count);
    for (int64_t t = 0; t < thread_count; ++t) pool.emplace_back(work);
    for (std::thread& thread : pool) thread.join();
  }
  if (error) std::rethrow_exception(error);
  return !stopped;
}

}  // namespace tl::engine
