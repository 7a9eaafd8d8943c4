// A full disk for tests: a file-size limit (RLIMIT_FSIZE) on this process
// with SIGXFSZ ignored, so that a write past it fails with EFBIG ("File too
// large") the way a write to a full disk fails with ENOSPC. The limit is the
// process's, so a test holds it only around the write it means to fail.
#pragma once

#include <signal.h>
#include <sys/resource.h>

#include <stdexcept>

namespace tl::engine::testing {

class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    previous_handler_ = signal(SIGXFSZ, SIG_IGN);
    rlimit limited = saved_;
    limited.rlim_cur = bytes;
    if (setrlimit(RLIMIT_FSIZE, &limited) != 0) throw std::runtime_error("setrlimit failed");
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    signal(SIGXFSZ, previous_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  sighandler_t previous_handler_;
};

}  // namespace tl::engine::testing
