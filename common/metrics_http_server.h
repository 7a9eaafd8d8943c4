// The /metrics endpoint of tlserver and tlworker: a small HTTP/1.1 server for
// one page, GET /metrics in the Prometheus text format, optionally over TLS
// and behind a bearer token. Both processes serve it through this one
// implementation, so that the rules (who may scrape, what a refusal looks
// like) live in one place.
//
// Why not prometheus-cpp's Exposer: civetweb starts its threads with a fixed
// 100 KiB stack, and LibTorch's thread-local storage alone is larger, so
// every thread creation fails inside tlworker; and Debian's civetweb loads
// OpenSSL at run time by the names libssl.so and libcrypto.so, which only the
// -dev package installs, so TLS through it would fail in the runtime images.
//
// A few serving threads of ordinary size each accept one connection at a
// time; each connection answers one request, within a deadline.
#pragma once

#include <prometheus/collectable.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace tl {

struct MetricsHttpOptions {
  // "HOST:PORT"; port 0 picks a free one.
  std::string listen_address;
  // PEM certificate chain and its private key. Both set: the endpoint speaks
  // TLS only; both empty: plain HTTP. One without the other is an error.
  std::string tls_cert_path;
  std::string tls_key_path;
  // Not empty: every request must carry "Authorization: Bearer <token>".
  std::string bearer_token;
};

// How a request ended, as counted in tl_metrics_requests_total{outcome}.
enum class MetricsRequestOutcome {
  kServed,        // 200 with the metrics
  kUnauthorized,  // 401: no bearer token, or a wrong one
  kNotFound,      // 404: another path or method
  kNotTls,        // 400: plain HTTP sent to a TLS endpoint
  kFailed,        // no answer: TLS handshake failed, request malformed, too large or too slow
};
inline constexpr int kMetricsRequestOutcomes = 5;

class MetricsHttpServer {
 public:
  // Listens and serves `metrics` until destroyed. Errors name the address,
  // or the flag (--metrics_tls_cert, --metrics_tls_key) and file at fault.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const MetricsHttpOptions& options, std::shared_ptr<prometheus::Collectable> metrics);
  ~MetricsHttpServer();  // stops and joins

  int port() const { return port_; }
  // "http" or "https", and whether a token is asked for, for the start-up log line.
  std::string Describe() const;

 private:
  struct TlsContext;  // OpenSSL's SSL_CTX, kept out of this header
  class Connection;   // an accepted socket, plain or TLS, with a deadline

  MetricsHttpServer(int listen_fd, int port, std::unique_ptr<TlsContext> tls,
                    std::string bearer_token, std::shared_ptr<prometheus::Collectable> metrics);
  void Serve();
  void Answer(int connection_fd, const std::string& peer);
  MetricsRequestOutcome Exchange(Connection& connection, const std::string& peer);
  bool Authorized(const std::string& authorization_header) const;
  std::string MetricsPage() const;
  // Logs refusals of one kind at most once a minute, with the count since the last line.
  void NoteRefusal(MetricsRequestOutcome outcome, const std::string& peer);

  const int listen_fd_;
  const int port_;
  const std::unique_ptr<TlsContext> tls_;
  const std::string bearer_token_;
  const std::shared_ptr<prometheus::Collectable> metrics_;
  std::array<std::atomic<uint64_t>, kMetricsRequestOutcomes> requests_{};

  struct RefusalLog {
    uint64_t unlogged = 0;
    std::chrono::steady_clock::time_point next_line{};
  };
  std::mutex refusal_mutex_;
  std::array<RefusalLog, kMetricsRequestOutcomes> refusal_logs_;

  std::atomic<bool> stopping_{false};
  std::vector<std::thread> threads_;
};

}  // namespace tl
