#include "client/commands.h"

#include <grpcpp/create_channel.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/job_file.h"
#include "client/job_view.h"
#include "client/report_view.h"
#include "client/sweep_view.h"
#include "common/credentials.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"

namespace tl::client {
namespace {

using ::tl::v1::Job;
using ::tl::v1::Sweep;

// 128 random bits in hex: unique enough that two submits never share a request id by chance.
std::string NewRequestId() {
  std::random_device random;
  std::string id;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&id, absl::Hex(random(), absl::kZeroPad8));
  return id;
}

// The status in words ("NOT_FOUND: job x not found"), escaped: the message may
// come from whoever named the job.
int ReportCallError(const absl::Status& status, CommandOutput& output) {
  output.err << "tlctl: " << EscapeControlCharacters(status.ToString()) << "\n";
  return kExitCallFailed;
}

int ReportCallError(const grpc::Status& status, CommandOutput& output) {
  return ReportCallError(FromGrpcStatus(status), output);
}

int ExitCodeFor(Job::State state) {
  switch (state) {
    case Job::SUCCEEDED:
      return kExitOk;
    case Job::CANCELLED:
      return kExitJobCancelled;
    case Job::STOPPED_EARLY:
      return kExitJobStoppedEarly;
    default:
      return kExitJobFailed;
  }
}

int ExitCodeFor(Sweep::State state) {
  switch (state) {
    case Sweep::SUCCEEDED:
      return kExitOk;
    case Sweep::CANCELLED:
      return kExitJobCancelled;
    default:
      return kExitJobFailed;
  }
}

// Without a token the server takes the owner on trust; with one it is the token's principal.
std::string OwnerToSend(const std::string& owner, const std::string& default_owner,
                        const Connection& connection) {
  return owner.empty() && !connection.authenticated() ? default_owner : owner;
}

bool MayNotHaveArrived(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

// A submit (`call` given a fresh context each time), sent again while it may not have
// arrived; its request id makes a repeat of one that did arrive return what the first
// created.
template <typename Call>
grpc::Status SubmitUntilAnswered(Connection& connection, Call call) {
  grpc::Status status;
  for (int attempt = 1; attempt <= kSubmitTries; ++attempt) {
    std::unique_ptr<grpc::ClientContext> context = connection.Context(/*with_deadline=*/true);
    status = call(context.get());
    if (!MayNotHaveArrived(status)) break;
    if (attempt < kSubmitTries) connection.Pause(std::chrono::milliseconds(250 * attempt));
  }
  return status;
}

void WriteIdFile(const std::string& path, const std::string& id, CommandOutput& output) {
  if (path.empty()) return;
  std::ofstream id_file(path);
  id_file << id << "\n";
  if (!id_file) output.err << "tlctl: cannot write " << path << "\n";
}

// A watch's stream ended without the end state: whether to give up at once (an answer that
// will not change on a retry) rather than watch again.
bool IsFinalAnswer(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::NOT_FOUND ||
         status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
         status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
         status.error_code() == grpc::StatusCode::UNAUTHENTICATED;
}

// The pause before the `failures`-th reconnect in a row: growing, up to two seconds.
std::chrono::milliseconds ReconnectPause(int failures) {
  return std::chrono::milliseconds(200 * std::min(failures, 10));
}

// State names given on the command line (any case) added to a list request; false, with
// the name on stderr, for one that `parse` does not know.
template <typename State, typename Add>
bool AddStates(const std::vector<std::string>& names, bool (*parse)(const std::string&, State*),
               const char* what, Add add, CommandOutput& output) {
  for (const std::string& name : names) {
    State state;
    if (!parse(absl::AsciiStrToUpper(name), &state)) {
      output.err << "tlctl: --state " << name << " is not a " << what << " state\n";
      return false;
    }
    add(state);
  }
  return true;
}

// The command that brings the next page: the same filters and size, and the token.
std::string NextPageCommand(const std::string& command, const std::vector<std::string>& states,
                            const std::string& sweep_id, int page_size,
                            const std::string& page_token) {
  std::string line = "more: " + command;
  for (const std::string& state : states) line += " --state " + absl::AsciiStrToUpper(state);
  if (!sweep_id.empty()) line += " --sweep " + EscapeControlCharacters(sweep_id);
  line += " --limit " + std::to_string(page_size);
  return line + " --page-token " + EscapeControlCharacters(page_token);
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

// Lines, and on a terminal a progress bar that the next line or bar replaces.
class Console {
 public:
  explicit Console(CommandOutput& output) : output_(output) {}
  void Progress(const std::string& line) {
    if (!output_.terminal) return;
    output_.out << "\r\033[K" << line << std::flush;
    bar_shown_ = true;
  }
  void Line(const std::string& line) {
    if (bar_shown_) output_.out << "\r\033[K";
    bar_shown_ = false;
    output_.out << line << "\n" << std::flush;
  }
  // On a terminal: `lines` in place of the lines the last Redraw wrote (the cursor goes
  // up over them and clears to the end of the screen), each cut to the terminal's width so
  // that none wraps into a line the next redraw would not count.
  void Redraw(const std::string& lines) {
    if (!output_.terminal) return;
    Clear();
    for (absl::string_view line : absl::StrSplit(lines, '\n', absl::SkipEmpty())) {
      output_.out << (output_.columns > 1 ? PrefixUtf8(line, output_.columns - 1)
                                          : std::string(line))
                  << "\n";
      ++redrawn_lines_;
    }
    output_.out << std::flush;
  }
  // Takes away what the last Redraw wrote.
  void Clear() {
    if (redrawn_lines_ > 0) output_.out << "\033[" << redrawn_lines_ << "A\033[J";
    redrawn_lines_ = 0;
  }

 private:
  CommandOutput& output_;
  bool bar_shown_ = false;
  int redrawn_lines_ = 0;
};

// A call that changes one job (cancel, pause, resume) and prints its new state.
template <typename Request, typename Call>
int ChangeJob(Connection& connection, const Request& request, Call call, CommandOutput& output) {
  Job job;
  std::unique_ptr<grpc::ClientContext> context = connection.Context(/*with_deadline=*/true);
  grpc::Status status = (connection.stub().*call)(context.get(), request, &job);
  if (!status.ok()) return ReportCallError(status, output);
  std::string note;
  if (job.cancel_requested() && !JobHasEnded(job.state())) note = " (cancel requested)";
  if (job.pause_requested()) note = " (pause requested: it stops after its current epoch)";
  output.out << "job " << job.id() << " " << Job::State_Name(job.state()) << note << "\n";
  return kExitOk;
}

// A call that changes one sweep (cancel, pause, resume) and prints its new state.
template <typename Request, typename Call>
int ChangeSweep(Connection& connection, const Request& request, Call call,
                CommandOutput& output) {
  Sweep sweep;
  std::unique_ptr<grpc::ClientContext> context = connection.Context(/*with_deadline=*/true);
  grpc::Status status = (connection.stub().*call)(context.get(), request, &sweep);
  if (!status.ok()) return ReportCallError(status, output);
  output.out << "sweep " << EscapeControlCharacters(sweep.id()) << " "
             << Sweep::State_Name(sweep.state()) << "\n";
  return kExitOk;
}

// GetJob, for get and report.
absl::StatusOr<Job> FetchJob(Connection& connection, const std::string& job_id) {
  tl::v1::GetJobRequest request;
  request.set_job_id(job_id);
  Job job;
  std::unique_ptr<grpc::ClientContext> context = connection.Context(/*with_deadline=*/true);
  TL_RETURN_IF_ERROR(FromGrpcStatus(connection.stub().GetJob(context.get(), request, &job)));
  return job;
}

}  // namespace

std::string EnvironmentOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

Connection::Connection(const std::shared_ptr<grpc::Channel>& channel, std::string token,
                       double timeout_seconds)
    : stub_(tl::v1::JobService::NewStub(channel)),
      token_(std::move(token)),
      timeout_seconds_(timeout_seconds),
      pause_([](std::chrono::milliseconds delay) { std::this_thread::sleep_for(delay); }) {}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const ConnectionOptions& options) {
  std::string token = options.token;
  if (token.empty() && !options.token_file.empty()) {
    TL_ASSIGN_OR_RETURN(token, ReadTrimmedFile(options.token_file, "--token-file"));
  }
  TL_ASSIGN_OR_RETURN(const std::shared_ptr<grpc::ChannelCredentials> credentials,
                      ClientCredentials(options.tls_ca, "--tls-ca"));
  return std::make_unique<Connection>(grpc::CreateChannel(options.server, credentials),
                                      std::move(token), options.timeout_seconds);
}

std::unique_ptr<grpc::ClientContext> Connection::Context(bool with_deadline) const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
  if (with_deadline) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds_ * 1000)));
  }
  return context;
}

int SubmitCommand(Connection& connection, const SubmitOptions& options, CommandOutput& output) {
  absl::StatusOr<tl::v1::JobSpec> spec = ReadJobSpecFile(options.job_file);
  if (!spec.ok()) {
    output.err << "tlctl: " << spec.status().message() << "\n";
    return kExitBadInput;
  }
  tl::v1::SubmitJobRequest request;
  *request.mutable_spec() = *std::move(spec);
  request.set_owner(OwnerToSend(options.owner, options.default_owner, connection));
  request.set_request_id(options.request_id.empty() ? NewRequestId() : options.request_id);
  Job job;
  const grpc::Status status =
      SubmitUntilAnswered(connection, [&](grpc::ClientContext* context) {
        return connection.stub().SubmitJob(context, request, &job);
      });
  if (!status.ok()) return ReportCallError(status, output);
  WriteIdFile(options.id_file, job.id(), output);
  output.out << "submitted job " << job.id();
  if (!job.spec().name().empty()) {
    output.out << " (" << EscapeControlCharacters(job.spec().name()) << ")";
  }
  output.out << "\n" << std::flush;
  if (!options.watch) return kExitOk;
  return WatchCommand(connection, job.id(), output);
}

int GetCommand(Connection& connection, const std::string& job_id, bool as_json,
               CommandOutput& output) {
  absl::StatusOr<Job> job = FetchJob(connection, job_id);
  if (!job.ok()) return ReportCallError(job.status(), output);
  output.out << (as_json ? ToJson(*job) + "\n" : JobDetails(*job));
  return kExitOk;
}

int ReportCommand(Connection& connection, const std::string& job_id, CommandOutput& output) {
  absl::StatusOr<Job> job = FetchJob(connection, job_id);
  if (!job.ok()) return ReportCallError(job.status(), output);
  const std::string text = JobReportText(*job);
  if (text.empty()) {
    output.err << "tlctl: job " << job->id() << " has no evaluation report (it is "
               << Job::State_Name(job->state()) << "; a report comes with a SUCCEEDED job)\n";
    return kExitCallFailed;
  }
  output.out << text;
  return kExitOk;
}

int ListCommand(Connection& connection, const ListOptions& options, CommandOutput& output) {
  tl::v1::ListJobsRequest request;
  if (!AddStates<Job::State>(
          options.states, &Job::State_Parse, "job",
          [&request](Job::State state) { request.add_states(state); }, output)) {
    return kExitBadInput;
  }
  request.set_page_size(options.page_size);
  request.set_page_token(options.page_token);
  request.set_sweep_id(options.sweep_id);
  tl::v1::ListJobsResponse response;
  std::unique_ptr<grpc::ClientContext> context = connection.Context(/*with_deadline=*/true);
  grpc::Status status = connection.stub().ListJobs(context.get(), request, &response);
  if (!status.ok()) return ReportCallError(status, output);
  output.out << JobListHeader() << "\n";
  for (const Job& job : response.jobs()) output.out << JobListRow(job) << "\n";
  if (!response.next_page_token().empty()) {
    output.out << NextPageCommand("tlctl list", options.states, options.sweep_id,
                                  options.page_size, response.next_page_token())
               << "\n";
  }
  return kExitOk;
}

int WatchCommand(Connection& connection, const std::string& job_id, CommandOutput& output) {
  Console console(output);
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
          if (!event.job().worker_id().empty() && !JobHasEnded(last_state)) {
            line += " on " + EscapeControlCharacters(event.job().worker_id());
          }
          if (!event.job().error().empty()) {
            line += ": " + EscapeControlCharacters(event.job().error());
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
          console.Line(EpochTableHeader());
          header_printed = true;
        }
        console.Line(EpochTableRow(event.epoch(), HasValidationImages(last_job)));
      } else if (event.has_progress()) {
        console.Progress(ProgressLine(event.progress()));
      }
    }
    const grpc::Status status = reader->Finish();
    if (status.ok() && JobHasEnded(last_state)) break;
    if (IsFinalAnswer(status)) return ReportCallError(status, output);
    if (++failures > kWatchReconnects) return ReportCallError(status, output);
    connection.Pause(ReconnectPause(failures));
  }
  output.out << "\n" << JobDetails(last_job);
  return ExitCodeFor(last_state);
}

int LogsCommand(Connection& connection, const std::string& job_id, bool follow,
                CommandOutput& output) {
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
      output.out << LogLineText(line) << "\n" << std::flush;
    }
    const grpc::Status status = reader->Finish();
    if (status.ok()) return kExitOk;
    if (!follow || status.error_code() != grpc::StatusCode::UNAVAILABLE ||
        ++failures > kWatchReconnects) {
      return ReportCallError(status, output);
    }
    connection.Pause(ReconnectPause(failures));
  }
}

int CancelCommand(Connection& connection, const std::string& job_id, const std::string& reason,
                  CommandOutput& output) {
  tl::v1::CancelJobRequest request;
  request.set_job_id(job_id);
  request.set_reason(reason);
  return ChangeJob(connection, request, &tl::v1::JobService::Stub::CancelJob, output);
}

int PauseCommand(Connection& connection, const std::string& job_id, CommandOutput& output) {
  tl::v1::PauseJobRequest request;
  request.set_job_id(job_id);
  return ChangeJob(connection, request, &tl::v1::JobService::Stub::PauseJob, output);
}

int ResumeCommand(Connection& connection, const std::string& job_id, CommandOutput& output) {
  tl::v1::ResumeJobRequest request;
  request.set_job_id(job_id);
  return ChangeJob(connection, request, &tl::v1::JobService::Stub::ResumeJob, output);
}

int SweepSubmitCommand(Connection& connection, const SweepSubmitOptions& options,
                       CommandOutput& output) {
  absl::StatusOr<tl::v1::SweepSpec> spec = ReadSweepSpecFile(options.sweep_file);
  if (!spec.ok()) {
    output.err << "tlctl: " << spec.status().message() << "\n";
    return kExitBadInput;
  }
  tl::v1::SubmitSweepRequest request;
  *request.mutable_spec() = *std::move(spec);
  request.set_owner(OwnerToSend(options.owner, options.default_owner, connection));
  request.set_request_id(options.request_id.empty() ? NewRequestId() : options.request_id);
  Sweep sweep;
  const grpc::Status status =
      SubmitUntilAnswered(connection, [&](grpc::ClientContext* context) {
        return connection.stub().SubmitSweep(context, request, &sweep);
      });
  if (!status.ok()) return ReportCallError(status, output);
  WriteIdFile(options.id_file, sweep.id(), output);
  output.out << "submitted sweep " << EscapeControlCharacters(sweep.id());
  if (!sweep.spec().name().empty()) {
    output.out << " (" << EscapeControlCharacters(sweep.spec().name()) << ")";
  }
  output.out << "\n" << std::flush;
  if (!options.watch) return kExitOk;
  return SweepWatchCommand(connection, sweep.id(), output);
}

int SweepGetCommand(Connection& connection, const std::string& sweep_id, bool as_json,
                    CommandOutput& output) {
  tl::v1::GetSweepRequest request;
  request.set_sweep_id(sweep_id);
  Sweep sweep;
  std::unique_ptr<grpc::ClientContext> context = connection.Context(/*with_deadline=*/true);
  const grpc::Status status = connection.stub().GetSweep(context.get(), request, &sweep);
  if (!status.ok()) return ReportCallError(status, output);
  output.out << (as_json ? ToJson(sweep) + "\n" : SweepDetails(sweep));
  return kExitOk;
}

int SweepListCommand(Connection& connection, const SweepListOptions& options,
                     CommandOutput& output) {
  tl::v1::ListSweepsRequest request;
  if (!AddStates<Sweep::State>(
          options.states, &Sweep::State_Parse, "sweep",
          [&request](Sweep::State state) { request.add_states(state); }, output)) {
    return kExitBadInput;
  }
  request.set_page_size(options.page_size);
  request.set_page_token(options.page_token);
  tl::v1::ListSweepsResponse response;
  std::unique_ptr<grpc::ClientContext> context = connection.Context(/*with_deadline=*/true);
  const grpc::Status status = connection.stub().ListSweeps(context.get(), request, &response);
  if (!status.ok()) return ReportCallError(status, output);
  output.out << SweepListHeader() << "\n";
  for (const Sweep& sweep : response.sweeps()) output.out << SweepListRow(sweep) << "\n";
  if (!response.next_page_token().empty()) {
    output.out << NextPageCommand("tlctl sweep list", options.states, /*sweep_id=*/"",
                                  options.page_size, response.next_page_token())
               << "\n";
  }
  return kExitOk;
}

int SweepWatchCommand(Connection& connection, const std::string& sweep_id,
                      CommandOutput& output) {
  Console console(output);
  TrialChangeLog change_log;
  Sweep last_sweep;
  int failures = 0;
  while (true) {
    std::unique_ptr<grpc::ClientContext> context = connection.Context(/*with_deadline=*/false);
    tl::v1::WatchSweepRequest request;
    request.set_sweep_id(sweep_id);
    std::unique_ptr<grpc::ClientReader<tl::v1::SweepEvent>> reader =
        connection.stub().WatchSweep(context.get(), request);
    // Each event carries the whole sweep, the first one the sweep as it is: a watch that
    // reconnects misses nothing, and the change log prints nothing twice. Only a change
    // counts as progress: a stream that breaks after repeating the sweep is a failure.
    tl::v1::SweepEvent event;
    while (reader->Read(&event)) {
      if (!google::protobuf::util::MessageDifferencer::Equals(event.sweep(), last_sweep)) {
        failures = 0;
      }
      last_sweep = event.sweep();
      if (output.terminal) {
        console.Redraw(LiveTrialTable(last_sweep, kLiveTrialRows));
      } else {
        for (const std::string& line : change_log.Lines(last_sweep)) console.Line(line);
      }
    }
    const grpc::Status status = reader->Finish();
    if (status.ok() && SweepHasEnded(last_sweep.state())) break;
    if (IsFinalAnswer(status)) return ReportCallError(status, output);
    if (++failures > kWatchReconnects) return ReportCallError(status, output);
    connection.Pause(ReconnectPause(failures));
  }
  // The whole table follows, so the redrawn part of it goes.
  console.Clear();
  output.out << (output.terminal ? "" : "\n") << SweepDetails(last_sweep);
  return ExitCodeFor(last_sweep.state());
}

int SweepCancelCommand(Connection& connection, const std::string& sweep_id,
                       const std::string& reason, CommandOutput& output) {
  tl::v1::CancelSweepRequest request;
  request.set_sweep_id(sweep_id);
  request.set_reason(reason);
  return ChangeSweep(connection, request, &tl::v1::JobService::Stub::CancelSweep, output);
}

int SweepPauseCommand(Connection& connection, const std::string& sweep_id,
                      CommandOutput& output) {
  tl::v1::PauseSweepRequest request;
  request.set_sweep_id(sweep_id);
  return ChangeSweep(connection, request, &tl::v1::JobService::Stub::PauseSweep, output);
}

int SweepResumeCommand(Connection& connection, const std::string& sweep_id,
                       CommandOutput& output) {
  tl::v1::ResumeSweepRequest request;
  request.set_sweep_id(sweep_id);
  return ChangeSweep(connection, request, &tl::v1::JobService::Stub::ResumeSweep, output);
}

std::vector<std::string> PredictArguments(const PredictOptions& options) {
  std::vector<std::string> arguments = {options.model_path};
  arguments.insert(arguments.end(), options.image_paths.begin(), options.image_paths.end());
  arguments.push_back("--top=" + std::to_string(options.top));
  if (options.json) arguments.push_back("--json");
  if (!options.precision.empty()) arguments.push_back("--precision=" + options.precision);
  return arguments;
}

int PredictCommand(const PredictOptions& options, CommandOutput& output) {
  std::string program = EnvironmentOr("TL_PREDICT", "");
  if (program.empty()) {
    std::error_code error;
    const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
    const std::filesystem::path beside = self.parent_path() / "tlpredict";
    program = !error && std::filesystem::exists(beside) ? beside.string() : "tlpredict";
  }
  std::vector<std::string> arguments = PredictArguments(options);
  std::vector<char*> argv;
  argv.push_back(program.data());
  for (std::string& argument : arguments) argv.push_back(argument.data());
  argv.push_back(nullptr);
  // Whatever this process buffered must not be lost with it.
  output.out << std::flush;
  output.err << std::flush;
  execvp(program.c_str(), argv.data());
  output.err << "tlctl: cannot run " << program
             << " (set $TL_PREDICT to the tlpredict binary): " << std::strerror(errno) << "\n";
  return kExitBadInput;
}

}  // namespace tl::client
