// Real processes for end-to-end tests: spawn tlserver, tlworker and tlctl,
// wait for them by condition (a ready file, an exit), never by sleeping a
// fixed time.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace tl::testing {

// Polls `condition` every few milliseconds until it holds or `timeout`
// passes; returns whether it held.
inline bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return condition();
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class Process {
 public:
  // Starts `argv` with stdout and stderr appended to `log_path`.
  Process(const std::vector<std::string>& argv, const std::string& log_path)
      : log_path_(log_path) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    const int error = posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (error != 0) throw std::runtime_error("cannot start " + argv[0]);
  }
  ~Process() {
    if (!exit_status_) {
      Signal(SIGKILL);
      Wait();
    }
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  void Signal(int signal_number) {
    if (!exit_status_) kill(pid_, signal_number);
  }
  // Exit status, or -signal when killed by a signal.
  int Wait() {
    if (!exit_status_) {
      int status = 0;
      waitpid(pid_, &status, 0);
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    }
    return *exit_status_;
  }
  bool Exited() {
    if (exit_status_) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
      return true;
    }
    return false;
  }
  std::string Log() const { return ReadFile(log_path_); }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = 0;
  std::string log_path_;
  std::optional<int> exit_status_;
};

// Runs a command to its end; returns {exit status, output}.
inline std::pair<int, std::string> RunToEnd(const std::vector<std::string>& argv,
                                            const std::string& log_path) {
  std::remove(log_path.c_str());
  Process process(argv, log_path);
  const int status = process.Wait();
  return {status, process.Log()};
}

}  // namespace tl::testing
