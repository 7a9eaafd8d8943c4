// tlctl: the command line of tl.
//   tlctl submit job.json [--watch]   tlctl get JOB [--json]   tlctl list [--state S]
//   tlctl watch JOB                   tlctl cancel JOB         tlctl logs JOB [--follow]
//   tlctl pause JOB                   tlctl resume JOB
//   tlctl list --sweep SWEEP          (a sweep's trials)
//   tlctl sweep submit sweep.json [--watch]   tlctl sweep get SWEEP [--json]
//   tlctl sweep list [--state S]      tlctl sweep watch SWEEP
//   tlctl sweep cancel SWEEP          tlctl sweep pause SWEEP   tlctl sweep resume SWEEP
//   tlctl report JOB                  (evaluation reports: figures, classes, confusion matrix)
//   tlctl predict MODEL IMAGE... [--top K] [--json] [--precision P]   (local: runs tlpredict, see there)
// Credentials: --token / $TL_TOKEN (or --token-file / $TL_TOKEN_FILE) send
// "authorization: Bearer TOKEN"; --tls-ca / $TL_TLS_CA switches to TLS.
// Exit status: 0 success (for --watch and watch: the job or sweep SUCCEEDED),
// 1 the call failed, 2 bad usage or input file, 3 the job or sweep FAILED, 4
// it was CANCELLED, 5 the job, a sweep's trial, was STOPPED_EARLY.
// This file parses the flags; each subcommand is a function in client/commands.h.
#include <sys/ioctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "client/commands.h"

int main(int argc, char** argv) {
  using tl::client::EnvironmentOr;
  CLI::App app{"tlctl: submit, watch and manage tl transfer-learning jobs and sweeps"};
  app.require_subcommand(1);
  tl::client::ConnectionOptions connect;
  connect.server = EnvironmentOr("TL_SERVER", "127.0.0.1:50051");
  app.add_option("--server", connect.server,
                 "tlserver address (default: $TL_SERVER or 127.0.0.1:50051)");
  app.add_option("--timeout", connect.timeout_seconds, "deadline of unary calls, seconds");
  connect.token = EnvironmentOr("TL_TOKEN", "");
  app.add_option("--token", connect.token, "bearer token (default: $TL_TOKEN)");
  connect.token_file = EnvironmentOr("TL_TOKEN_FILE", "");
  app.add_option("--token-file", connect.token_file,
                 "file holding the bearer token ($TL_TOKEN_FILE)");
  connect.tls_ca = EnvironmentOr("TL_TLS_CA", "");
  app.add_option("--tls-ca", connect.tls_ca,
                 "PEM certificate(s) to trust; connects with TLS (default: $TL_TLS_CA)");

  CLI::App* submit = app.add_subcommand("submit", "queue the job in a job.json file");
  tl::client::SubmitOptions submit_options;
  submit->add_option("job_file", submit_options.job_file, "JSON form of tl.v1.JobSpec")->required();
  submit->add_flag("--watch,-w", submit_options.watch, "follow the job until it ends");
  submit->add_option("--owner", submit_options.owner,
                     "who submits (default: the token's principal, or $USER without one)");
  submit->add_option("--request-id", submit_options.request_id,
                     "idempotency key: submitting again with it returns the same job "
                     "(default: a random one, reused when tlctl retries)");
  submit->add_option("--id-file", submit_options.id_file,
                     "write the new job's id to this file (for scripts)");

  // Every subcommand that names a job takes it as its one positional argument.
  std::string job_id;
  CLI::App* get = app.add_subcommand("get", "show a job");
  bool as_json = false;
  get->add_option("job_id", job_id)->required();
  get->add_flag("--json", as_json, "print the job as JSON");

  CLI::App* report = app.add_subcommand(
      "report", "show a finished job's evaluation on its validation split and test set");
  report->add_option("job_id", job_id)->required();

  CLI::App* predict = app.add_subcommand(
      "predict", "classify image files locally with a job's exported model.pt (runs tlpredict)");
  tl::client::PredictOptions predict_options;
  predict->add_option("model", predict_options.model_path, "model.pt (model.json beside it)")
      ->required();
  predict->add_option("images", predict_options.image_paths, "image files")->required();
  predict->add_option("--top", predict_options.top, "classes shown per image")
      ->check(CLI::PositiveNumber);
  predict->add_flag("--json", predict_options.json, "print JSON");
  predict->add_option("--precision", predict_options.precision,
                      "auto (default: bf16 autocast on a CPU with bf16 instructions), fp32 or bf16")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));

  CLI::App* list = app.add_subcommand("list", "list jobs, newest first");
  tl::client::ListOptions list_options;
  list->add_option("--state", list_options.states,
                   "only jobs in these states (QUEUED, RUNNING, ...)");
  list->add_option("--limit", list_options.page_size, "jobs per page");
  list->add_option("--page-token", list_options.page_token, "continue after a previous page");
  list->add_option("--sweep", list_options.sweep_id, "only this sweep's trials");

  CLI::App* watch = app.add_subcommand("watch", "follow a job until it ends");
  watch->add_option("job_id", job_id)->required();

  CLI::App* cancel = app.add_subcommand("cancel", "cancel a job");
  std::string reason;
  cancel->add_option("job_id", job_id)->required();
  cancel->add_option("--reason", reason, "recorded with the job");

  CLI::App* pause = app.add_subcommand("pause", "pause a job after its current epoch");
  pause->add_option("job_id", job_id)->required();
  CLI::App* resume = app.add_subcommand("resume", "queue a paused job again");
  resume->add_option("job_id", job_id)->required();

  CLI::App* logs = app.add_subcommand("logs", "print a job's log lines");
  bool follow = false;
  logs->add_option("job_id", job_id)->required();
  logs->add_flag("--follow,-f", follow, "keep printing new lines until the job ends");

  // Sweeps: `tlctl sweep VERB ...`, each verb naming its sweep as its one positional argument.
  CLI::App* sweep = app.add_subcommand("sweep", "submit, watch and manage sweeps of jobs");
  sweep->require_subcommand(1);
  std::string sweep_id;
  CLI::App* sweep_submit = sweep->add_subcommand("submit", "start the sweep in a sweep.json file");
  tl::client::SweepSubmitOptions sweep_submit_options;
  sweep_submit->add_option("sweep_file", sweep_submit_options.sweep_file,
                           "JSON form of tl.v1.SweepSpec")->required();
  sweep_submit->add_flag("--watch,-w", sweep_submit_options.watch,
                         "follow the sweep's trials until it ends");
  sweep_submit->add_option("--owner", sweep_submit_options.owner,
                           "who submits, and owns the trials (default as for submit)");
  sweep_submit->add_option("--request-id", sweep_submit_options.request_id,
                           "idempotency key: submitting again with it returns the same sweep");
  sweep_submit->add_option("--id-file", sweep_submit_options.id_file,
                           "write the new sweep's id to this file (for scripts)");
  CLI::App* sweep_get = sweep->add_subcommand("get", "show a sweep and its trials");
  sweep_get->add_option("sweep_id", sweep_id)->required();
  sweep_get->add_flag("--json", as_json, "print the sweep as JSON");
  CLI::App* sweep_list = sweep->add_subcommand("list", "list sweeps, newest first");
  tl::client::SweepListOptions sweep_list_options;
  sweep_list->add_option("--state", sweep_list_options.states,
                         "only sweeps in these states (RUNNING, SUCCEEDED, ...)");
  sweep_list->add_option("--limit", sweep_list_options.page_size, "sweeps per page");
  sweep_list->add_option("--page-token", sweep_list_options.page_token,
                         "continue after a previous page");
  CLI::App* sweep_watch = sweep->add_subcommand("watch", "follow a sweep's trials until it ends");
  sweep_watch->add_option("sweep_id", sweep_id)->required();
  CLI::App* sweep_cancel =
      sweep->add_subcommand("cancel", "cancel a sweep and every trial that has not ended");
  sweep_cancel->add_option("sweep_id", sweep_id)->required();
  sweep_cancel->add_option("--reason", reason, "recorded with the sweep");
  CLI::App* sweep_pause =
      sweep->add_subcommand("pause", "start no new trials and pause the running ones");
  sweep_pause->add_option("sweep_id", sweep_id)->required();
  CLI::App* sweep_resume =
      sweep->add_subcommand("resume", "resume a paused sweep's trials and start new ones");
  sweep_resume->add_option("sweep_id", sweep_id)->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int code = app.exit(error);
    return code == 0 ? tl::client::kExitOk : tl::client::kExitBadInput;
  }

  tl::client::CommandOutput output{std::cout, std::cerr, isatty(STDOUT_FILENO) != 0};
  winsize window{};
  if (output.terminal && ioctl(STDOUT_FILENO, TIOCGWINSZ, &window) == 0) {
    output.columns = window.ws_col;
  }
  // Local work: no server, no credentials.
  if (predict->parsed()) return tl::client::PredictCommand(predict_options, output);

  absl::StatusOr<std::unique_ptr<tl::client::Connection>> connection =
      tl::client::Connection::Open(connect);
  if (!connection.ok()) {
    std::cerr << "tlctl: " << connection.status().message() << "\n";
    return tl::client::kExitBadInput;
  }
  tl::client::Connection& server = **connection;
  if (submit->parsed()) {
    submit_options.default_owner = EnvironmentOr("USER", "anonymous");
    return tl::client::SubmitCommand(server, submit_options, output);
  }
  if (get->parsed()) return tl::client::GetCommand(server, job_id, as_json, output);
  if (report->parsed()) return tl::client::ReportCommand(server, job_id, output);
  if (list->parsed()) return tl::client::ListCommand(server, list_options, output);
  if (watch->parsed()) return tl::client::WatchCommand(server, job_id, output);
  if (logs->parsed()) return tl::client::LogsCommand(server, job_id, follow, output);
  if (cancel->parsed()) return tl::client::CancelCommand(server, job_id, reason, output);
  if (pause->parsed()) return tl::client::PauseCommand(server, job_id, output);
  if (resume->parsed()) return tl::client::ResumeCommand(server, job_id, output);
  if (sweep_submit->parsed()) {
    sweep_submit_options.default_owner = EnvironmentOr("USER", "anonymous");
    return tl::client::SweepSubmitCommand(server, sweep_submit_options, output);
  }
  if (sweep_get->parsed()) return tl::client::SweepGetCommand(server, sweep_id, as_json, output);
  if (sweep_list->parsed()) return tl::client::SweepListCommand(server, sweep_list_options, output);
  if (sweep_watch->parsed()) return tl::client::SweepWatchCommand(server, sweep_id, output);
  if (sweep_cancel->parsed()) {
    return tl::client::SweepCancelCommand(server, sweep_id, reason, output);
  }
  if (sweep_pause->parsed()) return tl::client::SweepPauseCommand(server, sweep_id, output);
  if (sweep_resume->parsed()) return tl::client::SweepResumeCommand(server, sweep_id, output);
  return tl::client::kExitBadInput;
}
