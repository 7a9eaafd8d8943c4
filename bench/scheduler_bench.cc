// The scheduler under load, over loopback with durable commits: a real
// tlserver process (its own SQLite file, synchronous=FULL), driven by gRPC
// clients in this process. Prints a table and, with --json, writes it.
//
//   scheduler_bench --tlserver build/server/tlserver [--clients 32] [--submits 4000]
//                   [--watchers 100] [--stored 100000] [--json out.json]
//
// 1. 32 clients submit as fast as they can: acknowledged submissions/s and
//    latency percentiles.
// 2. Submit-to-assignment latency at an idle worker (a worker stream opened
//    by this program, which answers nothing but heartbeats).
// 3. 100 watchers of one job: how long after the worker sends an epoch each
//    watcher has it.
// 4. With --stored N jobs in the database (finished ones, written directly
//    into the file before the server starts): tlserver's resident memory and
//    the latency of ListJobs pages of 100.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <numeric>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <SQLiteCpp/SQLiteCpp.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "server/store/sqlite_job_store.h"
#include "tests/process.h"
#include "tl/v1/service.grpc.pb.h"

ABSL_FLAG(std::string, tlserver, "", "path of the tlserver binary");
ABSL_FLAG(int, clients, 32, "concurrent submitting clients");
ABSL_FLAG(int, submits, 4000, "submissions in all, spread over the clients");
ABSL_FLAG(int, watchers, 100, "watchers of one job");
ABSL_FLAG(int, epochs, 20, "epochs the stand-in worker reports to the watchers");
ABSL_FLAG(int, stored, 100000, "jobs in the database for the memory and listing figures");
ABSL_FLAG(std::string, json, "", "also write the figures to this JSON file");

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using tl::testing::Process;
using tl::testing::ReadFile;
using tl::testing::WaitFor;
using tl::v1::Job;
using namespace std::chrono_literals;

double Millis(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p * values.size()));
  return values[index];
}

// A data root with a stand-in backbone and a two-class folder: enough for validation.
void WriteDataRoot(const fs::path& root) {
  for (const char* name : {"red", "blue"}) {
    fs::create_directories(root / "images" / name);
    std::ofstream(root / "images" / name / "1.png") << "png";
  }
  fs::create_directories(root / "backbones");
  std::ofstream(root / "backbones/tiny.pt") << "not loaded here";
  std::ofstream(root / "backbones/tiny.json") << R"({"format": "tl.backbone.v1"})";
}

tl::v1::JobSpec Spec(const std::string& device) {
  tl::v1::JobSpec spec;
  spec.set_name("bench");
  spec.mutable_backbone()->set_path("backbones/tiny.pt");
  spec.mutable_dataset()->set_train_dir("images");
  spec.mutable_training()->set_epochs(5);
  spec.mutable_resources()->set_device(device);
  return spec;
}

class Server {
 public:
  Server(const fs::path& dir, const std::string& db) {
    const std::string ready = (dir / "ready").string();
    fs::remove(ready);
    process_ = std::make_unique<Process>(
        std::vector<std::string>{absl::GetFlag(FLAGS_tlserver), "--listen=127.0.0.1:0",
                                 "--metrics_listen=", "--db=" + db,
                                 "--data_root=" + (dir / "data").string(),
                                 "--artifact_root=" + (dir / "artifacts").string(),
                                 "--ready_file=" + ready, "--lease_seconds=600"},
        (dir / "server.log").string());
    if (!WaitFor([&] { return fs::exists(ready) || process_->Exited(); }, 60s) ||
        process_->Exited()) {
      std::cerr << process_->Log();
      std::exit(1);
    }
    std::smatch port;
    const std::string text = ReadFile(ready);
    std::regex_search(text, port, std::regex(R"(grpc=(\d+))"));
    address_ = "127.0.0.1:" + port[1].str();
  }
  ~Server() {
    process_->Signal(SIGTERM);
    process_->Wait();
  }
  const std::string& address() const { return address_; }
  pid_t pid() const { return process_->pid(); }

 private:
  std::unique_ptr<Process> process_;
  std::string address_;
};

int64_t ResidentBytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

std::unique_ptr<tl::v1::JobService::Stub> NewStub(const std::string& address) {
  return tl::v1::JobService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

struct Figures {
  std::vector<std::pair<std::string, std::string>> rows;
  void Add(const std::string& name, const std::string& value) { rows.emplace_back(name, value); }
};

void SubmitStorm(const std::string& address, Figures& figures) {
  const int clients = absl::GetFlag(FLAGS_clients);
  const int per_client = absl::GetFlag(FLAGS_submits) / clients;
  std::vector<std::vector<double>> latencies(clients);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  const Clock::time_point start = Clock::now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto stub = NewStub(address);
      for (int i = 0; i < per_client; ++i) {
        tl::v1::SubmitJobRequest request;
        *request.mutable_spec() = Spec("cuda");  // no worker here runs it: it stays queued
        request.set_owner("bench");
        request.set_request_id(absl::StrCat("bench-", c, "-", i));
        Job job;
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + 30s);
        const Clock::time_point sent = Clock::now();
        const grpc::Status status = stub->SubmitJob(&context, request, &job);
        latencies[c].push_back(Millis(Clock::now() - sent));
        if (!status.ok()) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (const auto& list : latencies) all.insert(all.end(), list.begin(), list.end());
  figures.Add("submit: clients", std::to_string(clients));
  figures.Add("submit: acknowledged/s",
              absl::StrFormat("%.0f", (all.size() - failures) / seconds));
  figures.Add("submit: p50 ms", absl::StrFormat("%.2f", Percentile(all, 0.50)));
  figures.Add("submit: p99 ms", absl::StrFormat("%.2f", Percentile(all, 0.99)));
  figures.Add("submit: failed", std::to_string(failures.load()));
}

// A worker stream opened by hand: hello, then it reads what the scheduler sends.
class StandInWorker {
 public:
  explicit StandInWorker(const std::string& address)
      : stub_(tl::v1::WorkerService::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {
    stream_ = stub_->Connect(&context_);
    tl::v1::WorkerMessage hello;
    hello.mutable_hello()->set_worker_id("bench-worker");
    hello.mutable_hello()->add_devices()->set_kind("cpu");
    stream_->Write(hello);
    tl::v1::SchedulerMessage welcome;
    stream_->Read(&welcome);
  }
  ~StandInWorker() {
    context_.TryCancel();
    stream_->Finish();
  }
  // Blocks until the next assignment; false when the stream ends.
  bool NextAssignment(tl::v1::Assignment* assignment) {
    tl::v1::SchedulerMessage message;
    while (stream_->Read(&message)) {
      if (message.has_assignment()) {
        *assignment = message.assignment();
        return true;
      }
    }
    return false;
  }
  void Send(const tl::v1::WorkerMessage& message) { stream_->Write(message); }

 private:
  std::unique_ptr<tl::v1::WorkerService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<tl::v1::WorkerMessage, tl::v1::SchedulerMessage>>
      stream_;
};

void AssignmentAndWatchers(const std::string& address, Figures& figures) {
  auto stub = NewStub(address);
  StandInWorker worker(address);
  // Submit-to-assignment: each job is finished by the worker before the next goes out.
  std::vector<double> to_assignment;
  std::string watched_job;
  for (int i = 0; i < 50; ++i) {
    tl::v1::SubmitJobRequest request;
    *request.mutable_spec() = Spec("cpu");
    Job job;
    grpc::ClientContext context;
    const Clock::time_point sent = Clock::now();
    if (!stub->SubmitJob(&context, request, &job).ok()) continue;
    tl::v1::Assignment assignment;
    if (!worker.NextAssignment(&assignment)) break;
    to_assignment.push_back(Millis(Clock::now() - sent));
    if (i == 49) {
      watched_job = assignment.job_id();  // kept running for the watchers
      break;
    }
    tl::v1::WorkerMessage finished;
    finished.mutable_finished()->set_job_id(assignment.job_id());
    finished.mutable_finished()->set_attempt(assignment.attempt());
    finished.mutable_finished()->set_outcome(tl::v1::JobFinished::SUCCEEDED);
    worker.Send(finished);
  }
  figures.Add("submit to assignment: p50 ms",
              absl::StrFormat("%.2f", Percentile(to_assignment, 0.5)));
  figures.Add("submit to assignment: p99 ms",
              absl::StrFormat("%.2f", Percentile(to_assignment, 0.99)));

  // Watchers: each records when it saw every epoch event.
  const int watcher_count = absl::GetFlag(FLAGS_watchers);
  const int epochs = absl::GetFlag(FLAGS_epochs);
  std::vector<Clock::time_point> sent_at(epochs + 1);
  std::vector<std::vector<double>> delays(watcher_count);
  std::atomic<int> ready{0};
  std::vector<std::thread> watchers;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts(watcher_count);
  std::mutex sent_mutex;
  for (int w = 0; w < watcher_count; ++w) {
    contexts[w] = std::make_unique<grpc::ClientContext>();
    watchers.emplace_back([&, w] {
      auto own = NewStub(address);
      tl::v1::WatchJobRequest request;
      request.set_job_id(watched_job);
      auto reader = own->WatchJob(contexts[w].get(), request);
      tl::v1::JobEvent event;
      bool counted = false;
      while (reader->Read(&event)) {
        if (!counted) {
          counted = true;
          ++ready;
        }
        if (!event.has_epoch()) continue;
        const Clock::time_point now = Clock::now();
        std::lock_guard<std::mutex> lock(sent_mutex);
        delays[w].push_back(Millis(now - sent_at[event.epoch().epoch()]));
        if (event.epoch().epoch() == epochs) break;
      }
      contexts[w]->TryCancel();
      reader->Finish();
    });
  }
  WaitFor([&] { return ready == watcher_count; }, 60s);
  for (int e = 1; e <= epochs; ++e) {
    tl::v1::WorkerMessage message;
    message.mutable_epoch()->set_job_id(watched_job);
    message.mutable_epoch()->mutable_metrics()->set_epoch(e);
    message.mutable_epoch()->mutable_metrics()->set_attempt(1);
    message.mutable_epoch()->mutable_metrics()->set_train_loss(1.0 / e);
    {
      std::lock_guard<std::mutex> lock(sent_mutex);
      sent_at[e] = Clock::now();
    }
    worker.Send(message);
    std::this_thread::sleep_for(20ms);  // epochs are spaced like a fast real job's
  }
  for (std::thread& thread : watchers) thread.join();
  std::vector<double> all;
  size_t received = 0;
  for (const auto& list : delays) {
    all.insert(all.end(), list.begin(), list.end());
    received += list.size();
  }
  figures.Add("watchers", std::to_string(watcher_count));
  figures.Add("watch: epoch events received",
              absl::StrCat(received, " of ", watcher_count * epochs));
  figures.Add("watch: delivery p50 ms", absl::StrFormat("%.2f", Percentile(all, 0.5)));
  figures.Add("watch: delivery p99 ms", absl::StrFormat("%.2f", Percentile(all, 0.99)));
  figures.Add("watch: delivery max ms",
              absl::StrFormat("%.2f", all.empty() ? 0.0 : *std::max_element(all.begin(), all.end())));
}

void StoredJobs(const fs::path& dir, Figures& figures) {
  const int stored = absl::GetFlag(FLAGS_stored);
  const std::string db = (dir / "stored.db").string();
  {
    auto store = tl::server::SqliteJobStore::Open(db);
    if (!store.ok()) {
      std::cerr << store.status() << "\n";
      std::exit(1);
    }
    const Clock::time_point start = Clock::now();
    std::vector<tl::server::JobStore::NewJob> batch;
    for (int i = 0; i < stored; ++i) {
      batch.push_back({Spec("cpu"), "bench", "", absl::Now()});
      if (batch.size() == 1000 || i + 1 == stored) {
        auto created = (*store)->CreateJobs(batch);
        if (!created.ok()) {
          std::cerr << created.status() << "\n";
          std::exit(1);
        }
        batch.clear();
      }
    }
    store->reset();
    // Finished, as most stored jobs are: the scheduler keeps only active ones in memory.
    SQLite::Database database(db, SQLite::OPEN_READWRITE);
    database.exec("UPDATE jobs SET state = 4");
    figures.Add("stored jobs", std::to_string(stored));
    figures.Add("stored jobs: writing them s",
                absl::StrFormat("%.1f", std::chrono::duration<double>(Clock::now() - start).count()));
  }
  Server server(dir, db);
  auto stub = NewStub(server.address());
  std::vector<double> page_ms;
  std::string token;
  for (int page = 0; page < 200; ++page) {
    tl::v1::ListJobsRequest request;
    request.set_page_size(100);
    request.set_page_token(token);
    tl::v1::ListJobsResponse response;
    grpc::ClientContext context;
    const Clock::time_point sent = Clock::now();
    if (!stub->ListJobs(&context, request, &response).ok()) break;
    page_ms.push_back(Millis(Clock::now() - sent));
    token = response.next_page_token();
    if (token.empty()) token = "";
  }
  figures.Add("tlserver resident MB (jobs stored)",
              absl::StrFormat("%.1f", ResidentBytes(server.pid()) / 1048576.0));
  figures.Add("ListJobs page of 100: p50 ms", absl::StrFormat("%.2f", Percentile(page_ms, 0.5)));
  figures.Add("ListJobs page of 100: p99 ms", absl::StrFormat("%.2f", Percentile(page_ms, 0.99)));
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_tlserver).empty()) {
    std::cerr << "scheduler_bench: --tlserver is required\n";
    return 2;
  }
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("tl_sched_bench_", getpid());
  fs::create_directories(dir / "artifacts");
  WriteDataRoot(dir / "data");
  Figures figures;
  {
    Server server(dir, (dir / "storm.db").string());
    SubmitStorm(server.address(), figures);
    figures.Add("tlserver resident MB (after the storm, jobs queued)",
                absl::StrFormat("%.1f", ResidentBytes(server.pid()) / 1048576.0));
  }
  {
    Server server(dir, (dir / "watch.db").string());
    AssignmentAndWatchers(server.address(), figures);
  }
  if (absl::GetFlag(FLAGS_stored) > 0) StoredJobs(dir, figures);

  std::cout << "\n| figure | value |\n| --- | --- |\n";
  for (const auto& [name, value] : figures.rows) std::cout << "| " << name << " | " << value << " |\n";
  if (!absl::GetFlag(FLAGS_json).empty()) {
    std::ofstream json(absl::GetFlag(FLAGS_json));
    json << "{\n";
    for (size_t i = 0; i < figures.rows.size(); ++i) {
      json << "  \"" << figures.rows[i].first << "\": \"" << figures.rows[i].second << "\""
           << (i + 1 < figures.rows.size() ? ",\n" : "\n");
    }
    json << "}\n";
  }
  fs::remove_all(dir);
  return 0;
}
