// tlctl's subcommands, one function each: a command takes its parsed options,
// the Connection to tlserver and the streams to write to, and returns tlctl's
// exit status. tlctl.cc only parses flags and calls one of them, so that each
// command can be tested against a fake JobService.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tl/v1/service.grpc.pb.h"

namespace tl::client {

// tlctl's exit statuses. A watched sweep exits as a job would: 0, 3 or 4.
inline constexpr int kExitOk = 0;               // done; for watch: the job (sweep) SUCCEEDED
inline constexpr int kExitCallFailed = 1;       // a call failed (status name on stderr)
inline constexpr int kExitBadInput = 2;         // bad usage, input file or credentials
inline constexpr int kExitJobFailed = 3;        // the watched job (sweep) FAILED
inline constexpr int kExitJobCancelled = 4;     // the watched job (sweep) was CANCELLED
inline constexpr int kExitJobStoppedEarly = 5;  // the watched job, a sweep's trial, was
                                                // STOPPED_EARLY by the sweep

// A watch survives this many broken streams (a restarting server) in a row.
inline constexpr int kWatchReconnects = 30;
// A submit whose reply was lost is sent this many times in all, with one request id.
inline constexpr int kSubmitTries = 5;

// Where a command writes: results to `out`, "tlctl: ..." messages to `err`.
// Only on a terminal does watch draw a progress bar that later lines overwrite.
struct CommandOutput {
  std::ostream& out;
  std::ostream& err;
  bool terminal = false;
  // The terminal's width, when known (0: not known); lines that a watch
  // redraws are cut to it, so that none wraps and the redraw stays in place.
  int columns = 0;
};

// The value of environment variable `name`, or `fallback` when it is unset or empty.
std::string EnvironmentOr(const char* name, const std::string& fallback);

struct ConnectionOptions {
  std::string server;
  double timeout_seconds = 30;
  std::string token;
  // Read (trimmed) only when `token` is empty.
  std::string token_file;
  // PEM certificates to trust; set, the channel uses TLS.
  std::string tls_ca;
};

// How tlctl reaches the server: the stub, and the token and deadline every call carries.
class Connection {
 public:
  Connection(const std::shared_ptr<grpc::Channel>& channel, std::string token,
             double timeout_seconds);

  // A channel to options.server with its credentials; INVALID_ARGUMENT or NOT_FOUND
  // naming the flag when the token file or the certificates cannot be read.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const ConnectionOptions& options);

  tl::v1::JobService::Stub& stub() { return *stub_; }
  bool authenticated() const { return !token_.empty(); }

  // A context for one call; unary calls get the --timeout deadline, streams none.
  std::unique_ptr<grpc::ClientContext> Context(bool with_deadline) const;

  // Waits before a retry. Tests replace the wait to see the delays without spending them.
  void Pause(std::chrono::milliseconds delay) const { pause_(delay); }
  void set_pause(std::function<void(std::chrono::milliseconds)> pause) {
    pause_ = std::move(pause);
  }

 private:
  std::unique_ptr<tl::v1::JobService::Stub> stub_;
  std::string token_;
  double timeout_seconds_;
  std::function<void(std::chrono::milliseconds)> pause_;
};

struct SubmitOptions {
  std::string job_file;
  bool watch = false;
  // Empty: the token's principal, or `default_owner` when tlctl has no token.
  std::string owner;
  std::string default_owner = "anonymous";
  // Empty: a random id, the same for every retry of this submit.
  std::string request_id;
  // Where to write the new job's id (for scripts); empty: nowhere.
  std::string id_file;
};

struct ListOptions {
  // Job state names, any case; an unknown one is bad input.
  std::vector<std::string> states;
  int page_size = 50;
  std::string page_token;
  // Only this sweep's trials; empty: every job.
  std::string sweep_id;
};

struct SweepSubmitOptions {
  std::string sweep_file;
  bool watch = false;
  // As SubmitOptions: the owner of the sweep and of its trials, the request id.
  std::string owner;
  std::string default_owner = "anonymous";
  std::string request_id;
  // Where to write the new sweep's id (for scripts); empty: nowhere.
  std::string id_file;
};

struct SweepListOptions {
  // Sweep state names, any case; an unknown one is bad input.
  std::vector<std::string> states;
  int page_size = 50;
  std::string page_token;
};

// How many trials a watch on a terminal redraws at most: the unfinished ones
// and the best first, then the latest; `tlctl sweep get` shows them all.
inline constexpr int kLiveTrialRows = 20;

struct PredictOptions {
  std::string model_path;
  std::vector<std::string> image_paths;
  int top = 5;
  bool json = false;
  std::string precision;  // tlpredict's --precision; empty: its default (auto)
};

// submit: queues the job file's spec, retrying a call that may not have arrived;
// with `watch`, then follows the job as WatchCommand does.
int SubmitCommand(Connection& connection, const SubmitOptions& options, CommandOutput& output);
// get: the job in words, or as JSON.
int GetCommand(Connection& connection, const std::string& job_id, bool as_json,
               CommandOutput& output);
// report: the evaluation reports of a finished job; a job without one is a failed call.
int ReportCommand(Connection& connection, const std::string& job_id, CommandOutput& output);
// list: one page of jobs (of one sweep, with sweep_id), newest first, and the command for
// the next page if there is one.
int ListCommand(Connection& connection, const ListOptions& options, CommandOutput& output);
// watch: state changes, a progress bar and the epoch table until the job ends,
// reconnecting after the last event seen; exits with the job's outcome.
int WatchCommand(Connection& connection, const std::string& job_id, CommandOutput& output);
// logs: the job's log lines; with `follow`, until the job ends.
int LogsCommand(Connection& connection, const std::string& job_id, bool follow,
                CommandOutput& output);
// cancel, pause, resume: one call each, printing the job's new state.
int CancelCommand(Connection& connection, const std::string& job_id, const std::string& reason,
                  CommandOutput& output);
int PauseCommand(Connection& connection, const std::string& job_id, CommandOutput& output);
int ResumeCommand(Connection& connection, const std::string& job_id, CommandOutput& output);

// sweep submit: creates the sweep in the sweep file (SweepSpec's JSON form), retrying
// as submit does; with `watch`, then follows it as SweepWatchCommand does.
int SweepSubmitCommand(Connection& connection, const SweepSubmitOptions& options,
                       CommandOutput& output);
// sweep get: the sweep in words with its table of trials, or as JSON.
int SweepGetCommand(Connection& connection, const std::string& sweep_id, bool as_json,
                    CommandOutput& output);
// sweep list: one page of sweeps, newest first, and the command for the next page.
int SweepListCommand(Connection& connection, const SweepListOptions& options,
                     CommandOutput& output);
// sweep watch: the trials as they change until the sweep ends (on a terminal a
// table redrawn in place, else a row per change), reconnecting when the stream
// breaks; then the sweep in words. Exits with the sweep's outcome.
int SweepWatchCommand(Connection& connection, const std::string& sweep_id,
                      CommandOutput& output);
// sweep cancel, pause, resume: one call each, printing the sweep's new state.
int SweepCancelCommand(Connection& connection, const std::string& sweep_id,
                       const std::string& reason, CommandOutput& output);
int SweepPauseCommand(Connection& connection, const std::string& sweep_id,
                      CommandOutput& output);
int SweepResumeCommand(Connection& connection, const std::string& sweep_id,
                       CommandOutput& output);

// predict runs locally: tlpredict with these arguments ...
std::vector<std::string> PredictArguments(const PredictOptions& options);
// ... in place of this process ($TL_PREDICT, else the tlpredict beside this
// executable, else the one on PATH). Returns only when it cannot start it.
int PredictCommand(const PredictOptions& options, CommandOutput& output);

}  // namespace tl::client
