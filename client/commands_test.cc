// tlctl's subcommands against a fake JobService served in this process on
// 127.0.0.1: the requests each command sends, what it prints, its exit status,
// and how it retries and reconnects (with the pauses recorded, not waited).
#include "client/commands.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <deque>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "client/job_view.h"
#include "client/sweep_view.h"
#include "absl/strings/str_split.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"

namespace tl::client {
namespace {

using ::std::chrono::milliseconds;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::SizeIs;
using ::testing::StartsWith;
using ::tl::testing::StatusIs;
using ::tl::testing::TempDir;
using ::tl::testing::WriteFile;
using ::tl::v1::Job;
using ::tl::v1::JobEvent;
using ::tl::v1::LogLine;
using ::tl::v1::Sweep;
using ::tl::v1::SweepEvent;

// What a call looked like on the server's side.
struct CallSeen {
  std::string authorization;  // the metadata's value, empty without one
  bool has_deadline = false;  // within the next hour: tlctl's --timeout, not none
};

// A JobService whose answers each test scripts, recording every request.
// Handlers run on the server's threads; the test sets them before a command
// and reads the records after it returns, both under the mutex.
class FakeJobService final : public tl::v1::JobService::Service {
 public:
  template <typename Request, typename Reply>
  using Unary = std::function<grpc::Status(const Request&, Reply*)>;
  template <typename Request, typename Event>
  using Stream = std::function<grpc::Status(const Request&, grpc::ServerWriter<Event>*)>;

  void OnSubmit(Unary<tl::v1::SubmitJobRequest, Job> handler) { Set(submit_, handler); }
  void OnGet(Unary<tl::v1::GetJobRequest, Job> handler) { Set(get_, handler); }
  void OnList(Unary<tl::v1::ListJobsRequest, tl::v1::ListJobsResponse> handler) {
    Set(list_, handler);
  }
  void OnCancel(Unary<tl::v1::CancelJobRequest, Job> handler) { Set(cancel_, handler); }
  void OnPause(Unary<tl::v1::PauseJobRequest, Job> handler) { Set(pause_, handler); }
  void OnResume(Unary<tl::v1::ResumeJobRequest, Job> handler) { Set(resume_, handler); }
  void OnWatch(Stream<tl::v1::WatchJobRequest, JobEvent> handler) { Set(watch_, handler); }
  void OnLogs(Stream<tl::v1::GetJobLogsRequest, LogLine> handler) { Set(logs_, handler); }
  void OnSubmitSweep(Unary<tl::v1::SubmitSweepRequest, Sweep> handler) {
    Set(submit_sweep_, handler);
  }
  void OnGetSweep(Unary<tl::v1::GetSweepRequest, Sweep> handler) { Set(get_sweep_, handler); }
  void OnListSweeps(Unary<tl::v1::ListSweepsRequest, tl::v1::ListSweepsResponse> handler) {
    Set(list_sweeps_, handler);
  }
  void OnCancelSweep(Unary<tl::v1::CancelSweepRequest, Sweep> handler) {
    Set(cancel_sweep_, handler);
  }
  void OnPauseSweep(Unary<tl::v1::PauseSweepRequest, Sweep> handler) {
    Set(pause_sweep_, handler);
  }
  void OnResumeSweep(Unary<tl::v1::ResumeSweepRequest, Sweep> handler) {
    Set(resume_sweep_, handler);
  }
  void OnWatchSweep(Stream<tl::v1::WatchSweepRequest, SweepEvent> handler) {
    Set(watch_sweep_, handler);
  }

  std::vector<tl::v1::SubmitJobRequest> submits() { return Copy(submits_); }
  std::vector<tl::v1::GetJobRequest> gets() { return Copy(gets_); }
  std::vector<tl::v1::ListJobsRequest> lists() { return Copy(lists_); }
  std::vector<tl::v1::CancelJobRequest> cancels() { return Copy(cancels_); }
  std::vector<tl::v1::PauseJobRequest> pauses() { return Copy(pauses_); }
  std::vector<tl::v1::ResumeJobRequest> resumes() { return Copy(resumes_); }
  std::vector<tl::v1::WatchJobRequest> watches() { return Copy(watches_); }
  std::vector<tl::v1::GetJobLogsRequest> log_requests() { return Copy(log_requests_); }
  std::vector<tl::v1::SubmitSweepRequest> sweep_submits() { return Copy(sweep_submits_); }
  std::vector<tl::v1::GetSweepRequest> sweep_gets() { return Copy(sweep_gets_); }
  std::vector<tl::v1::ListSweepsRequest> sweep_lists() { return Copy(sweep_lists_); }
  std::vector<tl::v1::CancelSweepRequest> sweep_cancels() { return Copy(sweep_cancels_); }
  std::vector<tl::v1::PauseSweepRequest> sweep_pauses() { return Copy(sweep_pauses_); }
  std::vector<tl::v1::ResumeSweepRequest> sweep_resumes() { return Copy(sweep_resumes_); }
  std::vector<tl::v1::WatchSweepRequest> sweep_watches() { return Copy(sweep_watches_); }
  std::vector<CallSeen> calls() { return Copy(calls_); }

  grpc::Status SubmitJob(grpc::ServerContext* context, const tl::v1::SubmitJobRequest* request,
                         Job* reply) override {
    return Answer(context, *request, reply, submits_, submit_);
  }
  grpc::Status GetJob(grpc::ServerContext* context, const tl::v1::GetJobRequest* request,
                      Job* reply) override {
    return Answer(context, *request, reply, gets_, get_);
  }
  grpc::Status ListJobs(grpc::ServerContext* context, const tl::v1::ListJobsRequest* request,
                        tl::v1::ListJobsResponse* reply) override {
    return Answer(context, *request, reply, lists_, list_);
  }
  grpc::Status CancelJob(grpc::ServerContext* context, const tl::v1::CancelJobRequest* request,
                         Job* reply) override {
    return Answer(context, *request, reply, cancels_, cancel_);
  }
  grpc::Status PauseJob(grpc::ServerContext* context, const tl::v1::PauseJobRequest* request,
                        Job* reply) override {
    return Answer(context, *request, reply, pauses_, pause_);
  }
  grpc::Status ResumeJob(grpc::ServerContext* context, const tl::v1::ResumeJobRequest* request,
                         Job* reply) override {
    return Answer(context, *request, reply, resumes_, resume_);
  }
  grpc::Status WatchJob(grpc::ServerContext* context, const tl::v1::WatchJobRequest* request,
                        grpc::ServerWriter<JobEvent>* writer) override {
    return Answer(context, *request, writer, watches_, watch_);
  }
  grpc::Status GetJobLogs(grpc::ServerContext* context, const tl::v1::GetJobLogsRequest* request,
                          grpc::ServerWriter<LogLine>* writer) override {
    return Answer(context, *request, writer, log_requests_, logs_);
  }
  grpc::Status SubmitSweep(grpc::ServerContext* context, const tl::v1::SubmitSweepRequest* request,
                           Sweep* reply) override {
    return Answer(context, *request, reply, sweep_submits_, submit_sweep_);
  }
  grpc::Status GetSweep(grpc::ServerContext* context, const tl::v1::GetSweepRequest* request,
                        Sweep* reply) override {
    return Answer(context, *request, reply, sweep_gets_, get_sweep_);
  }
  grpc::Status ListSweeps(grpc::ServerContext* context, const tl::v1::ListSweepsRequest* request,
                          tl::v1::ListSweepsResponse* reply) override {
    return Answer(context, *request, reply, sweep_lists_, list_sweeps_);
  }
  grpc::Status CancelSweep(grpc::ServerContext* context, const tl::v1::CancelSweepRequest* request,
                           Sweep* reply) override {
    return Answer(context, *request, reply, sweep_cancels_, cancel_sweep_);
  }
  grpc::Status PauseSweep(grpc::ServerContext* context, const tl::v1::PauseSweepRequest* request,
                          Sweep* reply) override {
    return Answer(context, *request, reply, sweep_pauses_, pause_sweep_);
  }
  grpc::Status ResumeSweep(grpc::ServerContext* context, const tl::v1::ResumeSweepRequest* request,
                           Sweep* reply) override {
    return Answer(context, *request, reply, sweep_resumes_, resume_sweep_);
  }
  grpc::Status WatchSweep(grpc::ServerContext* context, const tl::v1::WatchSweepRequest* request,
                          grpc::ServerWriter<SweepEvent>* writer) override {
    return Answer(context, *request, writer, sweep_watches_, watch_sweep_);
  }

 private:
  template <typename Handler>
  void Set(Handler& slot, const Handler& handler) {
    std::lock_guard<std::mutex> lock(mutex_);
    slot = handler;
  }
  template <typename T>
  std::vector<T> Copy(const std::vector<T>& records) {
    std::lock_guard<std::mutex> lock(mutex_);
    return records;
  }
  template <typename Request, typename Reply, typename Handler>
  grpc::Status Answer(grpc::ServerContext* context, const Request& request, Reply* reply,
                      std::vector<Request>& requests, const Handler& slot) {
    Handler handler;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      requests.push_back(request);
      CallSeen seen;
      auto authorization = context->client_metadata().find("authorization");
      if (authorization != context->client_metadata().end()) {
        seen.authorization.assign(authorization->second.data(), authorization->second.size());
      }
      seen.has_deadline =
          context->deadline() < std::chrono::system_clock::now() + std::chrono::hours(1);
      calls_.push_back(seen);
      handler = slot;
    }
    if (!handler) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "not scripted");
    return handler(request, reply);
  }

  std::mutex mutex_;
  Unary<tl::v1::SubmitJobRequest, Job> submit_;
  Unary<tl::v1::GetJobRequest, Job> get_;
  Unary<tl::v1::ListJobsRequest, tl::v1::ListJobsResponse> list_;
  Unary<tl::v1::CancelJobRequest, Job> cancel_;
  Unary<tl::v1::PauseJobRequest, Job> pause_;
  Unary<tl::v1::ResumeJobRequest, Job> resume_;
  Stream<tl::v1::WatchJobRequest, JobEvent> watch_;
  Stream<tl::v1::GetJobLogsRequest, LogLine> logs_;
  std::vector<tl::v1::SubmitJobRequest> submits_;
  std::vector<tl::v1::GetJobRequest> gets_;
  std::vector<tl::v1::ListJobsRequest> lists_;
  std::vector<tl::v1::CancelJobRequest> cancels_;
  std::vector<tl::v1::PauseJobRequest> pauses_;
  std::vector<tl::v1::ResumeJobRequest> resumes_;
  std::vector<tl::v1::WatchJobRequest> watches_;
  std::vector<tl::v1::GetJobLogsRequest> log_requests_;
  Unary<tl::v1::SubmitSweepRequest, Sweep> submit_sweep_;
  Unary<tl::v1::GetSweepRequest, Sweep> get_sweep_;
  Unary<tl::v1::ListSweepsRequest, tl::v1::ListSweepsResponse> list_sweeps_;
  Unary<tl::v1::CancelSweepRequest, Sweep> cancel_sweep_;
  Unary<tl::v1::PauseSweepRequest, Sweep> pause_sweep_;
  Unary<tl::v1::ResumeSweepRequest, Sweep> resume_sweep_;
  Stream<tl::v1::WatchSweepRequest, SweepEvent> watch_sweep_;
  std::vector<tl::v1::SubmitSweepRequest> sweep_submits_;
  std::vector<tl::v1::GetSweepRequest> sweep_gets_;
  std::vector<tl::v1::ListSweepsRequest> sweep_lists_;
  std::vector<tl::v1::CancelSweepRequest> sweep_cancels_;
  std::vector<tl::v1::PauseSweepRequest> sweep_pauses_;
  std::vector<tl::v1::ResumeSweepRequest> sweep_resumes_;
  std::vector<tl::v1::WatchSweepRequest> sweep_watches_;
  std::vector<CallSeen> calls_;
};

Job MakeJob(const std::string& id, Job::State state, int attempt = 0) {
  Job job;
  job.set_id(id);
  job.set_state(state);
  job.set_attempt(attempt);
  return job;
}

JobEvent JobChanged(int64_t sequence, const Job& job) {
  JobEvent event;
  event.set_sequence(sequence);
  *event.mutable_job() = job;
  return event;
}

JobEvent EpochDone(int64_t sequence, int epoch, double train_loss, double val_accuracy) {
  JobEvent event;
  event.set_sequence(sequence);
  event.mutable_epoch()->set_epoch(epoch);
  event.mutable_epoch()->set_train_loss(train_loss);
  event.mutable_epoch()->set_val_accuracy(val_accuracy);
  return event;
}

// A stream handler that sends `events`, then ends with `status`.
template <typename Request, typename Event>
FakeJobService::Stream<Request, Event> Sends(std::vector<Event> events,
                                             grpc::Status status = grpc::Status::OK) {
  return [events, status](const Request&, grpc::ServerWriter<Event>* writer) {
    for (const Event& event : events) writer->Write(event);
    return status;
  };
}

size_t Count(const std::string& text, const std::string& part) {
  size_t count = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) {
    ++count;
  }
  return count;
}

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  // A connection to the fake; retry pauses are recorded in pauses_ instead of waited.
  std::unique_ptr<Connection> Connect(const std::string& token = "") {
    auto connection = std::make_unique<Connection>(
        grpc::CreateChannel(Address(), grpc::InsecureChannelCredentials()), token,
        /*timeout_seconds=*/30);
    connection->set_pause([this](milliseconds delay) { pauses_.push_back(delay); });
    return connection;
  }
  std::string Address() const { return "127.0.0.1:" + std::to_string(port_); }

  std::string JobFile(const std::string& json) {
    const std::string path = temp_.Sub("job.json");
    WriteFile(path, json);
    return path;
  }

  FakeJobService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  TempDir temp_;
  std::vector<milliseconds> pauses_;
  std::ostringstream out_;
  std::ostringstream err_;
  CommandOutput output_{out_, err_, /*terminal=*/false};
};

// ---------------------------------------------------------------- submit

TEST_F(CommandsTest, SubmitSendsTheSpecWithARequestIdAndTheDefaultOwnerWithoutAToken) {
  service_.OnSubmit([](const tl::v1::SubmitJobRequest& request, Job* job) {
    *job = MakeJob("j-1", Job::QUEUED);
    *job->mutable_spec() = request.spec();
    return grpc::Status::OK;
  });
  SubmitOptions options;
  options.job_file = JobFile(R"({"name": "flowers", "priority": 3})");
  options.default_owner = "alice";
  options.id_file = temp_.Sub("id");
  EXPECT_EQ(SubmitCommand(*Connect(), options, output_), kExitOk);

  ASSERT_THAT(service_.submits(), SizeIs(1));
  const tl::v1::SubmitJobRequest request = service_.submits()[0];
  EXPECT_EQ(request.spec().name(), "flowers");
  EXPECT_EQ(request.spec().priority(), 3);
  EXPECT_EQ(request.owner(), "alice");
  EXPECT_THAT(request.request_id(), MatchesRegex("[0-9a-f]{32}"));
  EXPECT_EQ(out_.str(), "submitted job j-1 (flowers)\n");
  EXPECT_EQ(err_.str(), "");
  std::ifstream id_file(options.id_file);
  std::string id;
  id_file >> id;
  EXPECT_EQ(id, "j-1");
  EXPECT_THAT(service_.calls()[0].authorization, IsEmpty());
  EXPECT_TRUE(service_.calls()[0].has_deadline);
}

TEST_F(CommandsTest, SubmitWithATokenLeavesTheOwnerToTheServerAndSendsTheToken) {
  service_.OnSubmit([](const tl::v1::SubmitJobRequest&, Job* job) {
    *job = MakeJob("j-2", Job::QUEUED);
    return grpc::Status::OK;
  });
  SubmitOptions options;
  options.job_file = JobFile(R"({"name": "flowers"})");
  options.default_owner = "alice";
  EXPECT_EQ(SubmitCommand(*Connect("secret"), options, output_), kExitOk);
  ASSERT_THAT(service_.submits(), SizeIs(1));
  EXPECT_EQ(service_.submits()[0].owner(), "");
  EXPECT_EQ(service_.calls()[0].authorization, "Bearer secret");
  // A job without a name is shown without the parentheses.
  EXPECT_EQ(out_.str(), "submitted job j-2\n");
}

TEST_F(CommandsTest, SubmitSendsAGivenOwnerAndRequestIdAsTheyAre) {
  service_.OnSubmit([](const tl::v1::SubmitJobRequest&, Job* job) {
    *job = MakeJob("j-3", Job::QUEUED);
    return grpc::Status::OK;
  });
  SubmitOptions options;
  options.job_file = JobFile("{}");
  options.owner = "bob";
  options.request_id = "retry-me";
  EXPECT_EQ(SubmitCommand(*Connect("secret"), options, output_), kExitOk);
  ASSERT_THAT(service_.submits(), SizeIs(1));
  EXPECT_EQ(service_.submits()[0].owner(), "bob");
  EXPECT_EQ(service_.submits()[0].request_id(), "retry-me");
}

TEST_F(CommandsTest, SubmitRepeatsACallThatMayNotHaveArrivedWithTheSameRequestId) {
  int calls = 0;
  service_.OnSubmit([&calls](const tl::v1::SubmitJobRequest&, Job* job) {
    if (++calls == 1) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting");
    if (calls == 2) return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "slow");
    *job = MakeJob("j-4", Job::QUEUED);
    return grpc::Status::OK;
  });
  SubmitOptions options;
  options.job_file = JobFile("{}");
  EXPECT_EQ(SubmitCommand(*Connect(), options, output_), kExitOk);
  const std::vector<tl::v1::SubmitJobRequest> requests = service_.submits();
  ASSERT_THAT(requests, SizeIs(3));
  EXPECT_FALSE(requests[0].request_id().empty());
  EXPECT_EQ(requests[1].request_id(), requests[0].request_id());
  EXPECT_EQ(requests[2].request_id(), requests[0].request_id());
  EXPECT_THAT(pauses_, ElementsAre(milliseconds(250), milliseconds(500)));
  EXPECT_EQ(out_.str(), "submitted job j-4\n");
}

TEST_F(CommandsTest, SubmitGivesUpAfterItsTriesWithTheStatusOnStderr) {
  service_.OnSubmit([](const tl::v1::SubmitJobRequest&, Job*) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
  });
  SubmitOptions options;
  options.job_file = JobFile("{}");
  EXPECT_EQ(SubmitCommand(*Connect(), options, output_), kExitCallFailed);
  EXPECT_THAT(service_.submits(), SizeIs(kSubmitTries));
  EXPECT_THAT(pauses_, SizeIs(kSubmitTries - 1));
  EXPECT_EQ(err_.str(), "tlctl: UNAVAILABLE: down\n");
  EXPECT_EQ(out_.str(), "");
}

TEST_F(CommandsTest, SubmitDoesNotRepeatARefusal) {
  service_.OnSubmit([](const tl::v1::SubmitJobRequest&, Job*) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "training.epochs: must be positive");
  });
  SubmitOptions options;
  options.job_file = JobFile("{}");
  EXPECT_EQ(SubmitCommand(*Connect(), options, output_), kExitCallFailed);
  EXPECT_THAT(service_.submits(), SizeIs(1));
  EXPECT_THAT(pauses_, IsEmpty());
  EXPECT_EQ(err_.str(), "tlctl: INVALID_ARGUMENT: training.epochs: must be positive\n");
}

TEST_F(CommandsTest, SubmitOfABadJobFileIsBadInputAndSendsNothing) {
  SubmitOptions options;
  options.job_file = JobFile(R"({"nmae": "typo"})");
  EXPECT_EQ(SubmitCommand(*Connect(), options, output_), kExitBadInput);
  EXPECT_THAT(err_.str(), AllOf(StartsWith("tlctl: "), HasSubstr("job.json")));
  options.job_file = temp_.Sub("missing.json");
  EXPECT_EQ(SubmitCommand(*Connect(), options, output_), kExitBadInput);
  EXPECT_THAT(service_.submits(), IsEmpty());
}

TEST_F(CommandsTest, SubmitWithWatchFollowsTheNewJobToItsEnd) {
  service_.OnSubmit([](const tl::v1::SubmitJobRequest&, Job* job) {
    *job = MakeJob("j-5", Job::QUEUED);
    return grpc::Status::OK;
  });
  service_.OnWatch(Sends<tl::v1::WatchJobRequest, JobEvent>(
      {JobChanged(1, MakeJob("j-5", Job::QUEUED)), JobChanged(2, MakeJob("j-5", Job::FAILED, 1))}));
  SubmitOptions options;
  options.job_file = JobFile("{}");
  options.watch = true;
  EXPECT_EQ(SubmitCommand(*Connect(), options, output_), kExitJobFailed);
  ASSERT_THAT(service_.watches(), SizeIs(1));
  EXPECT_EQ(service_.watches()[0].job_id(), "j-5");
  EXPECT_FALSE(service_.calls()[1].has_deadline);
  EXPECT_THAT(out_.str(),
              StartsWith("submitted job j-5\njob j-5 QUEUED\njob j-5 FAILED (attempt 1)\n"));
}

// ---------------------------------------------------------------- get, report

TEST_F(CommandsTest, GetPrintsTheJobInWordsOrAsJson) {
  service_.OnGet([](const tl::v1::GetJobRequest& request, Job* job) {
    *job = MakeJob(request.job_id(), Job::RUNNING, 2);
    job->mutable_spec()->set_name("flowers");
    return grpc::Status::OK;
  });
  EXPECT_EQ(GetCommand(*Connect(), "j-6", /*as_json=*/false, output_), kExitOk);
  EXPECT_THAT(out_.str(), AllOf(HasSubstr("j-6"), HasSubstr("flowers"), HasSubstr("RUNNING")));
  out_.str("");
  EXPECT_EQ(GetCommand(*Connect(), "j-6", /*as_json=*/true, output_), kExitOk);
  // protobuf's printer may end the object with a line break of its own.
  std::string json = out_.str();
  while (!json.empty() && json.back() == '\n') json.pop_back();
  EXPECT_THAT(json, AllOf(StartsWith("{"), HasSubstr("\"id\": \"j-6\""),
                          HasSubstr("\"state\": \"RUNNING\""), EndsWith("}")));
  EXPECT_THAT(out_.str(), EndsWith("\n"));
  ASSERT_THAT(service_.gets(), SizeIs(2));
  EXPECT_EQ(service_.gets()[0].job_id(), "j-6");
  EXPECT_TRUE(service_.calls()[0].has_deadline);
}

TEST_F(CommandsTest, AFailedCallExitsOneWithTheStatusNameAndAnEscapedMessage) {
  service_.OnGet([](const tl::v1::GetJobRequest& request, Job*) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "job " + request.job_id() + " not found");
  });
  EXPECT_EQ(GetCommand(*Connect(), "j\x1b[2J", /*as_json=*/false, output_), kExitCallFailed);
  EXPECT_THAT(err_.str(), StartsWith("tlctl: NOT_FOUND: job j"));
  EXPECT_THAT(err_.str(), Not(HasSubstr("\x1b")));
  EXPECT_EQ(out_.str(), "");
}

TEST_F(CommandsTest, ReportPrintsTheEvaluationOrSaysThereIsNone) {
  service_.OnGet([](const tl::v1::GetJobRequest& request, Job* job) {
    *job = MakeJob(request.job_id(), request.job_id() == "done" ? Job::SUCCEEDED : Job::RUNNING);
    if (request.job_id() == "done") {
      tl::v1::EvaluationReport* report = job->mutable_result()->mutable_val_report();
      report->set_images(40);
      report->set_accuracy(0.875);
    }
    return grpc::Status::OK;
  });
  EXPECT_EQ(ReportCommand(*Connect(), "done", output_), kExitOk);
  EXPECT_THAT(out_.str(), AllOf(HasSubstr("validation"), HasSubstr("40")));
  EXPECT_EQ(err_.str(), "");
  out_.str("");
  EXPECT_EQ(ReportCommand(*Connect(), "busy", output_), kExitCallFailed);
  EXPECT_EQ(out_.str(), "");
  EXPECT_THAT(err_.str(), HasSubstr("tlctl: job busy has no evaluation report (it is RUNNING"));
}

// ---------------------------------------------------------------- list

TEST_F(CommandsTest, ListSendsStatesAndPageAndPrintsHowToGetTheNextPage) {
  service_.OnList([](const tl::v1::ListJobsRequest& request, tl::v1::ListJobsResponse* response) {
    if (request.page_token().empty()) {
      *response->add_jobs() = MakeJob("j-9", Job::RUNNING);
      *response->add_jobs() = MakeJob("j-8", Job::QUEUED);
      response->set_next_page_token("after-j-8");
    } else if (request.page_token() == "after-j-8") {
      *response->add_jobs() = MakeJob("j-7", Job::QUEUED);
    } else {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad page token");
    }
    return grpc::Status::OK;
  });
  ListOptions options;
  options.states = {"running", "Queued"};
  options.page_size = 2;
  EXPECT_EQ(ListCommand(*Connect(), options, output_), kExitOk);
  const std::string first_page = out_.str();
  EXPECT_THAT(first_page, HasSubstr("j-9"));
  EXPECT_THAT(first_page, HasSubstr("j-8"));
  // The command for the next page repeats the filters: the token holds only a place.
  EXPECT_THAT(first_page, EndsWith("more: tlctl list --state RUNNING --state QUEUED --limit 2 "
                                   "--page-token after-j-8\n"));
  EXPECT_LT(first_page.find("j-9"), first_page.find("j-8"));

  // The page token printed, given back, brings the last page, which offers no other.
  out_.str("");
  options.page_token = "after-j-8";
  EXPECT_EQ(ListCommand(*Connect(), options, output_), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("j-7"));
  EXPECT_THAT(out_.str(), Not(HasSubstr("more:")));

  const std::vector<tl::v1::ListJobsRequest> requests = service_.lists();
  ASSERT_THAT(requests, SizeIs(2));
  EXPECT_THAT(requests[0].states(), ElementsAre(Job::RUNNING, Job::QUEUED));
  EXPECT_EQ(requests[0].page_size(), 2);
  EXPECT_EQ(requests[0].page_token(), "");
  EXPECT_EQ(requests[0].owner(), "");
  EXPECT_EQ(requests[1].page_token(), "after-j-8");
  EXPECT_EQ(requests[0].sweep_id(), "");
}

TEST_F(CommandsTest, ListOfASweepsTrialsSendsTheSweepAndKeepsItForTheNextPage) {
  service_.OnList([](const tl::v1::ListJobsRequest& request, tl::v1::ListJobsResponse* response) {
    Job trial = MakeJob("trial-1", Job::STOPPED_EARLY);
    trial.set_sweep_id(request.sweep_id());
    *response->add_jobs() = trial;
    response->set_next_page_token("after-trial-1");
    return grpc::Status::OK;
  });
  ListOptions options;
  options.sweep_id = "sweep-1";
  EXPECT_EQ(ListCommand(*Connect(), options, output_), kExitOk);
  ASSERT_THAT(service_.lists(), SizeIs(1));
  EXPECT_EQ(service_.lists()[0].sweep_id(), "sweep-1");
  EXPECT_THAT(service_.lists()[0].states(), IsEmpty());
  EXPECT_THAT(out_.str(), AllOf(HasSubstr("trial-1 "), HasSubstr(" STOPPED_EARLY ")));
  EXPECT_THAT(out_.str(),
              EndsWith("more: tlctl list --sweep sweep-1 --limit 50 --page-token after-trial-1\n"));
}

TEST_F(CommandsTest, ListOfAnUnknownStateIsBadInputAndSendsNothing) {
  ListOptions options;
  options.states = {"RUNNING", "sleeping"};
  EXPECT_EQ(ListCommand(*Connect(), options, output_), kExitBadInput);
  EXPECT_EQ(err_.str(), "tlctl: --state sleeping is not a job state\n");
  EXPECT_THAT(service_.lists(), IsEmpty());
}

// ---------------------------------------------------------------- watch

TEST_F(CommandsTest, WatchShowsStatesAndEpochsOnceAndExitsWithTheOutcome) {
  Job running = MakeJob("j-10", Job::RUNNING, 1);
  running.set_worker_id("gpu-1");
  tl::v1::JobEvent progress;
  progress.mutable_progress()->set_epoch(1);
  progress.mutable_progress()->set_epochs(2);
  Job done = MakeJob("j-10", Job::SUCCEEDED, 1);
  done.set_worker_id("gpu-1");
  service_.OnWatch(Sends<tl::v1::WatchJobRequest, JobEvent>(
      {JobChanged(1, MakeJob("j-10", Job::QUEUED)), JobChanged(2, running), progress,
       EpochDone(3, 1, 0.5, 0.75),
       // The same epoch with the same figures (a resumed attempt) is not shown again.
       EpochDone(4, 1, 0.5, 0.75), EpochDone(5, 2, 0.25, 0.875), JobChanged(6, done)}));
  EXPECT_EQ(WatchCommand(*Connect(), "j-10", output_), kExitOk);
  const std::string text = out_.str();
  EXPECT_THAT(text, StartsWith("job j-10 QUEUED\njob j-10 RUNNING (attempt 1) on gpu-1\n"));
  EXPECT_THAT(text, HasSubstr("job j-10 SUCCEEDED (attempt 1)\n"));
  EXPECT_THAT(text, Not(HasSubstr("SUCCEEDED (attempt 1) on")));
  EXPECT_EQ(Count(text, EpochTableHeader()), 1u);
  EXPECT_EQ(Count(text, EpochTableRow(EpochDone(3, 1, 0.5, 0.75).epoch())), 1u);
  EXPECT_EQ(Count(text, EpochTableRow(EpochDone(5, 2, 0.25, 0.875).epoch())), 1u);
  // Not a terminal: no progress bar.
  EXPECT_THAT(text, Not(HasSubstr("\r")));
  EXPECT_THAT(text, HasSubstr("\n" + JobDetails(done)));
  ASSERT_THAT(service_.watches(), SizeIs(1));
  EXPECT_EQ(service_.watches()[0].after_sequence(), 0);
  EXPECT_FALSE(service_.calls()[0].has_deadline);
}

TEST_F(CommandsTest, WatchOnATerminalDrawsAProgressBarThatTheNextLineClears) {
  tl::v1::JobEvent progress;
  progress.mutable_progress()->set_epoch(1);
  progress.mutable_progress()->set_epochs(2);
  progress.mutable_progress()->set_batch(3);
  progress.mutable_progress()->set_batches(6);
  service_.OnWatch(Sends<tl::v1::WatchJobRequest, JobEvent>(
      {JobChanged(1, MakeJob("j-11", Job::RUNNING)), progress,
       JobChanged(2, MakeJob("j-11", Job::CANCELLED))}));
  output_.terminal = true;
  EXPECT_EQ(WatchCommand(*Connect(), "j-11", output_), kExitJobCancelled);
  EXPECT_THAT(out_.str(),
              HasSubstr("job j-11 RUNNING\n\r\033[K" + ProgressLine(progress.progress()) +
                        "\r\033[Kjob j-11 CANCELLED\n"));
}

TEST_F(CommandsTest, WatchReconnectsAfterTheLastEventSeen) {
  int streams = 0;
  service_.OnWatch(
      [&streams](const tl::v1::WatchJobRequest& request, grpc::ServerWriter<JobEvent>* writer) {
        if (++streams == 1) {
          writer->Write(JobChanged(1, MakeJob(request.job_id(), Job::RUNNING, 1)));
          writer->Write(EpochDone(2, 1, 0.5, 0.75));
          return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server restarting");
        }
        if (streams == 2) {
          // A stream that ends cleanly before the job did is a broken one too.
          return grpc::Status::OK;
        }
        writer->Write(JobChanged(3, MakeJob(request.job_id(), Job::FAILED, 1)));
        return grpc::Status::OK;
      });
  EXPECT_EQ(WatchCommand(*Connect(), "j-12", output_), kExitJobFailed);
  const std::vector<tl::v1::WatchJobRequest> requests = service_.watches();
  ASSERT_THAT(requests, SizeIs(3));
  EXPECT_EQ(requests[0].after_sequence(), 0);
  EXPECT_EQ(requests[1].after_sequence(), 2);
  EXPECT_EQ(requests[2].after_sequence(), 2);
  EXPECT_THAT(pauses_, ElementsAre(milliseconds(200), milliseconds(400)));
  EXPECT_EQ(Count(out_.str(), "job j-12 RUNNING"), 1u);
  EXPECT_THAT(out_.str(), HasSubstr("job j-12 FAILED (attempt 1)\n"));
  EXPECT_EQ(err_.str(), "");
}

TEST_F(CommandsTest, WatchStopsAtOnceOnAnAnswerThatWillNotChange) {
  service_.OnWatch(Sends<tl::v1::WatchJobRequest, JobEvent>(
      {}, grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "not yours")));
  EXPECT_EQ(WatchCommand(*Connect(), "j-13", output_), kExitCallFailed);
  EXPECT_THAT(service_.watches(), SizeIs(1));
  EXPECT_THAT(pauses_, IsEmpty());
  EXPECT_EQ(err_.str(), "tlctl: PERMISSION_DENIED: not yours\n");
}

TEST_F(CommandsTest, WatchOfATrialStoppedEarlyEndsWithItsOwnStatus) {
  service_.OnWatch(Sends<tl::v1::WatchJobRequest, JobEvent>(
      {JobChanged(1, MakeJob("trial-2", Job::RUNNING, 1)),
       JobChanged(2, MakeJob("trial-2", Job::STOPPED_EARLY, 1))}));
  EXPECT_EQ(WatchCommand(*Connect(), "trial-2", output_), kExitJobStoppedEarly);
  // An end state: no watch again.
  EXPECT_THAT(service_.watches(), SizeIs(1));
  EXPECT_THAT(out_.str(), HasSubstr("job trial-2 STOPPED_EARLY (attempt 1)\n"));
}

TEST_F(CommandsTest, WatchGivesUpAfterItsReconnects) {
  service_.OnWatch(Sends<tl::v1::WatchJobRequest, JobEvent>(
      {}, grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone")));
  EXPECT_EQ(WatchCommand(*Connect(), "j-14", output_), kExitCallFailed);
  EXPECT_THAT(service_.watches(), SizeIs(kWatchReconnects + 1));
  ASSERT_THAT(pauses_, SizeIs(kWatchReconnects));
  // The pause grows with each failure, up to two seconds.
  EXPECT_EQ(pauses_.front(), milliseconds(200));
  EXPECT_EQ(pauses_.back(), milliseconds(2000));
  EXPECT_EQ(err_.str(), "tlctl: UNAVAILABLE: gone\n");
}

// ---------------------------------------------------------------- logs

LogLine MakeLine(int64_t sequence, const std::string& text) {
  LogLine line;
  line.set_sequence(sequence);
  line.set_text(text);
  return line;
}

TEST_F(CommandsTest, LogsPrintsTheLinesOnceWithADeadline) {
  service_.OnLogs(
      Sends<tl::v1::GetJobLogsRequest, LogLine>({MakeLine(1, "scanning"), MakeLine(2, "epoch 1")}));
  EXPECT_EQ(LogsCommand(*Connect(), "j-15", /*follow=*/false, output_), kExitOk);
  EXPECT_EQ(out_.str(), LogLineText(MakeLine(1, "scanning")) + "\n" +
                            LogLineText(MakeLine(2, "epoch 1")) + "\n");
  ASSERT_THAT(service_.log_requests(), SizeIs(1));
  EXPECT_EQ(service_.log_requests()[0].job_id(), "j-15");
  EXPECT_FALSE(service_.log_requests()[0].follow());
  EXPECT_TRUE(service_.calls()[0].has_deadline);
}

TEST_F(CommandsTest, LogsWithoutFollowDoesNotRetry) {
  service_.OnLogs(Sends<tl::v1::GetJobLogsRequest, LogLine>(
      {}, grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")));
  EXPECT_EQ(LogsCommand(*Connect(), "j-16", /*follow=*/false, output_), kExitCallFailed);
  EXPECT_THAT(service_.log_requests(), SizeIs(1));
  EXPECT_EQ(err_.str(), "tlctl: UNAVAILABLE: down\n");
}

TEST_F(CommandsTest, LogsFollowReconnectsAfterTheLastLineSeen) {
  int streams = 0;
  service_.OnLogs(
      [&streams](const tl::v1::GetJobLogsRequest&, grpc::ServerWriter<LogLine>* writer) {
        if (++streams == 1) {
          writer->Write(MakeLine(1, "one"));
          writer->Write(MakeLine(2, "two"));
          return grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting");
        }
        writer->Write(MakeLine(3, "three"));
        return grpc::Status::OK;
      });
  EXPECT_EQ(LogsCommand(*Connect(), "j-17", /*follow=*/true, output_), kExitOk);
  const std::vector<tl::v1::GetJobLogsRequest> requests = service_.log_requests();
  ASSERT_THAT(requests, SizeIs(2));
  EXPECT_TRUE(requests[0].follow());
  EXPECT_EQ(requests[0].after_sequence(), 0);
  EXPECT_EQ(requests[1].after_sequence(), 2);
  EXPECT_FALSE(service_.calls()[0].has_deadline);
  EXPECT_THAT(pauses_, ElementsAre(milliseconds(200)));
  EXPECT_EQ(Count(out_.str(), "\n"), 3u);
  EXPECT_THAT(out_.str(), HasSubstr("three"));
}

// ---------------------------------------------------------------- cancel, pause, resume

TEST_F(CommandsTest, CancelSendsTheReasonAndShowsAPendingCancel) {
  service_.OnCancel([](const tl::v1::CancelJobRequest& request, Job* job) {
    *job = MakeJob(request.job_id(), Job::RUNNING);
    job->set_cancel_requested(true);
    return grpc::Status::OK;
  });
  EXPECT_EQ(CancelCommand(*Connect(), "j-18", "wrong data", output_), kExitOk);
  ASSERT_THAT(service_.cancels(), SizeIs(1));
  EXPECT_EQ(service_.cancels()[0].job_id(), "j-18");
  EXPECT_EQ(service_.cancels()[0].reason(), "wrong data");
  EXPECT_EQ(out_.str(), "job j-18 RUNNING (cancel requested)\n");
}

TEST_F(CommandsTest, PauseAndResumeShowTheNewState) {
  service_.OnPause([](const tl::v1::PauseJobRequest& request, Job* job) {
    *job = MakeJob(request.job_id(), Job::RUNNING);
    job->set_pause_requested(true);
    return grpc::Status::OK;
  });
  service_.OnResume([](const tl::v1::ResumeJobRequest& request, Job* job) {
    *job = MakeJob(request.job_id(), Job::QUEUED);
    return grpc::Status::OK;
  });
  EXPECT_EQ(PauseCommand(*Connect(), "j-19", output_), kExitOk);
  EXPECT_EQ(ResumeCommand(*Connect(), "j-19", output_), kExitOk);
  EXPECT_EQ(out_.str(),
            "job j-19 RUNNING (pause requested: it stops after its current epoch)\n"
            "job j-19 QUEUED\n");
  ASSERT_THAT(service_.pauses(), SizeIs(1));
  EXPECT_EQ(service_.pauses()[0].job_id(), "j-19");
  ASSERT_THAT(service_.resumes(), SizeIs(1));
  EXPECT_EQ(service_.resumes()[0].job_id(), "j-19");
}

TEST_F(CommandsTest, ARefusedChangeExitsOneWithTheStatusName) {
  service_.OnResume([](const tl::v1::ResumeJobRequest&, Job*) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "job j-20 is RUNNING, not PAUSED");
  });
  EXPECT_EQ(ResumeCommand(*Connect(), "j-20", output_), kExitCallFailed);
  EXPECT_EQ(err_.str(), "tlctl: FAILED_PRECONDITION: job j-20 is RUNNING, not PAUSED\n");
  EXPECT_EQ(out_.str(), "");
}

TEST_F(CommandsTest, AnUnreachableServerIsAFailedCall) {
  server_->Shutdown();
  server_.reset();
  auto connection = std::make_unique<Connection>(
      grpc::CreateChannel(Address(), grpc::InsecureChannelCredentials()), "", 5);
  EXPECT_EQ(CancelCommand(*connection, "j-21", "", output_), kExitCallFailed);
  EXPECT_THAT(err_.str(), StartsWith("tlctl: UNAVAILABLE: "));
}

// ---------------------------------------------------------------- connection

TEST_F(CommandsTest, OpenReadsTheTokenFileWhenNoTokenIsGiven) {
  service_.OnCancel([](const tl::v1::CancelJobRequest& request, Job* job) {
    *job = MakeJob(request.job_id(), Job::CANCELLED);
    return grpc::Status::OK;
  });
  WriteFile(temp_.Sub("token"), "  from-file\n");
  ConnectionOptions options;
  options.server = Address();
  options.token_file = temp_.Sub("token");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Connection> from_file, Connection::Open(options));
  EXPECT_TRUE(from_file->authenticated());
  EXPECT_EQ(CancelCommand(*from_file, "j-22", "", output_), kExitOk);
  // A token given outright wins over the file.
  options.token = "given";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Connection> given, Connection::Open(options));
  EXPECT_EQ(CancelCommand(*given, "j-22", "", output_), kExitOk);
  const std::vector<CallSeen> calls = service_.calls();
  ASSERT_THAT(calls, SizeIs(2));
  EXPECT_EQ(calls[0].authorization, "Bearer from-file");
  EXPECT_EQ(calls[1].authorization, "Bearer given");
}

TEST_F(CommandsTest, OpenNamesTheFlagWhoseFileCannotBeRead) {
  ConnectionOptions options;
  options.server = Address();
  options.token_file = temp_.Sub("no-token");
  EXPECT_THAT(Connection::Open(options),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("--token-file")));
  options.token_file.clear();
  options.tls_ca = temp_.Sub("no-ca.pem");
  EXPECT_THAT(Connection::Open(options),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("--tls-ca")));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Connection> plain,
                       Connection::Open(ConnectionOptions{Address()}));
  EXPECT_FALSE(plain->authenticated());
}

// ---------------------------------------------------------------- sweeps

tl::v1::SweepTrial MakeTrial(int index, Job::State state, int epoch = 0) {
  tl::v1::SweepTrial trial;
  trial.set_index(index);
  trial.set_job_id("trial-" + std::to_string(index));
  trial.set_state(state);
  trial.set_epoch(epoch);
  (*trial.mutable_parameters()->mutable_fields())["training.learning_rate"].set_number_value(
      0.001 * (index + 1));
  return trial;
}

Sweep MakeSweep(const std::string& id, Sweep::State state,
                std::vector<tl::v1::SweepTrial> trials = {}) {
  Sweep sweep;
  sweep.set_id(id);
  sweep.set_state(state);
  sweep.mutable_spec()->set_name("lr");
  sweep.mutable_spec()->set_method(tl::v1::SweepSpec::RANDOM);
  sweep.mutable_spec()->set_max_trials(2);
  sweep.mutable_spec()->add_space()->set_field("training.learning_rate");
  for (const tl::v1::SweepTrial& trial : trials) *sweep.add_trials() = trial;
  sweep.set_trials_created(sweep.trials_size());
  return sweep;
}

SweepEvent SweepChanged(int64_t sequence, const Sweep& sweep) {
  SweepEvent event;
  event.set_sequence(sequence);
  *event.mutable_sweep() = sweep;
  return event;
}

constexpr char kSweepJson[] = R"({
  "name": "lr",
  "base": {"backbone": {"path": "b.pt"}, "dataset": {"trainDir": "images"},
           "training": {"epochs": 3}},
  "space": [{"field": "training.learning_rate", "min": 0.0001, "max": 0.1, "scale": "LOG"}],
  "method": "ASHA",
  "maxTrials": 2
})";

// A sweep of two trials from submission to its end: created, trial 0 running and
// reporting, trial 1 queued, trial 0 the best, the sweep ended in `end`.
std::vector<SweepEvent> SweepHistory(const std::string& id, Sweep::State end) {
  std::vector<SweepEvent> events;
  events.push_back(SweepChanged(1, MakeSweep(id, Sweep::RUNNING, {MakeTrial(0, Job::QUEUED)})));
  tl::v1::SweepTrial running = MakeTrial(0, Job::RUNNING, 1);
  running.set_objective(0.5);
  events.push_back(
      SweepChanged(2, MakeSweep(id, Sweep::RUNNING, {running, MakeTrial(1, Job::QUEUED)})));
  tl::v1::SweepTrial succeeded = MakeTrial(0, Job::SUCCEEDED, 3);
  succeeded.set_objective(0.75);
  tl::v1::SweepTrial stopped = MakeTrial(1, Job::STOPPED_EARLY, 1);
  stopped.set_objective(0.25);
  Sweep ended = MakeSweep(id, end, {succeeded, stopped});
  ended.set_best_job_id(succeeded.job_id());
  ended.set_best_objective(0.75);
  ended.set_trials_ended(2);
  events.push_back(SweepChanged(3, ended));
  return events;
}

TEST_F(CommandsTest, SweepSubmitSendsTheFileWithARequestIdAndTheDefaultOwner) {
  service_.OnSubmitSweep([](const tl::v1::SubmitSweepRequest& request, Sweep* sweep) {
    *sweep = MakeSweep("sweep-1", Sweep::RUNNING);
    *sweep->mutable_spec() = request.spec();
    return grpc::Status::OK;
  });
  SweepSubmitOptions options;
  options.sweep_file = JobFile(kSweepJson);
  options.default_owner = "alice";
  options.id_file = temp_.Sub("sweep-id");
  EXPECT_EQ(SweepSubmitCommand(*Connect(), options, output_), kExitOk);

  ASSERT_THAT(service_.sweep_submits(), SizeIs(1));
  const tl::v1::SubmitSweepRequest request = service_.sweep_submits()[0];
  EXPECT_EQ(request.spec().name(), "lr");
  EXPECT_EQ(request.spec().method(), tl::v1::SweepSpec::ASHA);
  EXPECT_EQ(request.spec().base().training().epochs(), 3);
  ASSERT_EQ(request.spec().space_size(), 1);
  EXPECT_EQ(request.spec().space(0).scale(), tl::v1::SearchParameter::LOG);
  EXPECT_EQ(request.owner(), "alice");
  EXPECT_THAT(request.request_id(), MatchesRegex("[0-9a-f]{32}"));
  EXPECT_EQ(out_.str(), "submitted sweep sweep-1 (lr)\n");
  EXPECT_EQ(err_.str(), "");
  std::ifstream id_file(options.id_file);
  std::string id;
  id_file >> id;
  EXPECT_EQ(id, "sweep-1");
  EXPECT_TRUE(service_.calls()[0].has_deadline);
}

TEST_F(CommandsTest, SweepSubmitRepeatsACallThatMayNotHaveArrivedWithTheSameRequestId) {
  int calls = 0;
  service_.OnSubmitSweep([&calls](const tl::v1::SubmitSweepRequest&, Sweep* sweep) {
    if (++calls == 1) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting");
    *sweep = MakeSweep("sweep-2", Sweep::RUNNING);
    return grpc::Status::OK;
  });
  SweepSubmitOptions options;
  options.sweep_file = JobFile(kSweepJson);
  options.owner = "bob";
  EXPECT_EQ(SweepSubmitCommand(*Connect("secret"), options, output_), kExitOk);
  const std::vector<tl::v1::SubmitSweepRequest> requests = service_.sweep_submits();
  ASSERT_THAT(requests, SizeIs(2));
  EXPECT_EQ(requests[1].request_id(), requests[0].request_id());
  EXPECT_EQ(requests[0].owner(), "bob");
  EXPECT_THAT(pauses_, ElementsAre(milliseconds(250)));
  EXPECT_EQ(service_.calls()[0].authorization, "Bearer secret");
}

TEST_F(CommandsTest, SweepSubmitOfABadSweepFileNamesFileAndFieldAndSendsNothing) {
  struct Case {
    std::string json;
    std::string named;  // the field, or the value, the message must name
  };
  const Case cases[] = {
      {R"({"name": "x", "spaces": []})", "spaces"},
      {R"({"base": {"training": {"learningrate": 0.1}}})", "learningrate"},
      {R"({"method": "BAYES"})", "BAYES"},
      {R"({"space": [{"field": "training.epochs", "values": [1, 2]},
                     {"field": "training.learning_rate", "scale": "LOG10"}]})",
       "space[1]"},
      {R"({"space": [{"field": "training.learning_rate", "maximum": 0.1}]})", "maximum"},
  };
  for (const Case& c : cases) {
    err_.str("");
    SweepSubmitOptions options;
    options.sweep_file = JobFile(c.json);
    EXPECT_EQ(SweepSubmitCommand(*Connect(), options, output_), kExitBadInput) << c.json;
    EXPECT_THAT(err_.str(), AllOf(StartsWith("tlctl: "), HasSubstr("job.json"),
                                  HasSubstr("SweepSpec"), HasSubstr(c.named)))
        << c.json;
  }
  err_.str("");
  SweepSubmitOptions missing;
  missing.sweep_file = temp_.Sub("missing-sweep.json");
  EXPECT_EQ(SweepSubmitCommand(*Connect(), missing, output_), kExitBadInput);
  EXPECT_THAT(err_.str(), HasSubstr("cannot read sweep file " + missing.sweep_file));
  EXPECT_THAT(service_.sweep_submits(), IsEmpty());
  EXPECT_EQ(out_.str(), "");
}

TEST_F(CommandsTest, SweepSubmitDoesNotRepeatARefusalAndShowsIt) {
  service_.OnSubmitSweep([](const tl::v1::SubmitSweepRequest&, Sweep*) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "space[0].min is 0; a LOG range needs min > 0");
  });
  SweepSubmitOptions options;
  options.sweep_file = JobFile(kSweepJson);
  EXPECT_EQ(SweepSubmitCommand(*Connect(), options, output_), kExitCallFailed);
  EXPECT_THAT(service_.sweep_submits(), SizeIs(1));
  EXPECT_EQ(err_.str(), "tlctl: INVALID_ARGUMENT: space[0].min is 0; a LOG range needs min > 0\n");
}

TEST_F(CommandsTest, SweepSubmitWithWatchFollowsTheTrialsToTheSweepsEnd) {
  service_.OnSubmitSweep([](const tl::v1::SubmitSweepRequest&, Sweep* sweep) {
    *sweep = MakeSweep("sweep-3", Sweep::RUNNING);
    return grpc::Status::OK;
  });
  const std::vector<SweepEvent> history = SweepHistory("sweep-3", Sweep::SUCCEEDED);
  service_.OnWatchSweep(Sends<tl::v1::WatchSweepRequest, SweepEvent>(history));
  SweepSubmitOptions options;
  options.sweep_file = JobFile(kSweepJson);
  options.watch = true;
  EXPECT_EQ(SweepSubmitCommand(*Connect(), options, output_), kExitOk);
  ASSERT_THAT(service_.sweep_watches(), SizeIs(1));
  EXPECT_EQ(service_.sweep_watches()[0].sweep_id(), "sweep-3");
  EXPECT_FALSE(service_.calls()[1].has_deadline);
  const Sweep& first = history[0].sweep();
  const Sweep& second = history[1].sweep();
  const Sweep& last = history[2].sweep();
  // A row whenever a trial changes, the header once, the best marked; then the sweep in words.
  EXPECT_EQ(out_.str(), "submitted sweep sweep-3 (lr)\n" + SweepSummaryLine(first) + "\n" +
                            TrialTableHeader() + "\n" + TrialTableRow(first.trials(0), first) +
                            "\n" + TrialTableRow(second.trials(0), second) + "\n" +
                            TrialTableRow(second.trials(1), second) + "\n" +
                            SweepSummaryLine(last) + "\n" + TrialTableRow(last.trials(0), last) +
                            "\n" + TrialTableRow(last.trials(1), last) + "\n\n" +
                            SweepDetails(last));
  EXPECT_THAT(TrialTableRow(last.trials(0), last), StartsWith("*"));
}

TEST_F(CommandsTest, SweepWatchExitsWithTheSweepsOutcome) {
  for (const auto& [end, code] : std::vector<std::pair<Sweep::State, int>>{
           {Sweep::SUCCEEDED, kExitOk},
           {Sweep::FAILED, kExitJobFailed},
           {Sweep::CANCELLED, kExitJobCancelled}}) {
    service_.OnWatchSweep(
        Sends<tl::v1::WatchSweepRequest, SweepEvent>(SweepHistory("sweep-4", end)));
    EXPECT_EQ(SweepWatchCommand(*Connect(), "sweep-4", output_), code) << Sweep::State_Name(end);
  }
  EXPECT_THAT(service_.sweep_watches(), SizeIs(3));
  EXPECT_THAT(pauses_, IsEmpty());
}

TEST_F(CommandsTest, SweepWatchReconnectsAndPrintsNothingTwice) {
  const std::vector<SweepEvent> history = SweepHistory("sweep-5", Sweep::SUCCEEDED);
  int streams = 0;
  service_.OnWatchSweep([&streams, history](const tl::v1::WatchSweepRequest&,
                                            grpc::ServerWriter<SweepEvent>* writer) {
    ++streams;
    if (streams == 1) {
      writer->Write(history[0]);
      writer->Write(history[1]);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server restarting");
    }
    // Each watch starts with the sweep as it is.
    writer->Write(SweepChanged(1, history[1].sweep()));
    // A stream that ends cleanly before the sweep did is a broken one too.
    if (streams == 2) return grpc::Status::OK;
    writer->Write(SweepChanged(2, history[2].sweep()));
    return grpc::Status::OK;
  });
  EXPECT_EQ(SweepWatchCommand(*Connect(), "sweep-5", output_), kExitOk);
  EXPECT_THAT(service_.sweep_watches(), SizeIs(3));
  EXPECT_THAT(pauses_, ElementsAre(milliseconds(200), milliseconds(400)));
  const Sweep& second = history[1].sweep();
  EXPECT_EQ(Count(out_.str(), TrialTableRow(second.trials(1), second)), 1u);
  EXPECT_EQ(Count(out_.str(), TrialTableHeader()), 2u);  // the log's, and the details'
  EXPECT_EQ(err_.str(), "");
}

TEST_F(CommandsTest, SweepWatchStopsAtOnceOnAnAnswerThatWillNotChange) {
  service_.OnWatchSweep(Sends<tl::v1::WatchSweepRequest, SweepEvent>(
      {}, grpc::Status(grpc::StatusCode::NOT_FOUND, "sweep sweep-6 not found")));
  EXPECT_EQ(SweepWatchCommand(*Connect(), "sweep-6", output_), kExitCallFailed);
  EXPECT_THAT(service_.sweep_watches(), SizeIs(1));
  EXPECT_THAT(pauses_, IsEmpty());
  EXPECT_EQ(err_.str(), "tlctl: NOT_FOUND: sweep sweep-6 not found\n");
}

TEST_F(CommandsTest, SweepWatchGivesUpAfterItsReconnects) {
  service_.OnWatchSweep(Sends<tl::v1::WatchSweepRequest, SweepEvent>(
      {}, grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone")));
  EXPECT_EQ(SweepWatchCommand(*Connect(), "sweep-7", output_), kExitCallFailed);
  EXPECT_THAT(service_.sweep_watches(), SizeIs(kWatchReconnects + 1));
  EXPECT_THAT(pauses_, SizeIs(kWatchReconnects));
  EXPECT_EQ(err_.str(), "tlctl: UNAVAILABLE: gone\n");
}

TEST_F(CommandsTest, SweepWatchOnATerminalRedrawsTheTableInPlaceCutToItsWidth) {
  const std::vector<SweepEvent> history = SweepHistory("sweep-8", Sweep::CANCELLED);
  service_.OnWatchSweep(Sends<tl::v1::WatchSweepRequest, SweepEvent>(history));
  output_.terminal = true;
  output_.columns = 40;
  EXPECT_EQ(SweepWatchCommand(*Connect(), "sweep-8", output_), kExitJobCancelled);
  const std::string text = out_.str();
  // Three tables (summary, header, 1 then 2 then 2 rows), each but the first drawn over the
  // one before; the last one taken away before the sweep in words, which has the whole table.
  const std::string details = SweepDetails(history[2].sweep());
  ASSERT_THAT(text, EndsWith("\033[4A\033[J" + details));
  const std::string redrawn = text.substr(0, text.size() - details.size());
  EXPECT_EQ(Count(redrawn, "\033[3A\033[J"), 1u);
  EXPECT_EQ(Count(redrawn, "\033[4A\033[J"), 2u);
  EXPECT_EQ(Count(redrawn, "\n"), 3u + 4u + 4u);
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(redrawn, '\n'))) {
    const size_t clear = line.rfind("\033[J");
    const std::string shown = clear == std::string::npos ? line : line.substr(clear + 3);
    EXPECT_LE(shown.size(), 39u) << shown;
  }
  EXPECT_THAT(redrawn, HasSubstr(SweepSummaryLine(history[0].sweep()).substr(0, 39) + "\n"));
}

TEST_F(CommandsTest, SweepGetPrintsTheSweepInWordsOrAsJson) {
  service_.OnGetSweep([](const tl::v1::GetSweepRequest& request, Sweep* sweep) {
    *sweep = MakeSweep(request.sweep_id(), Sweep::RUNNING, {MakeTrial(0, Job::RUNNING, 2)});
    return grpc::Status::OK;
  });
  EXPECT_EQ(SweepGetCommand(*Connect(), "sweep-9", /*as_json=*/false, output_), kExitOk);
  const Sweep expected = MakeSweep("sweep-9", Sweep::RUNNING, {MakeTrial(0, Job::RUNNING, 2)});
  EXPECT_EQ(out_.str(), SweepDetails(expected));
  out_.str("");
  EXPECT_EQ(SweepGetCommand(*Connect(), "sweep-9", /*as_json=*/true, output_), kExitOk);
  std::string json = out_.str();
  while (!json.empty() && json.back() == '\n') json.pop_back();
  EXPECT_THAT(json, AllOf(StartsWith("{"), HasSubstr("\"id\": \"sweep-9\""),
                          HasSubstr("\"job_id\": \"trial-0\""),
                          HasSubstr("\"training.learning_rate\": 0.001"), EndsWith("}")));
  ASSERT_THAT(service_.sweep_gets(), SizeIs(2));
  EXPECT_EQ(service_.sweep_gets()[0].sweep_id(), "sweep-9");
  EXPECT_TRUE(service_.calls()[0].has_deadline);
}

TEST_F(CommandsTest, SweepGetOfAnUnknownSweepIsAFailedCall) {
  service_.OnGetSweep([](const tl::v1::GetSweepRequest& request, Sweep*) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "sweep " + request.sweep_id() + " not found");
  });
  EXPECT_EQ(SweepGetCommand(*Connect(), "nope", /*as_json=*/false, output_), kExitCallFailed);
  EXPECT_EQ(err_.str(), "tlctl: NOT_FOUND: sweep nope not found\n");
  EXPECT_EQ(out_.str(), "");
}

TEST_F(CommandsTest, SweepListSendsStatesAndPageAndPrintsHowToGetTheNextPage) {
  service_.OnListSweeps(
      [](const tl::v1::ListSweepsRequest& request, tl::v1::ListSweepsResponse* response) {
        *response->add_sweeps() = MakeSweep("sweep-11", Sweep::PAUSED);
        if (request.page_token().empty()) response->set_next_page_token("after-11");
        return grpc::Status::OK;
      });
  SweepListOptions options;
  options.states = {"paused", "Running"};
  options.page_size = 1;
  EXPECT_EQ(SweepListCommand(*Connect(), options, output_), kExitOk);
  EXPECT_EQ(out_.str(), SweepListHeader() + "\n" +
                            SweepListRow(MakeSweep("sweep-11", Sweep::PAUSED)) + "\n" +
                            "more: tlctl sweep list --state PAUSED --state RUNNING --limit 1 "
                            "--page-token after-11\n");
  ASSERT_THAT(service_.sweep_lists(), SizeIs(1));
  EXPECT_THAT(service_.sweep_lists()[0].states(), ElementsAre(Sweep::PAUSED, Sweep::RUNNING));
  EXPECT_EQ(service_.sweep_lists()[0].page_size(), 1);
  out_.str("");
  options.page_token = "after-11";
  EXPECT_EQ(SweepListCommand(*Connect(), options, output_), kExitOk);
  EXPECT_THAT(out_.str(), Not(HasSubstr("more:")));
  EXPECT_EQ(service_.sweep_lists()[1].page_token(), "after-11");
}

TEST_F(CommandsTest, SweepListOfAnUnknownStateIsBadInputAndSendsNothing) {
  SweepListOptions options;
  // A job state, not a sweep's.
  options.states = {"queued"};
  EXPECT_EQ(SweepListCommand(*Connect(), options, output_), kExitBadInput);
  EXPECT_EQ(err_.str(), "tlctl: --state queued is not a sweep state\n");
  EXPECT_THAT(service_.sweep_lists(), IsEmpty());
}

TEST_F(CommandsTest, SweepCancelPauseAndResumeSendTheIdAndShowTheNewState) {
  service_.OnCancelSweep([](const tl::v1::CancelSweepRequest& request, Sweep* sweep) {
    *sweep = MakeSweep(request.sweep_id(), Sweep::CANCELLED);
    return grpc::Status::OK;
  });
  service_.OnPauseSweep([](const tl::v1::PauseSweepRequest& request, Sweep* sweep) {
    *sweep = MakeSweep(request.sweep_id(), Sweep::PAUSED);
    return grpc::Status::OK;
  });
  service_.OnResumeSweep([](const tl::v1::ResumeSweepRequest& request, Sweep* sweep) {
    *sweep = MakeSweep(request.sweep_id(), Sweep::RUNNING);
    return grpc::Status::OK;
  });
  EXPECT_EQ(SweepPauseCommand(*Connect(), "sweep-12", output_), kExitOk);
  EXPECT_EQ(SweepResumeCommand(*Connect(), "sweep-12", output_), kExitOk);
  EXPECT_EQ(SweepCancelCommand(*Connect(), "sweep-12", "enough", output_), kExitOk);
  EXPECT_EQ(out_.str(),
            "sweep sweep-12 PAUSED\nsweep sweep-12 RUNNING\nsweep sweep-12 CANCELLED\n");
  ASSERT_THAT(service_.sweep_pauses(), SizeIs(1));
  EXPECT_EQ(service_.sweep_pauses()[0].sweep_id(), "sweep-12");
  ASSERT_THAT(service_.sweep_resumes(), SizeIs(1));
  EXPECT_EQ(service_.sweep_resumes()[0].sweep_id(), "sweep-12");
  ASSERT_THAT(service_.sweep_cancels(), SizeIs(1));
  EXPECT_EQ(service_.sweep_cancels()[0].sweep_id(), "sweep-12");
  EXPECT_EQ(service_.sweep_cancels()[0].reason(), "enough");
  for (const CallSeen& call : service_.calls()) EXPECT_TRUE(call.has_deadline);
}

TEST_F(CommandsTest, ARefusedSweepChangeExitsOneWithTheStatusName) {
  service_.OnResumeSweep([](const tl::v1::ResumeSweepRequest&, Sweep*) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "sweep sweep-13 is not PAUSED");
  });
  EXPECT_EQ(SweepResumeCommand(*Connect(), "sweep-13", output_), kExitCallFailed);
  EXPECT_EQ(err_.str(), "tlctl: FAILED_PRECONDITION: sweep sweep-13 is not PAUSED\n");
  EXPECT_EQ(out_.str(), "");
}

// ---------------------------------------------------------------- predict

TEST(PredictTest, ArgumentsForTlpredict) {
  PredictOptions options;
  options.model_path = "out/model.pt";
  options.image_paths = {"a.png", "b.jpg"};
  options.top = 3;
  EXPECT_THAT(PredictArguments(options), ElementsAre("out/model.pt", "a.png", "b.jpg", "--top=3"));
  options.json = true;
  EXPECT_THAT(PredictArguments(options),
              ElementsAre("out/model.pt", "a.png", "b.jpg", "--top=3", "--json"));
  options.precision = "bf16";
  EXPECT_THAT(PredictArguments(options), ElementsAre("out/model.pt", "a.png", "b.jpg", "--top=3",
                                                     "--json", "--precision=bf16"));
}

TEST(PredictTest, AProgramThatCannotStartIsBadInputNamingIt) {
  TempDir temp;
  const std::string missing = temp.Sub("no-tlpredict");
  ASSERT_EQ(setenv("TL_PREDICT", missing.c_str(), 1), 0);
  std::ostringstream out;
  std::ostringstream err;
  CommandOutput output{out, err};
  PredictOptions options;
  options.model_path = "model.pt";
  options.image_paths = {"a.png"};
  EXPECT_EQ(PredictCommand(options, output), kExitBadInput);
  unsetenv("TL_PREDICT");
  EXPECT_THAT(err.str(),
              AllOf(StartsWith("tlctl: cannot run " + missing), HasSubstr("$TL_PREDICT")));
}

TEST(EnvironmentOrTest, UnsetAndEmptyGiveTheFallback) {
  unsetenv("TL_COMMANDS_TEST_VARIABLE");
  EXPECT_EQ(EnvironmentOr("TL_COMMANDS_TEST_VARIABLE", "fallback"), "fallback");
  setenv("TL_COMMANDS_TEST_VARIABLE", "", 1);
  EXPECT_EQ(EnvironmentOr("TL_COMMANDS_TEST_VARIABLE", "fallback"), "fallback");
  setenv("TL_COMMANDS_TEST_VARIABLE", "set", 1);
  EXPECT_EQ(EnvironmentOr("TL_COMMANDS_TEST_VARIABLE", "fallback"), "set");
  unsetenv("TL_COMMANDS_TEST_VARIABLE");
}

}  // namespace
}  // namespace tl::client
