#include "common/termination_signal.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
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
  done = true;
  early.join();
}

TEST(TerminationSignalTest, ASecondSignalEndsTheProcess) {
  // A fresh process, not a fork of this one with its threads and handlers.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        CatchTerminationSignals();
        kill(getpid(), SIGTERM);
        if (WaitForTerminationSignal() != SIGTERM) std::_Exit(3);
        kill(getpid(), SIGTERM);
        // Not reached: the second signal ends the process.
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(128 + SIGTERM), "");
}

TEST(TerminationSignalTest, AnInheritedIgnoredSigintStaysIgnored) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        signal(SIGINT, SIG_IGN);
        CatchTerminationSignals();
        kill(getpid(), SIGINT);
        kill(getpid(), SIGTERM);
        std::_Exit(WaitForTerminationSignal() == SIGTERM ? 0 : 3);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace tl
