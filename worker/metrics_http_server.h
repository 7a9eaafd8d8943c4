// A minimal HTTP/1.1 server for one page, GET /metrics, in the Prometheus
// text format. tlworker cannot use prometheus-cpp's Exposer: civetweb starts
// its threads with a fixed 100 KiB stack, and LibTorch's thread-local storage
// alone is larger, so every thread creation fails. Scrapes are served one at
// a time on a thread of ordinary size; each connection answers one request.
#pragma once

#include <prometheus/collectable.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace tl::worker {

class MetricsHttpServer {
 public:
  // Listens on `address` ("HOST:PORT"; port 0 picks a free one) and serves
  // `metrics` until destroyed. The error names the address.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, std::shared_ptr<prometheus::Collectable> metrics);
  ~MetricsHttpServer();  // stops and joins

  int port() const { return port_; }

 private:
  MetricsHttpServer(int listen_fd, int port, std::shared_ptr<prometheus::Collectable> metrics);
  void Serve();
  void Answer(int connection) const;

  const int listen_fd_;
  const int port_;
  const std::shared_ptr<prometheus::Collectable> metrics_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace tl::worker
