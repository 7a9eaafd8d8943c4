// tlserver: the scheduler process. Serves tl.v1.JobService and
// tl.v1.WorkerService over gRPC (with grpc.health.v1 and server reflection),
// Prometheus metrics over HTTP, and keeps every job in one SQLite file.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/confined_path.h"
#include "common/credentials.h"
#include "common/log.h"
#include "common/termination_signal.h"
#include "common/metrics_http_flags.h"
#include "common/metrics_http_server.h"
#include "server/api/grpc_services.h"
#include "server/store/sqlite_job_store.h"
#include "server/core/scheduler.h"
#include "server/metrics/server_metrics.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "gRPC address to listen on; port 0 picks a free port");
ABSL_FLAG(std::string, db, "tl.db", "SQLite database file (created if missing)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9464",
          "address of the Prometheus /metrics endpoint; port 0 picks a free port; empty "
          "disables. Secured by --metrics_tls_cert, --metrics_tls_key and --metrics_token_file");
ABSL_FLAG(std::string, data_root, "data",
          "folder that job datasets and backbones must lie under (not inside --artifact_root, nor holding it)");
ABSL_FLAG(std::string, artifact_root, "artifacts", "folder that job outputs are written under");
ABSL_FLAG(std::string, ready_file, "",
          "when set, written once serving, with the bound ports: 'grpc=PORT metrics=PORT'");
ABSL_FLAG(double, lease_seconds, 30, "a worker silent this long loses its job");
ABSL_FLAG(double, heartbeat_seconds, 5, "how often workers are asked to heartbeat");
ABSL_FLAG(int, max_attempts, 3, "assignments a job gets before a lost worker fails it");
ABSL_FLAG(int, max_message_bytes, 4 << 20,
          "largest gRPC message accepted; larger ones get RESOURCE_EXHAUSTED");
ABSL_FLAG(std::string, tokens_file, "",
          "bearer tokens, one 'TOKEN PRINCIPAL ROLE' per line (roles: user, worker, admin); "
          "empty: no authentication");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; with --tls_key, serve TLS only");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(int, max_running_per_owner, 0, "jobs of one owner running at once; 0: no limit");
ABSL_FLAG(int, max_queued_per_owner, 0,
          "jobs of one owner waiting (queued or paused) at once; 0: no limit");
ABSL_FLAG(double, drain_seconds, 5,
          "on SIGTERM, how long unary calls in flight may take to finish");

namespace {

namespace fs = std::filesystem;

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("tlserver: the tl scheduler. Flags: --listen, --db, --data_root ...");
  absl::ParseCommandLine(argc, argv);
  tl::SetLogProgramName("tlserver");

  // main waits for SIGINT and SIGTERM; the threads started from here on block them.
  tl::CatchTerminationSignals();

  std::error_code error;
  fs::create_directories(absl::GetFlag(FLAGS_artifact_root), error);
  if (!fs::is_directory(absl::GetFlag(FLAGS_data_root))) {
    tl::LogError("--data_root ", absl::GetFlag(FLAGS_data_root), " is not a folder");
    return 2;
  }
  if (absl::Status roots = tl::CheckSeparateRoots(absl::GetFlag(FLAGS_data_root),
                                                  absl::GetFlag(FLAGS_artifact_root));
      !roots.ok()) {
    tl::LogError(roots.message());
    return 2;
  }

  absl::StatusOr<std::unique_ptr<tl::server::SqliteJobStore>> store =
      tl::server::SqliteJobStore::Open(absl::GetFlag(FLAGS_db));
  if (!store.ok()) {
    tl::LogError("cannot open the job database: ", store.status().ToString());
    return 1;
  }

  tl::server::ServerMetrics metrics;
  std::unique_ptr<tl::MetricsHttpServer> metrics_server;
  if (const std::string listen = absl::GetFlag(FLAGS_metrics_listen); !listen.empty()) {
    absl::StatusOr<tl::MetricsHttpOptions> metrics_options = tl::MetricsHttpOptionsFromFlags(listen);
    absl::StatusOr<std::unique_ptr<tl::MetricsHttpServer>> started =
        metrics_options.ok() ? tl::MetricsHttpServer::Start(*metrics_options, metrics.collectable())
                             : metrics_options.status();
    if (!started.ok()) {
      tl::LogError("--metrics_listen ", listen, ": ", started.status().message());
      return 2;
    }
    metrics_server = *std::move(started);
  }

  tl::server::SchedulerOptions options;
  options.data_root = absl::GetFlag(FLAGS_data_root);
  options.artifact_root = absl::GetFlag(FLAGS_artifact_root);
  options.lease_timeout = absl::Seconds(absl::GetFlag(FLAGS_lease_seconds));
  options.heartbeat_interval = absl::Seconds(absl::GetFlag(FLAGS_heartbeat_seconds));
  options.max_attempts = absl::GetFlag(FLAGS_max_attempts);
  options.max_running_per_owner = absl::GetFlag(FLAGS_max_running_per_owner);
  options.max_queued_per_owner = absl::GetFlag(FLAGS_max_queued_per_owner);
  // Listing replies stay well inside what clients accept (gRPC's default, 4 MiB) and what this
  // server is set to carry.
  options.max_list_reply_bytes = std::min<size_t>(
      options.max_list_reply_bytes,
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_max_message_bytes))) / 2);

  std::unique_ptr<tl::server::TokenAuthenticator> authenticator;
  if (!absl::GetFlag(FLAGS_tokens_file).empty()) {
    absl::StatusOr<std::unique_ptr<tl::server::TokenAuthenticator>> loaded =
        tl::server::TokenAuthenticator::LoadFile(absl::GetFlag(FLAGS_tokens_file));
    if (!loaded.ok()) {
      tl::LogError("--tokens_file: ", loaded.status().message());
      return 2;
    }
    authenticator = *std::move(loaded);
    tl::LogInfo("authentication on: ", authenticator->size(), " tokens");
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      tl::ServerCredentials(absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key));
  if (!credentials.ok()) {
    tl::LogError(credentials.status().message());
    return 2;
  }

  tl::server::Scheduler scheduler(**store, metrics, options);
  if (absl::Status status = scheduler.Start(); !status.ok()) {
    tl::LogError("cannot start the scheduler: ", status.ToString());
    return 1;
  }

  tl::server::JobServiceImpl job_service(scheduler, authenticator.get());
  tl::server::WorkerServiceImpl worker_service(scheduler, authenticator.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), *credentials, &grpc_port);
  builder.SetMaxReceiveMessageSize(absl::GetFlag(FLAGS_max_message_bytes));
  builder.RegisterService(&job_service);
  builder.RegisterService(&worker_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0) {
    tl::LogError("cannot listen on ", absl::GetFlag(FLAGS_listen));
    return 1;
  }
  const int metrics_port = metrics_server ? metrics_server->port() : 0;
  tl::LogInfo("serving gRPC on port ", grpc_port, ", metrics on port ", metrics_port,
              metrics_server ? " (" + metrics_server->Describe() + ")" : std::string(),
              ", database ", absl::GetFlag(FLAGS_db));
  if (!absl::GetFlag(FLAGS_ready_file).empty()) {
    // Written under another name and renamed, so that a reader never sees
    // half of it.
    const std::string ready = absl::GetFlag(FLAGS_ready_file);
    std::ofstream(ready + ".tmp") << "grpc=" << grpc_port << " metrics=" << metrics_port << "\n";
    fs::rename(ready + ".tmp", ready, error);
  }

  const int signal_number = tl::WaitForTerminationSignal();
  tl::LogInfo("signal ", signal_number, " received; draining");
  // No job is assigned from here on, so none is handed to a worker whose stream is about to be
  // cut. New calls are refused; unary calls in flight finish; streams (workers, watchers) are
  // cancelled at the deadline. Every state change is already on disk, and running jobs are
  // claimed again by their workers when the server restarts.
  scheduler.BeginDrain();
  // gRPC's own shutdown waits out its whole deadline while idle clients stay connected, so
  // the wait for calls in flight happens here, and the transport is then given a moment.
  const absl::Time drain_deadline =
      absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_drain_seconds));
  while (job_service.unary_calls_in_flight() > 0 && absl::Now() < drain_deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  scheduler.Stop();
  server.reset();
  store->reset();  // closes the database cleanly
  tl::LogInfo("stopped");
  // Nothing is left to save. The metrics server's teardown waits out its poll interval, or
  // a slow scraper's deadline: skipping it makes a restart that much faster.
  std::fflush(nullptr);
  std::_Exit(0);
}
