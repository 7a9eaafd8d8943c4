// tlctl: the command line of tl.
//   tlctl submit job.json [--watch]   tlctl get JOB [--json]   tlctl list [--state S]
//   tlctl watch JOB                   tlctl cancel JOB
// Exit status: 0 success (for --watch and watch: the job SUCCEEDED), 1 the
// call failed, 2 bad usage or input file, 3 the job FAILED, 4 it was
// CANCELLED.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "client/job_file.h"
#include "client/job_view.h"
#include "common/grpc_status.h"
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

int ReportCallError(const grpc::Status& status) {
  std::cerr << "tlctl: " << tl::FromGrpcStatus(status).ToString() << "\n";
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
int Watch(tl::v1::JobService::Stub& stub, const std::string& job_id) {
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
  while (true) {
    grpc::ClientContext context;
    tl::v1::WatchJobRequest request;
    request.set_job_id(job_id);
    std::unique_ptr<grpc::ClientReader<tl::v1::JobEvent>> reader = stub.WatchJob(&context, request);
    tl::v1::JobEvent event;
    while (reader->Read(&event)) {
      failures = 0;
      if (event.has_job()) {
        last_job = event.job();
        if (event.job().state() != last_state || event.job().attempt() != last_attempt) {
          last_state = event.job().state();
          last_attempt = event.job().attempt();
          std::string line = "job " + job_id + " " + Job::State_Name(last_state);
          if (last_attempt > 0) line += " (attempt " + std::to_string(last_attempt) + ")";
          if (!event.job().worker_id().empty() && !IsTerminal(last_state)) {
            line += " on " + event.job().worker_id();
          }
          if (!event.job().error().empty()) line += ": " + event.job().error();
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
        status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
      return ReportCallError(status);
    }
    if (++failures > kWatchReconnects) return ReportCallError(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(200 * std::min(failures, 10)));
  }
  std::cout << "\n" << tl::client::JobDetails(last_job);
  return ExitCodeFor(last_state);
}

std::string DefaultOwner() {
  const char* user = std::getenv("USER");
  return user != nullptr && *user != '\0' ? user : "anonymous";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tlctl: submit, watch and manage tl transfer-learning jobs"};
  app.require_subcommand(1);
  std::string server = "127.0.0.1:50051";
  if (const char* from_env = std::getenv("TL_SERVER"); from_env != nullptr && *from_env != '\0') {
    server = from_env;
  }
  app.add_option("--server", server, "tlserver address (default: $TL_SERVER or 127.0.0.1:50051)");
  double timeout_seconds = 30;
  app.add_option("--timeout", timeout_seconds, "deadline of unary calls, seconds");

  CLI::App* submit = app.add_subcommand("submit", "queue the job in a job.json file");
  std::string job_file;
  bool watch_after_submit = false;
  std::string owner = DefaultOwner();
  submit->add_option("job_file", job_file, "JSON form of tl.v1.JobSpec")->required();
  submit->add_flag("--watch,-w", watch_after_submit, "follow the job until it ends");
  submit->add_option("--owner", owner, "who submits (default: $USER)");
  std::string id_file;
  submit->add_option("--id-file", id_file, "write the new job's id to this file (for scripts)");

  CLI::App* get = app.add_subcommand("get", "show a job");
  std::string job_id;
  bool as_json = false;
  get->add_option("job_id", job_id)->required();
  get->add_flag("--json", as_json, "print the job as JSON");

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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int code = app.exit(error);
    return code == 0 ? kExitOk : kExitBadInput;
  }

  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
  std::unique_ptr<tl::v1::JobService::Stub> stub = tl::v1::JobService::NewStub(channel);
  auto with_deadline = [&](grpc::ClientContext& context) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000)));
  };

  if (submit->parsed()) {
    absl::StatusOr<tl::v1::JobSpec> spec = tl::client::ReadJobSpecFile(job_file);
    if (!spec.ok()) {
      std::cerr << "tlctl: " << spec.status().message() << "\n";
      return kExitBadInput;
    }
    tl::v1::SubmitJobRequest request;
    *request.mutable_spec() = *spec;
    request.set_owner(owner);
    Job job;
    grpc::ClientContext context;
    with_deadline(context);
    grpc::Status status = stub->SubmitJob(&context, request, &job);
    if (!status.ok()) return ReportCallError(status);
    if (!id_file.empty()) {
      std::ofstream out(id_file);
      out << job.id() << "\n";
      if (!out) std::cerr << "tlctl: cannot write " << id_file << "\n";
    }
    std::cout << "submitted job " << job.id() << (job.spec().name().empty() ? "" : " (")
              << job.spec().name() << (job.spec().name().empty() ? "" : ")") << "\n"
              << std::flush;
    if (!watch_after_submit) return kExitOk;
    return Watch(*stub, job.id());
  }

  if (get->parsed()) {
    tl::v1::GetJobRequest request;
    request.set_job_id(job_id);
    Job job;
    grpc::ClientContext context;
    with_deadline(context);
    grpc::Status status = stub->GetJob(&context, request, &job);
    if (!status.ok()) return ReportCallError(status);
    std::cout << (as_json ? ToJson(job) + "\n" : tl::client::JobDetails(job));
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
    grpc::ClientContext context;
    with_deadline(context);
    grpc::Status status = stub->ListJobs(&context, request, &response);
    if (!status.ok()) return ReportCallError(status);
    std::cout << tl::client::JobListHeader() << "\n";
    for (const Job& job : response.jobs()) std::cout << tl::client::JobListRow(job) << "\n";
    if (!response.next_page_token().empty()) {
      std::cout << "more: tlctl list --page-token " << response.next_page_token() << "\n";
    }
    return kExitOk;
  }

  if (watch->parsed()) return Watch(*stub, job_id);

  if (cancel->parsed()) {
    tl::v1::CancelJobRequest request;
    request.set_job_id(job_id);
    request.set_reason(reason);
    Job job;
    grpc::ClientContext context;
    with_deadline(context);
    grpc::Status status = stub->CancelJob(&context, request, &job);
    if (!status.ok()) return ReportCallError(status);
    std::cout << "job " << job.id() << " " << Job::State_Name(job.state())
              << (job.state() == Job::CANCELLED ? "" : " (cancel requested)") << "\n";
    return kExitOk;
  }
  return kExitBadInput;
}
