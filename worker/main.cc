// tlworker: one per GPU (or one CPU worker per machine). Connects to
// tlserver, runs the transfer-learning jobs it is given, and reports epochs
// and results.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <torch/cuda.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/confined_path.h"
#include "common/credentials.h"
#include "common/free_port.h"
#include "common/log.h"
#include "common/metrics_http_flags.h"
#include "common/metrics_http_server.h"
#include "common/termination_signal.h"
#include "common/worker_slots.h"
#include "base/hardware_threads.h"
#include "data/image_header.h"
#include "worker/slot_options.h"
#include "worker/worker_agent.h"
#include "worker/worker_id.h"
#include "worker/worker_metrics.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "tlserver's gRPC address");
ABSL_FLAG(std::string, worker_id, "",
          "name of this worker; {hostname} and {pid} are filled in, so that replicas started "
          "alike get ids a token can name by prefix (cpu-{hostname}); default: {hostname}-{pid}");
ABSL_FLAG(std::string, data_root, "data",
          "folder that job datasets and backbones lie under (not inside --artifact_root, nor holding it)");
ABSL_FLAG(std::string, artifact_root, "artifacts", "folder that job outputs are written under");
ABSL_FLAG(std::string, device, "cpu", "device to train on: cpu, cuda or cuda:N");
ABSL_FLAG(int, threads, 0,
          "intra-op threads for training; 0: every core this process may use (its CPU "
          "affinity, within a container's or pod's CPU quota)");
ABSL_FLAG(int, loader_threads, 0, "image decoding threads; 0: chosen from the core count");
ABSL_FLAG(int, slots, 1,
          "jobs this worker runs at once on its device, at most 16: each slot connects as "
          "WORKER_ID/slotK with an equal share of --threads, --loader_threads and the device's "
          "memory (a job asking for more GPU memory than a share waits for a worker it fits)");
ABSL_FLAG(std::string, token_file, "", "file holding this worker's bearer token (role worker)");
ABSL_FLAG(std::string, tls_ca, "", "PEM certificate(s) to trust; connects with TLS");
ABSL_FLAG(double, gpu_memory_gb, 0,
          "memory of the CUDA device reported to the scheduler; 0: asks nvidia-smi");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:0",
          "address of this worker's Prometheus /metrics endpoint; port 0 picks a free port "
          "(logged); empty disables. Secured by --metrics_tls_cert, --metrics_tls_key and "
          "--metrics_token_file");
ABSL_FLAG(std::string, replica_address, "",
          "address other workers reach this one on for data-parallel jobs (the process "
          "group binds there); 'auto': this host name's first non-loopback IPv4 address; "
          "empty: this worker takes no part in them");
ABSL_FLAG(int, rendezvous_port, 0,
          "port of the rendezvous store this worker serves as rank 0 of a data-parallel job; "
          "0: a free port, chosen at start");
ABSL_FLAG(int64_t, max_image_pixels, tl::engine::kDefaultMaxImagePixels,
          "images whose header states more pixels (width x height) are skipped undecoded and "
          "counted as unreadable; one decode then takes at most about 3 bytes per pixel of it");
ABSL_FLAG(bool, feature_cache, true,
          "keep frozen-backbone features on disk (artifact_root/feature_cache), so that later "
          "jobs, sweep trials and AUTO probes on the same images skip the backbone; false: "
          "each job computes its own, in memory");
ABSL_FLAG(double, feature_cache_max_gib, 20,
          "the feature cache's bound in GiB: after a table is written, the least recently used "
          "ones are removed until the folder holds at most this much; 0: no bound");
ABSL_FLAG(double, stop_grace_seconds, 8,
          "on SIGTERM or SIGINT, how long running jobs have to stop before their next batch and "
          "be handed back to the scheduler, which queues them again at once; a job not handed "
          "back by then waits out its lease. Below Docker's 10 s stop timeout by default");
ABSL_FLAG(std::string, ready_file, "",
          "when set, written once /metrics serves, with its bound port: 'metrics=PORT'");

namespace {

// LibTorch's OpenMP threads spin while they wait for work. When image
// decoding runs beside training (datasets larger than the cache), the
// spinning threads take the cores the decoders need: an epoch here ran 4x
// slower (286 against 1265 images/s). Passive waiting costs nothing
// measurable, but libgomp reads the setting when it loads, before main(),
// so the process starts itself again with it set. A value the user gave
// is kept.
void EnsurePassiveOpenMpWaiting(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/1);
  execv("/proc/self/exe", argv);
  // execv returns only on failure; carry on with the default policy.
}

// Total memory of CUDA device `index` as nvidia-smi reports it; 0 when it cannot tell. The
// engine's LibTorch may lack the CUDA runtime API, and the driver's tool answers either way.
int64_t QueryGpuMemoryBytes(int index) {
  const std::string command = absl::StrCat(
      "nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits -i ", index,
      " 2>/dev/null");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return 0;
  char line[64] = {};
  const bool read = fgets(line, sizeof(line), pipe) != nullptr;
  pclose(pipe);
  int64_t mebibytes = 0;
  if (!read || !absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &mebibytes)) return 0;
  return mebibytes << 20;
}

std::vector<tl::v1::Device> DescribeDevices(const std::string& device_flag) {
  std::vector<tl::v1::Device> devices;
  tl::v1::Device cpu;
  cpu.set_kind("cpu");
  cpu.set_name(absl::StrCat(tl::engine::HardwareThreads(), " cores"));
  cpu.set_memory_bytes(static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE));
  devices.push_back(cpu);
  if (device_flag.rfind("cuda", 0) == 0 && torch::cuda::is_available()) {
    tl::v1::Device cuda;
    cuda.set_kind("cuda");
    cuda.set_index(device_flag.size() > 5 ? std::stoi(device_flag.substr(5)) : 0);
    cuda.set_name("cuda");
    const double memory_gb = absl::GetFlag(FLAGS_gpu_memory_gb);
    cuda.set_memory_bytes(memory_gb > 0 ? static_cast<int64_t>(memory_gb * (1 << 30))
                                        : QueryGpuMemoryBytes(cuda.index()));
    devices.push_back(cuda);
  }
  return devices;
}

// The first non-loopback IPv4 address this machine's host name resolves to, as containers
// and pods see their own (compose and Kubernetes put it in /etc/hosts); empty when none.
std::string OwnAddress() {
  char hostname[256] = {};
  gethostname(hostname, sizeof(hostname) - 1);
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(hostname, nullptr, &hints, &found) != 0) return "";
  std::string address;
  for (addrinfo* entry = found; entry != nullptr && address.empty(); entry = entry->ai_next) {
    const in_addr ip = reinterpret_cast<sockaddr_in*>(entry->ai_addr)->sin_addr;
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &ip, text, sizeof(text));
    if (std::string(text).rfind("127.", 0) != 0) address = text;
  }
  freeaddrinfo(found);
  return address;
}

// Serves `metrics` on --metrics_listen and writes --ready_file. Null when
// disabled; exits on an address that cannot be served or a bad
// --metrics_tls_* or --metrics_token_file.
std::unique_ptr<tl::MetricsHttpServer> ServeMetrics(
    const std::shared_ptr<tl::worker::WorkerMetrics>& metrics) {
  const std::string listen = absl::GetFlag(FLAGS_metrics_listen);
  std::unique_ptr<tl::MetricsHttpServer> server;
  if (!listen.empty()) {
    absl::StatusOr<tl::MetricsHttpOptions> options = tl::MetricsHttpOptionsFromFlags(listen);
    absl::StatusOr<std::unique_ptr<tl::MetricsHttpServer>> started =
        options.ok() ? tl::MetricsHttpServer::Start(*options, metrics->collectable())
                     : options.status();
    if (!started.ok()) {
      tl::LogError("--metrics_listen ", listen, ": ", started.status().message());
      std::exit(2);
    }
    server = *std::move(started);
    tl::LogInfo("serving metrics on port ", server->port(), " (", server->Describe(), ")");
  }
  if (!absl::GetFlag(FLAGS_ready_file).empty()) {
    // Written under another name and renamed, so that a reader never sees half of it.
    const std::string ready = absl::GetFlag(FLAGS_ready_file);
    std::ofstream(ready + ".tmp") << "metrics=" << (server ? server->port() : 0) << "\n";
    std::error_code error;
    std::filesystem::rename(ready + ".tmp", ready, error);
  }
  return server;
}

// Hands every slot's job back at once, so that the grace is the whole process's. A release
// blocked past it (a write to a scheduler that stopped reading) is cut short: Stop() cancels
// the stream, and never waits on a write itself.
void ReleaseAgents(const std::vector<std::unique_ptr<tl::worker::WorkerAgent>>& agents,
                   std::chrono::milliseconds grace) {
  std::mutex mutex;
  std::condition_variable all_done;
  size_t done = 0;
  std::vector<std::thread> releases;
  for (const auto& agent : agents) {
    releases.emplace_back([&, agent = agent.get()] {
      agent->Release(grace);
      std::lock_guard<std::mutex> lock(mutex);
      ++done;
      all_done.notify_all();
    });
  }
  {
    std::unique_lock<std::mutex> lock(mutex);
    if (!all_done.wait_for(lock, grace + std::chrono::seconds(1),
                           [&] { return done == releases.size(); })) {
      for (const auto& agent : agents) agent->Stop();
    }
  }
  for (std::thread& release : releases) release.join();
}

}  // namespace

int main(int argc, char** argv) {
  EnsurePassiveOpenMpWaiting(argv);
  absl::SetProgramUsageMessage("tlworker: runs tl jobs. Flags: --server, --data_root ...");
  absl::ParseCommandLine(argc, argv);
  tl::SetLogProgramName("tlworker");

  // A thread of its own waits for SIGINT and SIGTERM; the others block them.
  tl::CatchTerminationSignals();

  tl::worker::AgentOptions options;
  options.server_address = absl::GetFlag(FLAGS_server);
  {
    char hostname[256] = {};
    gethostname(hostname, sizeof(hostname) - 1);
    auto worker_id =
        tl::worker::ResolveWorkerId(absl::GetFlag(FLAGS_worker_id), hostname, getpid());
    if (!worker_id.ok()) {
      tl::LogError(worker_id.status().message());
      return 2;
    }
    options.worker_id = *std::move(worker_id);
  }
  options.settings.data_root = absl::GetFlag(FLAGS_data_root);
  options.settings.artifact_root = absl::GetFlag(FLAGS_artifact_root);
  options.settings.device = absl::GetFlag(FLAGS_device);
  options.settings.threads = absl::GetFlag(FLAGS_threads);
  options.settings.loader_threads = absl::GetFlag(FLAGS_loader_threads);
  options.settings.max_image_pixels = absl::GetFlag(FLAGS_max_image_pixels);
  options.settings.feature_cache = absl::GetFlag(FLAGS_feature_cache);
  if (options.settings.max_image_pixels < 1) {
    tl::LogError("--max_image_pixels must be at least 1");
    return 2;
  }
  const double cache_gib = absl::GetFlag(FLAGS_feature_cache_max_gib);
  // 2^20 GiB (an exbibyte) keeps the byte count far inside int64.
  if (!(cache_gib >= 0 && cache_gib <= (1 << 20))) {
    tl::LogError("--feature_cache_max_gib must lie in [0, 1048576] (0: no bound)");
    return 2;
  }
  // A positive bound below one byte is still a bound.
  options.settings.feature_cache_max_bytes =
      cache_gib == 0 ? 0
                     : std::max<int64_t>(1, static_cast<int64_t>(cache_gib * (int64_t{1} << 30)));
  options.settings.replica_address = absl::GetFlag(FLAGS_replica_address);
  if (options.settings.replica_address == "auto") {
    options.settings.replica_address = OwnAddress();
    if (options.settings.replica_address.empty()) {
      tl::LogError("--replica_address=auto: this host name resolves to no non-loopback address");
      return 2;
    }
    tl::LogInfo("replica address ", options.settings.replica_address);
  }
  const int slots = absl::GetFlag(FLAGS_slots);
  if (slots < 1 || slots > tl::kMaxWorkerSlots) {
    tl::LogError("--slots must lie in [1, ", tl::kMaxWorkerSlots, "]");
    return 2;
  }
  options.settings.rendezvous_port = absl::GetFlag(FLAGS_rendezvous_port);
  // Slot k serves its rendezvous on the port + k - 1.
  if (options.settings.rendezvous_port < 0 ||
      options.settings.rendezvous_port + slots - 1 > 65535) {
    tl::LogError("--rendezvous_port must lie in [0, ", 65536 - slots, "] (with --slots ", slots,
                 ", slot K serves on it + K - 1)");
    return 2;
  }
  if (options.settings.device.rfind("cuda", 0) == 0 && !torch::cuda::is_available()) {
    tl::LogError("--device ", options.settings.device,
                 " asks for CUDA, which this build or machine does not have");
    return 2;
  }
  std::error_code error;
  std::filesystem::create_directories(options.settings.artifact_root, error);
  if (absl::Status roots =
          tl::CheckSeparateRoots(options.settings.data_root, options.settings.artifact_root);
      !roots.ok()) {
    tl::LogError(roots.message());
    return 2;
  }
  options.devices = DescribeDevices(options.settings.device);
  if (!absl::GetFlag(FLAGS_token_file).empty()) {
    absl::StatusOr<std::string> token =
        tl::ReadTrimmedFile(absl::GetFlag(FLAGS_token_file), "--token_file");
    if (!token.ok()) {
      tl::LogError(token.status().message());
      return 2;
    }
    options.token = *token;
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      tl::ClientCredentials(absl::GetFlag(FLAGS_tls_ca), "--tls_ca");
  if (!credentials.ok()) {
    tl::LogError(credentials.status().message());
    return 2;
  }
  options.credentials = *credentials;

  auto metrics = std::make_shared<tl::worker::WorkerMetrics>(options.settings.device, slots);
  options.settings.listener = metrics;
  std::unique_ptr<tl::MetricsHttpServer> metrics_server = ServeMetrics(metrics);

  std::vector<std::unique_ptr<tl::worker::WorkerAgent>> agents;
  std::set<int> rendezvous_ports;  // the slots' so far
  for (tl::worker::AgentOptions& slot : tl::worker::SlotAgentOptions(
           options, slots, tl::engine::HardwareThreads())) {
    if (!slot.settings.replica_address.empty() && slot.settings.rendezvous_port == 0) {
      // Another process could take it before a job needs it; that attempt's rendezvous then
      // fails and the job is retried. A fixed --rendezvous_port avoids that. The kernel may
      // hand a probed port out again once its probe has closed: each slot needs its own.
      int port = 0;
      for (int tries = 0; tries < 32 && (port == 0 || rendezvous_ports.count(port) > 0); ++tries) {
        port = tl::FreePort(slot.settings.replica_address);
      }
      slot.settings.rendezvous_port = port;
    }
    rendezvous_ports.insert(slot.settings.rendezvous_port);
    agents.push_back(std::make_unique<tl::worker::WorkerAgent>(slot));
  }
  if (slots > 1) {
    tl::LogInfo("running ", slots, " slots, ", agents.front()->options().settings.threads,
                " intra-op thread(s) each");
  }
  // The watcher stays blocked for good when no signal comes, so it is not
  // joined; `stop_guard` keeps it from touching the agents (or the log)
  // once main is done with them. After a signal it lives on with the
  // signals unblocked, so that a second one reaches the process (and ends
  // it, should stopping hang).
  struct StopGuard {
    std::mutex mutex;
    bool agents_gone = false;
  };
  static StopGuard stop_guard;
  const auto grace = std::chrono::milliseconds(
      static_cast<int64_t>(std::max(0.0, absl::GetFlag(FLAGS_stop_grace_seconds)) * 1000));
  std::thread signal_watcher([&agents, grace] {
    const int received = tl::WaitForTerminationSignal();
    {
      std::lock_guard<std::mutex> lock(stop_guard.mutex);
      if (!stop_guard.agents_gone) {
        tl::LogInfo("signal ", received, " received; handing running jobs back and stopping");
        ReleaseAgents(agents, grace);
      }
    }
    for (;;) pause();
  });
  signal_watcher.detach();
  // Slot 1 serves on this thread, the others on threads of their own; a
  // signal stops them all.
  std::vector<std::thread> slot_threads;
  for (size_t i = 1; i < agents.size(); ++i) {
    slot_threads.emplace_back([agent = agents[i].get()] { agent->Run(); });
  }
  agents.front()->Run();
  for (std::thread& thread : slot_threads) thread.join();
  {
    std::lock_guard<std::mutex> lock(stop_guard.mutex);
    stop_guard.agents_gone = true;
  }
  tl::LogInfo("stopped");
  return 0;
}
