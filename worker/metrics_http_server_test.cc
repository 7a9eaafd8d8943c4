#include "worker/metrics_http_server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace tl::worker {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Sends `request` to 127.0.0.1:port and returns the whole response.
std::string Exchange(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
    char buffer[4096];
    ssize_t n;
    while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  }
  close(fd);
  return response;
}

std::shared_ptr<prometheus::Registry> RegistryWithACounter() {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter().Name("test_things_total").Help("Things.").Register(*registry).Add({})
      .Increment(3);
  return registry;
}

TEST(MetricsHttpServerTest, ServesTheMetricsOnAFreePort) {
  auto started = MetricsHttpServer::Start("127.0.0.1:0", RegistryWithACounter());
  ASSERT_TRUE(started.ok()) << started.status();
  const int port = (*started)->port();
  ASSERT_GT(port, 0);
  const std::string response =
      Exchange(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n");
  EXPECT_THAT(response, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(response, HasSubstr("Content-Type: text/plain; version=0.0.4"));
  EXPECT_THAT(response, HasSubstr("\r\n\r\n# HELP test_things_total Things.\n"));
  EXPECT_THAT(response, HasSubstr("\ntest_things_total 3"));
  // One request per connection; the next one is served as well.
  EXPECT_THAT(Exchange(port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n"), HasSubstr("test_things_total 3"));
}

TEST(MetricsHttpServerTest, OtherPathsAreNotFound) {
  auto started = MetricsHttpServer::Start("127.0.0.1:0", RegistryWithACounter());
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_THAT(Exchange((*started)->port(), "GET / HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(Exchange((*started)->port(), "POST /metrics HTTP/1.1\r\n\r\n"),
              StartsWith("HTTP/1.1 404"));
}

TEST(MetricsHttpServerTest, BadAddressesAreNamed) {
  for (const char* address : {"127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", "no.such.host.invalid:0"}) {
    auto started = MetricsHttpServer::Start(address, RegistryWithACounter());
    ASSERT_FALSE(started.ok()) << address;
    EXPECT_THAT(std::string(started.status().message()), HasSubstr(address));
  }
}

TEST(MetricsHttpServerTest, APortInUseIsAnError) {
  auto first = MetricsHttpServer::Start("127.0.0.1:0", RegistryWithACounter());
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = MetricsHttpServer::Start(taken, RegistryWithACounter());
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(taken));
}

}  // namespace
}  // namespace tl::worker
