#include "common/termination_signal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

namespace tl {
namespace {

int signal_pipe[2] = {-1, -1};
std::atomic<int> signals_caught{0};

sigset_t TerminationSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  return signals;
}

extern "C" void PassTerminationSignal(int signal_number) {
  // Only async-signal-safe calls here (a lock-free atomic, write, _exit);
  // errno is the interrupted code's.
  static_assert(std::atomic<int>::is_always_lock_free);
  if (signals_caught.fetch_add(1) > 0) {
    // A second one, while a drain or stop hangs, ends the process. Not by
    // the default action: a container's PID 1 would not die of it.
    _exit(128 + signal_number);
  }
  const int saved_errno = errno;
  const unsigned char byte = static_cast<unsigned char>(signal_number);
  [[maybe_unused]] const ssize_t written = write(signal_pipe[1], &byte, 1);
  errno = saved_errno;
}

}  // namespace

void CatchTerminationSignals() {
  if (signal_pipe[0] < 0) {
    if (pipe2(signal_pipe, O_CLOEXEC) != 0) std::abort();
    // The handler must never block, whoever reads or not.
    fcntl(signal_pipe[1], F_SETFL, O_NONBLOCK);
  }
  struct sigaction action = {};
  action.sa_handler = PassTerminationSignal;
  action.sa_flags = SA_RESTART;
  sigfillset(&action.sa_mask);
  // A shell starts background commands with SIGINT ignored; that stays so.
  struct sigaction inherited = {};
  sigaction(SIGINT, nullptr, &inherited);
  if (inherited.sa_handler != SIG_IGN) sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  const sigset_t signals = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

int WaitForTerminationSignal() {
  const sigset_t signals = TerminationSignals();
  pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
  unsigned char byte = 0;
  while (read(signal_pipe[0], &byte, 1) != 1) {
    if (errno != EINTR) std::abort();
  }
  return byte;
}

}  // namespace tl
