// /metrics of real tlserver and tlworker processes started with
// --metrics_tls_cert, --metrics_tls_key and --metrics_token_file: only HTTPS
// requests with the bearer token get metrics; requests without it get 401
// with a challenge and are logged once, not once each; plain HTTP gets no
// metrics; and bad settings stop either process before it serves anything.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "common/testing/http_exchange.h"
#include "tests/cluster.h"
#include "tests/process.h"
#include "tests/secure_metrics.h"

namespace tl::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

int CountOf(const std::string& text, const std::string& part) {
  int count = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++count;
  return count;
}

class MetricsSecurityTest : public ::testing::Test {
 protected:
  Cluster cluster_;
};

TEST_F(MetricsSecurityTest, OnlyHttpsRequestsWithTheTokenGetMetrics) {
  const SecureMetricsFiles files = MakeSecureMetricsFiles(cluster_.path(""));
  const SecureMetricsFiles stranger = MakeSecureMetricsFiles(cluster_.path(""), "stranger");
  ASSERT_NO_FATAL_FAILURE(cluster_.StartServer(SecureMetricsFlags(files)));
  const int worker_port =
      cluster_.StartMeteredWorker("secured-worker", SecureMetricsFlags(files));
  ASSERT_GT(worker_port, 0);

  struct Endpoint {
    std::string name;
    int port;
    std::string metric;  // one the process always serves
    std::string log;
  };
  const std::vector<Endpoint> endpoints = {
      {"tlserver", cluster_.metrics_port(), "\ntl_queue_depth ", cluster_.path("server.log")},
      {"tlworker", worker_port, "\ntl_worker_batches_total ",
       cluster_.path("secured-worker.log")}};
  for (const Endpoint& endpoint : endpoints) {
    SCOPED_TRACE(endpoint.name);
    std::string error;
    const std::string served =
        HttpExchange(endpoint.port, MetricsRequest(files.token), files.cert, &error);
    EXPECT_THAT(served, StartsWith("HTTP/1.1 200 OK\r\n")) << error;
    EXPECT_THAT(served, HasSubstr(endpoint.metric));

    // No token, a wrong one, the token of another scheme: 401 and a challenge, no metrics.
    for (const std::string& request :
         {MetricsRequest(), MetricsRequest(files.token + "0"), MetricsRequest(stranger.token),
          "GET /metrics HTTP/1.1\r\nAuthorization: Basic " + files.token + "\r\n\r\n"}) {
      const std::string refused = HttpExchange(endpoint.port, request, files.cert, &error);
      EXPECT_THAT(refused, AllOf(StartsWith("HTTP/1.1 401 Unauthorized\r\n"),
                                 HasSubstr("\r\nWWW-Authenticate: Bearer realm=\"tl metrics\"")))
          << request << error;
      EXPECT_THAT(refused, Not(HasSubstr(endpoint.metric))) << request;
    }

    // Plain HTTP, token and all, gets no metrics.
    const std::string plain = HttpExchange(endpoint.port, MetricsRequest(files.token));
    EXPECT_THAT(plain, AllOf(StartsWith("HTTP/1.1 400"), Not(HasSubstr(endpoint.metric))));
    // Nor does a client that does not trust the certificate get as far as asking.
    EXPECT_EQ(HttpExchange(endpoint.port, MetricsRequest(files.token), stranger.cert, &error), "");
    EXPECT_THAT(error, HasSubstr("certificate not trusted"));

    // The refusals are counted, and logged in one line, not one each.
    const std::string counted =
        HttpExchange(endpoint.port, MetricsRequest(files.token), files.cert, &error);
    EXPECT_THAT(counted, HasSubstr("\ntl_metrics_requests_total{outcome=\"unauthorized\"} 4\n"))
        << counted;
    EXPECT_THAT(counted, HasSubstr("\ntl_metrics_requests_total{outcome=\"not_tls\"} 1\n"));
    const std::string log = ReadFile(endpoint.log);
    EXPECT_EQ(CountOf(log, "without a valid bearer token"), 1) << log;
    EXPECT_EQ(CountOf(log, "in plain HTTP"), 1) << log;
    EXPECT_THAT(log, HasSubstr("https, bearer token required"));
  }
}

TEST_F(MetricsSecurityTest, BadSettingsStopEitherProcess) {
  const SecureMetricsFiles files = MakeSecureMetricsFiles(cluster_.path(""));
  std::ofstream(cluster_.path("short.token")) << "short\n";
  const std::vector<std::string> server = {
      TLSERVER_PATH, "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
      "--db=" + cluster_.path("bad.db"), "--data_root=" + cluster_.data_root(),
      "--artifact_root=" + cluster_.artifact_root()};
  const std::vector<std::string> worker = {
      TLWORKER_PATH, "--server=127.0.0.1:1", "--metrics_listen=127.0.0.1:0",
      "--data_root=" + cluster_.data_root(), "--artifact_root=" + cluster_.artifact_root()};
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"--metrics_tls_key go together", {"--metrics_tls_cert=" + files.cert}},
      {"--metrics_tls_cert " + cluster_.path("missing.crt"),
       {"--metrics_tls_cert=" + cluster_.path("missing.crt"), "--metrics_tls_key=" + files.key}},
      {"--metrics_tls_key " + files.cert + ": not a PEM private key",
       {"--metrics_tls_cert=" + files.cert, "--metrics_tls_key=" + files.cert}},
      {"--metrics_token_file: cannot read " + cluster_.path("missing.token"),
       {"--metrics_token_file=" + cluster_.path("missing.token")}},
      {"at least 16", {"--metrics_token_file=" + cluster_.path("short.token")}},
  };
  int run = 0;
  for (const auto& [expected, flags] : cases) {
    for (std::vector<std::string> argv : {server, worker}) {
      argv.insert(argv.end(), flags.begin(), flags.end());
      const auto [status, output] = RunToEnd(argv, cluster_.path("bad-" + std::to_string(run++)));
      EXPECT_EQ(status, 2) << argv[0] << " " << flags[0] << "\n" << output;
      EXPECT_THAT(output, HasSubstr(expected)) << argv[0];
    }
  }
}

}  // namespace
}  // namespace tl::testing
