// tlctl: the command line of tl.
//   tlctl submit job.json [--watch]   tlctl get JOB [--json]   tlctl list [--state S]
//   tlctl watch JOB                   tlctl cancel JOB         tlctl logs JOB [--follow]
//   tlctl pause JOB                   tlctl resume JOB
//   tlctl report JOB                  (evaluation reports: figures, classes, confusion matrix)
//   tlctl predict MODEL IMAGE... [--top K] [--json]   (local: runs tlpredict, see there)
// Credentials: --token / $TL_TOKEN (or --token-file / $TL_TOKEN_FILE) send
// "authorization: Bearer TOKEN"; --tls-ca / $TL_TLS_CA switches to TLS.
// Exit status: 0 success (for --watch and watch: the job SUCCEEDED), 1 the
// call failed, 2 bad usage or input file, 3 the job FAILED, 4 it was
// CANCELLED.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/job_file.h"
#include "client/job_view.h"
#include "client/report_view.h"
#include "common/credentials.h"
#include "common/grpc_status.h"
#include "common/text.h"
#include "google/protobuf/util/json_util.h"
#include "tl/v1/service.grpc.pb.h"

namespace {

using ::tl::v1::Job;

constexpr int kExitOk = 0;
constexpr int kExitCallFailed = 1;
constexpr int kExitBadInput = 2;
constexpr int kExitJobFailed = 3;
constexpr int kExitJobCancelled = 4;
// A watch survives this many broken streams (a restarting server) in a row.
constexpr int kWatchReconnects = 30;
// A submit whose reply was lost is sent again this many times, with the same request id.
constexpr int kSubmitTries = 5;

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

// 128 random bits in hex: unique enough that two submits never share a request id by chance.
std::string NewRequestId() {
  std::random_device random;
  std::string id;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&id, absl::Hex(random(), absl::kZeroPad8));
  return id;
}

// How tlctl reaches the server: the channel and the token every call carries.
class Connection {
 public:
  Connection(std::shared_ptr<grpc::Channel> channel, std::string token, double timeout_seconds)
      : stub_(tl::v1::JobService::NewStub(channel)),
        token_(std::move(token)),
        timeout_seconds_(timeout_seconds) {}

  tl::v1::JobService::Stub& stub() { return *stub_; }
  bool authenticated() const { return !token_.empty(); }

  // A context for one call; unary calls get the --timeout deadline, streams none.
  std::unique_ptr<grpc::ClientContext> Context(bool with_deadline) const {
    auto context = std::make_unique<grpc::ClientContext>();
    if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
    if (with_deadline) {
      context->set_deadline(
          std::chrono::system_clock::now() +
          std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds_ * 1000)));
    }
    return context;
  }

 private:
  std::unique_ptr<tl::v1::JobService::Stub> stub_;
  std::string token_;
  double timeout_seconds_;
};

int ReportCallError(const grpc::Status& status) {
  std::cerr << "tlctl: " << tl::EscapeControlCharacters(tl::FromGrpcStatus(status).ToString())
            << "\n";
  return kExitCallFailed;
}

int ExitCodeFor(Job::State state) {
  switch (state) {
    case Job::SUCCEEDED:
      return kExitOk;
    case Job::CANCELLED:
      return kExitJobCancelled;
    default:
      return kExitJobFailed;
  }
}

bool IsTerminal(Job::State state) {
  return state == Job::SUCCEEDED || state == Job::FAILED || state == Job::CANCELLED;
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

class Console {
 public:
  explicit Console(bool tty) : tty_(tty) {}
  void Progress(const std::string& line) {
    if (!tty_) return;
    std::cout << "\r\033[K" << line << std::flush;
    bar_shown_ = true;
  }
  void Line(const std::string& line) {
    if (bar_shown_) std::cout << "\r\033[K";
    bar_shown_ = false;
    std::cout << line << "\n" << std::flush;
  }

 private:
  bool tty_;
  bool bar_shown_ = false;
};

// Follows a job to its end, printing state changes, a progress bar and the
// epoch table. Reconnects when the stream breaks before the job ends.
int Watch(Connection& connection, const std::string& job_id) {
  Console console(isatty(STDOUT_FILENO));
  // Epoch rows already shown, by epoch number. A later attempt resumed from
  // a checkpoint reports the same epochs again (same figures, not shown
  // twice); one that started over reports new figures, which are shown.
  std::map<int, tl::v1::EpochMetrics> printed_epochs;
  bool header_printed = false;
  Job::State last_state = Job::STATE_UNSPECIFIED;
  int last_attempt = 0;
  Job last_job;
  int failures = 0;
  // The last stored event seen: a reconnect asks only for what follows it.
  int64_t last_sequence = 0;
  while (true) {
    std::unique_ptr<grpc::ClientContext> context = connection.Context(/*with_deadline=*/false);
    tl::v1::WatchJobRequest request;
    request.set_job_id(job_id);
    request.set_after_sequence(last_sequence);
    std::unique_ptr<grpc::ClientReader<tl::v1::JobEvent>> reader =
        connection.stub().WatchJob(context.get(), request);
    tl::v1::JobEvent event;
    while (reader->Read(&event)) {
      failures = 0;
      if (event.sequence() > 0) last_sequence = event.sequence();
      if (event.has_job()) {
        last_job = event.job();
        if (event.job().state() != last_state || event.job().attempt() != last_attempt) {
          last_state = event.job().state();
          last_attempt = event.job().attempt();
          std::string line = "job " + job_id + " " + Job::State_Name(last_state);
          if (last_attempt > 0) line += " (attempt " + std::to_string(last_attempt) + ")";
          if (!event.job().worker_id().empty() && !IsTerminal(last_state)) {
            line += " on " + tl::EscapeControlCharacters(event.job().worker_id());
          }
          if (!event.job().error().empty()) {
            line += ": " + tl::EscapeControlCharacters(event.job().error());
          }
          console.Line(line);
        }
      } else if (event.has_epoch()) {
        auto printed = printed_epochs.find(event.epoch().epoch());
        if (printed != printed_epochs.end() &&
            printed->second.train_loss() == event.epoch().train_loss() &&
            printed->second.val_accuracy() == event.epoch().val_accuracy()) {
          continue;
        }
        printed_epochs[event.epoch().epoch()] = event.epoch();
        if (!header_printed) {
          console.Line(tl::client::EpochTableHeader());
          header_printed = true;
        }
        console.Line(tl::client::EpochTableRow(event.epoch()));
      } else if (event.has_progress()) {
        console.Progress(tl::client::ProgressLine(event.progress()));
      }
    }
    const grpc::Status status = reader->Finish();
    if (status.ok() && IsTerminal(last_state)) break;
    if (status.error_code() == grpc::StatusCode::NOT_FOUND ||
        status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
        status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
        status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
      return ReportCallError(status);
    }
    if (++failures > kWatchReconnects) return ReportCallError(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(200 * std::min(failures, 10)));
  }
  std::cout << "\n" << tl::client::JobDetails(last_job);
  return ExitCodeFor(last_state);
}

// Prints the job's log lines; with `follow`, until the job ends (reconnecting
// after the last line seen when the stream breaks).
int Logs(Connection& connection, const std::string& job_id, bool follow) {
  int64_t last_sequence = 0;
  int failures = 0;
  while (true) {
    std::unique_ptr<grpc::ClientContext> context = connection.Context(/*with_deadline=*/!follow);
    tl::v1::GetJobLogsRequest request;
    request.set_job_id(job_id);
    request.set_follow(follow);
    request.set_after_sequence(last_sequence);
    std::unique_ptr<grpc::ClientReader<tl::v1::LogLine>> reader =
        connection.stub().GetJobLogs(context.get(), request);
    tl::v1::LogLine line;
    while (reader->Read(&line)) {
      failures = 0;
      last_sequence = line.sequence();
      std::cout << tl::client::LogLineText(line) << "\n" << std::flush;
    }
    const grpc::Status status = reader->Finish();
    if (status.ok()) return kExitOk;
    if (!follow || status.error_code() != grpc::StatusCode::UNAVAILABLE ||
        ++failures > kWatchReconnects) {
      return ReportCallError(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200 * std::min(failures, 10)));
  }
}

// `tlctl predict` runs tlpredict: $TL_PREDICT, else the tlpredict beside
// this executable, else the one on PATH. Returns only when it cannot start.
int RunPredict(const std::vector<std::string>& arguments) {
  std::string program = EnvOr("TL_PREDICT", "");
  if (program.empty()) {
    std::error_code error;
    const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
    const std::filesystem::path beside = self.parent_path() / "tlpredict";
    program = !error && std::filesystem::exists(beside) ? beside.string() : "tlpredict";
  }
  std::vector<char*> argv;
  argv.push_back(program.data());
  std::vector<std::string> copies = arguments;
  for (std::string& argument : copies) argv.push_back(argument.data());
  argv.push_back(nullptr);
  execvp(program.c_str(), argv.data());
  std::cerr << "tlctl: cannot run " << program << " (set $TL_PREDICT to the tlpredict binary): "
            << std::strerror(errno) << "\n";
  return kExitBadInput;
}

// A call that changes one job (cancel, pause, resume) and prints its new state.
template <typename Request, typename Call>
int ChangeJob(Connection& connection, const Request& request, Call call) {
  Job job;
  std::unique_ptr<grpc::ClientContext> context = connection.Context(/*with_deadline=*/true);
  grpc::Status status = (connection.stub().*call)(context.get(), request, &job);
  if (!status.ok()) return ReportCallError(status);
  std::string note;
  if (job.cancel_requested() && !IsTerminal(job.state())) note = " (cancel requested)";
  if (job.pause_requested()) note = " (pause requested: it stops after its current epoch)";
  std::cout << "job " << job.id() << " " << Job::State_Name(job.state()) << note << "\n";
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tlctl: submit, watch and manage tl transfer-learning jobs"};
  app.require_subcommand(1);
  std::string server = EnvOr("TL_SERVER", "127.0.0.1:50051");
  app.add_option("--server", server, "tlserver address (default: $TL_SERVER or 127.0.0.1:50051)");
  double timeout_seconds = 30;
  app.add_option("--timeout", timeout_seconds, "deadline of unary calls, seconds");
  std::string token = EnvOr("TL_TOKEN", "");
  app.add_option("--token", token, "bearer token (default: $TL_TOKEN)");
  std::string token_file = EnvOr("TL_TOKEN_FILE", "");
  app.add_option("--token-file", token_file, "file holding the bearer token ($TL_TOKEN_FILE)");
  std::string tls_ca = EnvOr("TL_TLS_CA", "");
  app.add_option("--tls-ca", tls_ca,
                 "PEM certificate(s) to trust; connects with TLS (default: $TL_TLS_CA)");

  CLI::App* submit = app.add_subcommand("submit", "queue the job in a job.json file");
  std::string job_file;
  bool watch_after_submit = false;
  std::string owner;
  std::string request_id;
  submit->add_option("job_file", job_file, "JSON form of tl.v1.JobSpec")->required();
  submit->add_flag("--watch,-w", watch_after_submit, "follow the job until it ends");
  submit->add_option("--owner", owner,
                     "who submits (default: the token's principal, or $USER without one)");
  submit->add_option("--request-id", request_id,
                     "idempotency key: submitting again with it returns the same job "
                     "(default: a random one, reused when tlctl retries)");
  std::string id_file;
  submit->add_option("--id-file", id_file, "write the new job's id to this file (for scripts)");

  CLI::App* get = app.add_subcommand("get", "show a job");
  std::string job_id;
  bool as_json = false;
  get->add_option("job_id", job_id)->required();
  get->add_flag("--json", as_json, "print the job as JSON");

  CLI::App* report = app.add_subcommand(
      "report", "show a finished job's evaluation on its validation split and test set");
  report->add_option("job_id", job_id)->required();

  CLI::App* predict = app.add_subcommand(
      "predict", "classify image files locally with a job's exported model.pt (runs tlpredict)");
  std::string model_path;
  std::vector<std::string> image_paths;
  int top = 5;
  bool predict_json = false;
  predict->add_option("model", model_path, "model.pt (model.json beside it)")->required();
  predict->add_option("images", image_paths, "image files")->required();
  predict->add_option("--top", top, "classes shown per image")->check(CLI::PositiveNumber);
  predict->add_flag("--json", predict_json, "print JSON");

  CLI::App* list = app.add_subcommand("list", "list jobs, newest first");
  std::vector<std::string> state_names;
  int page_size = 50;
  std::string page_token;
  list->add_option("--state", state_names, "only jobs in these states (QUEUED, RUNNING, ...)");
  list->add_option("--limit", page_size, "jobs per page");
  list->add_option("--page-token", page_token, "continue after a previous page");

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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int code = app.exit(error);
    return code == 0 ? kExitOk : kExitBadInput;
  }

  // Local work: no server, no credentials.
  if (predict->parsed()) {
    std::vector<std::string> arguments = {model_path};
    arguments.insert(arguments.end(), image_paths.begin(), image_paths.end());
    arguments.push_back("--top=" + std::to_string(top));
    if (predict_json) arguments.push_back("--json");
    return RunPredict(arguments);
  }

  if (token.empty() && !token_file.empty()) {
    absl::StatusOr<std::string> from_file = tl::ReadTrimmedFile(token_file, "--token-file");
    if (!from_file.ok()) {
      std::cerr << "tlctl: " << from_file.status().message() << "\n";
      return kExitBadInput;
    }
    token = *from_file;
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      tl::ClientCredentials(tls_ca, "--tls-ca");
  if (!credentials.ok()) {
    std::cerr << "tlctl: " << credentials.status().message() << "\n";
    return kExitBadInput;
  }
  Connection connection(grpc::CreateChannel(server, *credentials), token, timeout_seconds);

  if (submit->parsed()) {
    absl::StatusOr<tl::v1::JobSpec> spec = tl::client::ReadJobSpecFile(job_file);
    if (!spec.ok()) {
      std::cerr << "tlctl: " << spec.status().message() << "\n";
      return kExitBadInput;
    }
    tl::v1::SubmitJobRequest request;
    *request.mutable_spec() = *spec;
    // Without a token the server takes the owner on trust; with one it is the token's principal.
    if (owner.empty() && !connection.authenticated()) owner = EnvOr("USER", "anonymous");
    request.set_owner(owner);
    request.set_request_id(request_id.empty() ? NewRequestId() : request_id);
    Job job;
    grpc::Status status;
    for (int attempt = 1; attempt <= kSubmitTries; ++attempt) {
      std::unique_ptr<grpc::ClientContext> context = connection.Context(/*with_deadline=*/true);
      status = connection.stub().SubmitJob(context.get(), request, &job);
      // Only a call that may not have arrived is repeated; the request id makes a repeat of
      // one that did arrive return the same job.
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE &&
          status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250 * attempt));
    }
    if (!status.ok()) return ReportCallError(status);
    if (!id_file.empty()) {
      std::ofstream out(id_file);
      out << job.id() << "\n";
      if (!out) std::cerr << "tlctl: cannot write " << id_file << "\n";
    }
    std::cout << "submitted job " << job.id() << (job.spec().name().empty() ? "" : " (")
              << tl::EscapeControlCharacters(job.spec().name())
              << (job.spec().name().empty() ? "" : ")") << "\n"
              << std::flush;
    if (!watch_after_submit) return kExitOk;
    return Watch(connection, job.id());
  }

  if (get->parsed() || report->parsed()) {
    tl::v1::GetJobRequest request;
    request.set_job_id(job_id);
    Job job;
    std::unique_ptr<grpc::ClientContext> context = connection.Context(/*with_deadline=*/true);
    grpc::Status status = connection.stub().GetJob(context.get(), request, &job);
    if (!status.ok()) return ReportCallError(status);
    if (get->parsed()) {
      std::cout << (as_json ? ToJson(job) + "\n" : tl::client::JobDetails(job));
      return kExitOk;
    }
    const std::string text = tl::client::JobReportText(job);
    if (text.empty()) {
      std::cerr << "tlctl: job " << job.id() << " has no evaluation report (it is "
                << Job::State_Name(job.state()) << "; a report comes with a SUCCEEDED job)\n";
      return kExitCallFailed;
    }
    std::cout << text;
    return kExitOk;
  }

  if (list->parsed()) {
    tl::v1::ListJobsRequest request;
    for (std::string name : state_names) {
      Job::State state;
      if (!Job::State_Parse(absl::AsciiStrToUpper(name), &state)) {
        std::cerr << "tlctl: --state " << name << " is not a job state\n";
        return kExitBadInput;
      }
      request.add_states(state);
    }
    request.set_page_size(page_size);
    request.set_page_token(page_token);
    tl::v1::ListJobsResponse response;
    std::unique_ptr<grpc::ClientContext> context = connection.Context(/*with_deadline=*/true);
    grpc::Status status = connection.stub().ListJobs(context.get(), request, &response);
    if (!status.ok()) return ReportCallError(status);
    std::cout << tl::client::JobListHeader() << "\n";
    for (const Job& job : response.jobs()) std::cout << tl::client::JobListRow(job) << "\n";
    if (!response.next_page_token().empty()) {
      std::cout << "more: tlctl list --page-token " << response.next_page_token() << "\n";
    }
    return kExitOk;
  }

  if (watch->parsed()) return Watch(connection, job_id);
  if (logs->parsed()) return Logs(connection, job_id, follow);

  if (cancel->parsed()) {
    tl::v1::CancelJobRequest request;
    request.set_job_id(job_id);
    request.set_reason(reason);
    return ChangeJob(connection, request, &tl::v1::JobService::Stub::CancelJob);
  }
  if (pause->parsed()) {
    tl::v1::PauseJobRequest request;
    request.set_job_id(job_id);
    return ChangeJob(connection, request, &tl::v1::JobService::Stub::PauseJob);
  }
  if (resume->parsed()) {
    tl::v1::ResumeJobRequest request;
    request.set_job_id(job_id);
    return ChangeJob(connection, request, &tl::v1::JobService::Stub::ResumeJob);
  }
  return kExitBadInput;
}
