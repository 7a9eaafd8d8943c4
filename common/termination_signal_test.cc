#include "common/termination_signal.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

namespace tl {
namespace {

TEST(TerminationSignalTest, ASignalLandingOnAThreadStartedBeforeItIsCaughtStillArrives) {
  // Started before the signals are blocked, as libraries' threads are: the
  // kernel may give SIGTERM to this thread, whose default action would end
  // the test process.
  std::atomic<bool> done{false};
  std::thread early([&] {
    while (!done) usleep(1000);
  });
  CatchTerminationSignals();
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  EXPECT_EQ(WaitForTerminationSignal(), SIGTERM);
  ASSERT_EQ(kill(getpid(), SIGINT), 0);
  EXPECT_EQ(WaitForTerminationSignal(), SIGINT);
  done = true;
  early.join();
}

}  // namespace
}  // namespace tl
