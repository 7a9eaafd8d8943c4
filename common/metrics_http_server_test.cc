#include "common/metrics_http_server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <regex>
#include <string>
#include <thread>

#include "common/testing/http_exchange.h"
#include "common/testing/temp_dir.h"

namespace tl {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using ::tl::testing::HttpExchange;
using ::tl::testing::MetricsRequest;

constexpr char kToken[] = "scrape-0123456789abcdef";

std::shared_ptr<prometheus::Registry> RegistryWithACounter() {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter().Name("test_things_total").Help("Things.").Register(*registry).Add({})
      .Increment(3);
  return registry;
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> StartOn(const std::string& address) {
  MetricsHttpOptions options;
  options.listen_address = address;
  return MetricsHttpServer::Start(options, RegistryWithACounter());
}

// The figure of tl_metrics_requests_total{outcome="<outcome>"} in a response; -1 if absent.
double RequestCount(const std::string& response, const std::string& outcome) {
  std::smatch match;
  const std::regex series("\ntl_metrics_requests_total\\{outcome=\"" + outcome + "\"\\} (\\S+)");
  return std::regex_search(response, match, series) ? std::stod(match[1]) : -1;
}

// A self-signed certificate for 127.0.0.1 and its key, made with the openssl program.
struct Certificate {
  std::string cert;
  std::string key;
};
Certificate MakeCertificate(const testing::TempDir& dir, const std::string& name) {
  Certificate made{dir.Sub(name + ".crt"), dir.Sub(name + ".key")};
  const std::string command =
      "/usr/bin/openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj '/CN=tl metrics test' "
      "-addext subjectAltName=IP:127.0.0.1 -keyout '" + made.key + "' -out '" + made.cert +
      "' >'" + dir.Sub(name + ".log") + "' 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  return made;
}

TEST(MetricsHttpServerTest, ServesTheMetricsOnAFreePort) {
  auto started = StartOn("127.0.0.1:0");
  ASSERT_TRUE(started.ok()) << started.status();
  const int port = (*started)->port();
  ASSERT_GT(port, 0);
  EXPECT_EQ((*started)->Describe(), "http, no authentication");
  const std::string response = HttpExchange(
      port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n");
  EXPECT_THAT(response, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(response, HasSubstr("Content-Type: text/plain; version=0.0.4"));
  EXPECT_THAT(response, HasSubstr("\r\n\r\n# HELP test_things_total Things.\n"));
  EXPECT_THAT(response, HasSubstr("\ntest_things_total 3"));
  // One request per connection; the next one is served as well, and counts the first.
  const std::string second = HttpExchange(port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n");
  EXPECT_THAT(second, HasSubstr("test_things_total 3"));
  EXPECT_EQ(RequestCount(second, "served"), 1) << second;
  EXPECT_EQ(RequestCount(second, "unauthorized"), 0) << second;
}

TEST(MetricsHttpServerTest, OtherPathsAreNotFound) {
  auto started = StartOn("127.0.0.1:0");
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_THAT(HttpExchange((*started)->port(), "GET / HTTP/1.1\r\n\r\n"),
              StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(HttpExchange((*started)->port(), "POST /metrics HTTP/1.1\r\n\r\n"),
              StartsWith("HTTP/1.1 404"));
}

TEST(MetricsHttpServerTest, BadAddressesAreNamed) {
  for (const char* address :
       {"127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", "no.such.host.invalid:0"}) {
    auto started = StartOn(address);
    ASSERT_FALSE(started.ok()) << address;
    EXPECT_THAT(std::string(started.status().message()), HasSubstr(address));
  }
}

TEST(MetricsHttpServerTest, APortInUseIsAnError) {
  auto first = StartOn("127.0.0.1:0");
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = StartOn(taken);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(taken));
}

TEST(MetricsHttpServerTest, WithATokenOnlyItsBearerIsServed) {
  MetricsHttpOptions options;
  options.listen_address = "127.0.0.1:0";
  options.bearer_token = kToken;
  auto started = MetricsHttpServer::Start(options, RegistryWithACounter());
  ASSERT_TRUE(started.ok()) << started.status();
  const int port = (*started)->port();
  EXPECT_EQ((*started)->Describe(), "http, bearer token required");

  const std::string anonymous = HttpExchange(port, MetricsRequest());
  EXPECT_THAT(anonymous, StartsWith("HTTP/1.1 401 Unauthorized\r\n"));
  EXPECT_THAT(anonymous, HasSubstr("\r\nWWW-Authenticate: Bearer realm=\"tl metrics\"\r\n"));
  EXPECT_THAT(anonymous, Not(HasSubstr("test_things_total")));

  for (const std::string& wrong : {std::string(kToken) + "x", std::string(kToken).substr(1),
                                   std::string("scrape-0123456789abcdeF")}) {
    const std::string refused = HttpExchange(port, MetricsRequest(wrong));
    EXPECT_THAT(refused, StartsWith("HTTP/1.1 401")) << wrong;
    EXPECT_THAT(refused, HasSubstr("error=\"invalid_token\"")) << wrong;
    EXPECT_THAT(refused, Not(HasSubstr("test_things_total"))) << wrong;
  }
  // Another scheme with the right secret is not a bearer token.
  EXPECT_THAT(HttpExchange(port, std::string("GET /metrics HTTP/1.1\r\nAuthorization: Basic ") +
                                     kToken + "\r\n\r\n"),
              StartsWith("HTTP/1.1 401"));
  // Unknown paths are refused before they are looked up.
  EXPECT_THAT(HttpExchange(port, "GET /other HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 401"));

  // Header names and the scheme are case-insensitive (RFC 9110).
  const std::string served = HttpExchange(
      port, std::string("GET /metrics HTTP/1.1\r\nauthorization:   bearer ") + kToken + "\r\n\r\n");
  EXPECT_THAT(served, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(served, HasSubstr("\ntest_things_total 3"));
  EXPECT_EQ(RequestCount(served, "unauthorized"), 6) << served;
  EXPECT_EQ(RequestCount(served, "served"), 0) << served;
}

TEST(MetricsHttpServerTest, TlsWithATokenServesOnlyHttpsBearers) {
  testing::TempDir dir;
  const Certificate certificate = MakeCertificate(dir, "server");
  const Certificate stranger = MakeCertificate(dir, "stranger");
  MetricsHttpOptions options;
  options.listen_address = "127.0.0.1:0";
  options.tls_cert_path = certificate.cert;
  options.tls_key_path = certificate.key;
  options.bearer_token = kToken;
  auto started = MetricsHttpServer::Start(options, RegistryWithACounter());
  ASSERT_TRUE(started.ok()) << started.status();
  const int port = (*started)->port();
  EXPECT_EQ((*started)->Describe(), "https, bearer token required");

  std::string error;
  const std::string served = HttpExchange(port, MetricsRequest(kToken), certificate.cert, &error);
  EXPECT_THAT(served, StartsWith("HTTP/1.1 200 OK\r\n")) << error;
  EXPECT_THAT(served, HasSubstr("\ntest_things_total 3"));

  const std::string anonymous = HttpExchange(port, MetricsRequest(), certificate.cert, &error);
  EXPECT_THAT(anonymous, StartsWith("HTTP/1.1 401")) << error;
  EXPECT_THAT(anonymous, HasSubstr("WWW-Authenticate: Bearer"));

  // Plain HTTP, even with the token, gets words instead of metrics.
  const std::string plain = HttpExchange(port, MetricsRequest(kToken));
  EXPECT_THAT(plain, AllOf(StartsWith("HTTP/1.1 400"), HasSubstr("HTTPS only")));
  EXPECT_THAT(plain, Not(HasSubstr("test_things_total")));

  // A client that trusts another certificate does not get through the handshake.
  EXPECT_EQ(HttpExchange(port, MetricsRequest(kToken), stranger.cert, &error), "");
  EXPECT_THAT(error, HasSubstr("certificate not trusted"));

  // The refused handshake is counted once the server has read the client's alert, which
  // may come after the client has gone on: asked again until it shows, a bounded number of
  // times.
  std::string counted;
  for (int attempt = 0; attempt < 100 && RequestCount(counted, "failed") < 1; ++attempt) {
    counted = HttpExchange(port, MetricsRequest(kToken), certificate.cert);
    if (RequestCount(counted, "failed") < 1) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(RequestCount(counted, "failed"), 1) << counted;
  EXPECT_GE(RequestCount(counted, "served"), 1) << counted;
  EXPECT_EQ(RequestCount(counted, "unauthorized"), 1) << counted;
  EXPECT_EQ(RequestCount(counted, "not_tls"), 1) << counted;
}

TEST(MetricsHttpServerTest, AClientThatSendsNothingDoesNotHoldUpOthers) {
  auto started = StartOn("127.0.0.1:0");
  ASSERT_TRUE(started.ok()) << started.status();
  // Connections that stay silent hold a serving thread each until their deadline (5 s).
  std::vector<int> silent;
  for (int i = 0; i < 3; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>((*started)->port()));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    silent.push_back(fd);
  }
  const auto before = std::chrono::steady_clock::now();
  EXPECT_THAT(HttpExchange((*started)->port(), MetricsRequest()), StartsWith("HTTP/1.1 200"));
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::seconds(3));
  for (const int fd : silent) close(fd);
}

TEST(MetricsHttpServerTest, BadTlsAndTokenSettingsAreNamed) {
  testing::TempDir dir;
  const Certificate certificate = MakeCertificate(dir, "server");
  const Certificate other = MakeCertificate(dir, "other");
  testing::WriteFile(dir.Sub("garbage.pem"), "not a PEM file\n");
  const auto start = [](const std::string& cert, const std::string& key,
                        const std::string& token = "") {
    MetricsHttpOptions options;
    options.listen_address = "127.0.0.1:0";
    options.tls_cert_path = cert;
    options.tls_key_path = key;
    options.bearer_token = token;
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> started =
        MetricsHttpServer::Start(options, RegistryWithACounter());
    return started.ok() ? std::string("started") : std::string(started.status().message());
  };
  EXPECT_THAT(start(certificate.cert, ""), HasSubstr("--metrics_tls_key go together"));
  EXPECT_THAT(start("", certificate.key), HasSubstr("--metrics_tls_cert and"));
  EXPECT_THAT(start(dir.Sub("missing.crt"), certificate.key),
              AllOf(HasSubstr("--metrics_tls_cert"), HasSubstr(dir.Sub("missing.crt"))));
  EXPECT_THAT(start(certificate.cert, dir.Sub("missing.key")),
              AllOf(HasSubstr("--metrics_tls_key"), HasSubstr(dir.Sub("missing.key"))));
  EXPECT_THAT(start(dir.Sub("garbage.pem"), certificate.key),
              AllOf(HasSubstr("--metrics_tls_cert"), HasSubstr("not a PEM certificate")));
  EXPECT_THAT(start(certificate.cert, dir.Sub("garbage.pem")),
              AllOf(HasSubstr("--metrics_tls_key"), HasSubstr("not a PEM private key")));
  EXPECT_THAT(start(certificate.cert, other.key), HasSubstr("is not the key of the certificate"));
  EXPECT_THAT(start("", "", "short"),
              AllOf(HasSubstr("--metrics_token_file"), HasSubstr("at least 16")));
  EXPECT_THAT(start("", "", "with a space 0123456789"),
              AllOf(HasSubstr("--metrics_token_file"), HasSubstr("no spaces")));
  EXPECT_EQ(start(certificate.cert, certificate.key, kToken), "started");
}

}  // namespace
}  // namespace tl
