// SIGINT and SIGTERM for tlserver and tlworker, whichever thread the kernel
// hands them to. Blocking them in main() and sigwait()ing is not enough:
// libraries start threads before main() runs (LibTorch does, as it loads),
// those threads leave the signals unblocked, and the kernel gives a
// process-wide signal to such a thread. There the default action either ends
// the process on the spot (no draining), or, in a container where the
// program is PID 1, drops the signal (and `docker stop` waits its 10 s and
// kills). A handler on every thread passes the signal through a pipe to
// WaitForTerminationSignal instead. A second one ends the process at once
// (exit status 128 + its number), for a drain or stop that hangs.
#pragma once

namespace tl {

// Installs the handler and blocks both signals in the calling thread, and
// so in the threads it starts afterwards. Call early in main().
void CatchTerminationSignals();

// Waits until SIGINT or SIGTERM arrives and returns its number. Unblocks
// both in the calling thread, so that at least one thread takes them: that
// thread must live on (or another call them) for a second signal to land.
int WaitForTerminationSignal();

}  // namespace tl
