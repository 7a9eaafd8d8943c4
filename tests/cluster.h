// A cluster of real processes for end-to-end tests: tlserver on 127.0.0.1
// with its SQLite file, tlworker processes, and the tiny data they train on
// (a TorchScript backbone and solid-colour images), plus the calls tests make.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <opencv2/imgcodecs.hpp>
#include <regex>
#include <string>
#include <vector>

#include "common/testing/temp_dir.h"
#include "testing/tiny_backbone.h"
#include "tests/process.h"
#include "tl/v1/service.grpc.pb.h"

namespace tl::testing {

namespace cluster_internal {
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::tl::v1::Job;
using ::tl::v1::JobEvent;
using ::tl::v1::JobSpec;

// A scheduler, its workers and their shared data and artifact roots.
class Cluster {
 public:
  Cluster() {
    fs::create_directories(data_root());
    fs::create_directories(artifact_root());
    fs::create_directories(dir_.Sub("data/backbones"));
    engine::testing::WriteTinyBackbone(dir_.Sub("data/backbones"));
    WriteImages("images", {{"red", {0, 0, 255}}, {"green", {0, 255, 0}}, {"blue", {255, 0, 0}}});
  }
  ~Cluster() {
    workers_.clear();
    if (server_) {
      server_->Signal(SIGTERM);
      server_->Wait();
    }
  }

  std::string data_root() const { return dir_.Sub("data"); }
  std::string artifact_root() const { return dir_.Sub("artifacts"); }
  std::string path(const std::string& name) const { return dir_.Sub(name); }
  std::string address() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  int metrics_port() const { return metrics_port_; }
  Process& server() { return *server_; }

  // `per_class` 12x12 images per class, a solid colour each (BGR), slightly varied.
  void WriteImages(const std::string& folder,
                   const std::vector<std::pair<std::string, cv::Scalar>>& classes,
                   int per_class = 6) {
    for (const auto& [name, colour] : classes) {
      fs::create_directories(dir_.Sub("data/" + folder + "/" + name));
      for (int i = 0; i < per_class; ++i) {
        cv::Mat image(12, 12, CV_8UC3, colour * (0.7 + 0.3 * i / per_class));
        cv::imwrite(dir_.Sub("data/" + folder + "/" + name + "/" + std::to_string(i) + ".png"),
                    image);
      }
    }
  }

  // Starts tlserver; `port` 0 picks a free one (a restart passes the old one, so that
  // workers and clients find it again).
  void StartServer(std::vector<std::string> extra_flags = {}, int port = 0) {
    const std::string ready = path("ready");
    fs::remove(ready);
    std::vector<std::string> argv = {TLSERVER_PATH,
                                     "--listen=127.0.0.1:" + std::to_string(port),
                                     "--metrics_listen=127.0.0.1:0",
                                     "--db=" + path("tl.db"),
                                     "--data_root=" + data_root(),
                                     "--artifact_root=" + artifact_root(),
                                     "--ready_file=" + ready};
    argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
    server_ = std::make_unique<Process>(argv, path("server.log"));
    ASSERT_TRUE(WaitFor([&] { return fs::exists(ready) || server_->Exited(); }, 20s))
        << server_->Log();
    ASSERT_FALSE(server_->Exited()) << server_->Log();
    std::smatch ports;
    const std::string text = ReadFile(ready);
    ASSERT_TRUE(std::regex_search(text, ports, std::regex(R"(grpc=(\d+) metrics=(\d+))")));
    grpc_port_ = std::stoi(ports[1]);
    metrics_port_ = std::stoi(ports[2]);
    channel_ = grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
    stub_ = tl::v1::JobService::NewStub(channel_);
  }
  int grpc_port() const { return grpc_port_; }

  int StopServer(int signal_number = SIGTERM) {
    server_->Signal(signal_number);
    const int status = server_->Wait();
    server_.reset();
    return status;
  }

  Process& StartWorker(const std::string& worker_id,
                       const std::vector<std::string>& extra_flags = {}) {
    std::vector<std::string> argv = {TLWORKER_PATH, "--server=" + address(),
                                     "--worker_id=" + worker_id, "--data_root=" + data_root(),
                                     "--artifact_root=" + artifact_root(), "--threads=1",
                                     "--loader_threads=1"};
    argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
    workers_.push_back(std::make_unique<Process>(argv, path(worker_id + ".log")));
    return *workers_.back();
  }

  // Starts a tlworker serving /metrics on a free loopback port; returns the port, 0 (with a
  // test failure) when the worker did not get ready.
  int StartMeteredWorker(const std::string& worker_id, std::vector<std::string> flags = {}) {
    const std::string ready = path(worker_id + ".ready");
    flags.push_back("--metrics_listen=127.0.0.1:0");
    flags.push_back("--ready_file=" + ready);
    Process& worker = StartWorker(worker_id, flags);
    EXPECT_TRUE(WaitFor([&] { return fs::exists(ready) || worker.Exited(); }, 20s));
    std::smatch port;
    const std::string text = fs::exists(ready) ? ReadFile(ready) : "";
    EXPECT_TRUE(std::regex_search(text, port, std::regex(R"(metrics=(\d+))")))
        << "worker ready file: '" << text << "'\n" << worker.Log();
    return port.empty() ? 0 : std::stoi(port[1]);
  }

  tl::v1::JobService::Stub& stub() { return *stub_; }

 private:
  tl::testing::TempDir dir_;
  std::unique_ptr<Process> server_;
  std::vector<std::unique_ptr<Process>> workers_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<tl::v1::JobService::Stub> stub_;
};

inline JobSpec TinySpec(int epochs) {
  JobSpec spec;
  spec.set_name("tiny");
  spec.mutable_backbone()->set_path("backbones/tiny.pt");
  spec.mutable_dataset()->set_train_dir("images");
  spec.mutable_dataset()->set_val_fraction(0.34);
  spec.mutable_training()->set_strategy(tl::v1::TrainingSpec::FULL);
  spec.mutable_training()->set_epochs(epochs);
  spec.mutable_training()->set_batch_size(4);
  spec.mutable_training()->set_learning_rate(0.01);
  spec.mutable_training()->set_threads(1);
  return spec;
}

inline Job Submit(Cluster& cluster, const JobSpec& spec) {
  tl::v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  request.set_owner("e2e");
  Job job;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  const grpc::Status status = cluster.stub().SubmitJob(&context, request, &job);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return job;
}

inline Job Get(Cluster& cluster, const std::string& id) {
  tl::v1::GetJobRequest request;
  request.set_job_id(id);
  Job job;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  const grpc::Status status = cluster.stub().GetJob(&context, request, &job);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return job;
}

inline grpc::Status Cancel(Cluster& cluster, const std::string& id, const std::string& reason,
                           Job* job) {
  tl::v1::CancelJobRequest request;
  request.set_job_id(id);
  request.set_reason(reason);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  return cluster.stub().CancelJob(&context, request, job);
}

inline bool Ended(Job::State state) {
  return state == Job::SUCCEEDED || state == Job::FAILED || state == Job::CANCELLED ||
         state == Job::STOPPED_EARLY;
}

// Reads a job's watch stream to its end. `on_event` may act on the way.
inline std::vector<JobEvent> WatchToEnd(Cluster& cluster, const std::string& id,
                                 const std::function<void(const JobEvent&)>& on_event = {}) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 120s);
  tl::v1::WatchJobRequest request;
  request.set_job_id(id);
  auto reader = cluster.stub().WatchJob(&context, request);
  std::vector<JobEvent> events;
  JobEvent event;
  while (reader->Read(&event)) {
    events.push_back(event);
    if (on_event) on_event(event);
  }
  const grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  return events;
}

inline std::vector<Job::State> StatesOf(const std::vector<JobEvent>& events) {
  std::vector<Job::State> states;
  for (const JobEvent& event : events) {
    if (event.has_job() && (states.empty() || states.back() != event.job().state())) {
      states.push_back(event.job().state());
    }
  }
  return states;
}

inline std::vector<int> EpochsOf(const std::vector<JobEvent>& events) {
  std::vector<int> epochs;
  for (const JobEvent& event : events) {
    if (event.has_epoch()) epochs.push_back(event.epoch().epoch());
  }
  return epochs;
}

// Polls the job until `done` holds for it or `timeout` passes; the last job seen.
inline Job WaitForJob(Cluster& cluster, const std::string& id,
                      const std::function<bool(const Job&)>& done,
                      std::chrono::milliseconds timeout = 60s) {
  Job job;
  WaitFor(
      [&] {
        job = Get(cluster, id);
        return done(job);
      },
      timeout);
  return job;
}

}  // namespace cluster_internal

using cluster_internal::Cancel;
using cluster_internal::Cluster;
using cluster_internal::EpochsOf;
using cluster_internal::Ended;
using cluster_internal::Get;
using cluster_internal::StatesOf;
using cluster_internal::Submit;
using cluster_internal::TinySpec;
using cluster_internal::WaitForJob;
using cluster_internal::WatchToEnd;

}  // namespace tl::testing
