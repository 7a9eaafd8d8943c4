// A TCP port that nothing listens on right now, found by binding port 0 and
// asking which one the kernel gave. Whoever uses it binds it later, so another
// process may take it in between; callers say what happens then.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace tl {

// On `address` (dotted IPv4; anything else: every interface); 0 when none
// could be found.
inline int FreePort(const std::string& address = "127.0.0.1") {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in bound{};
  bound.sin_family = AF_INET;
  bound.sin_port = 0;
  if (::inet_pton(AF_INET, address.c_str(), &bound.sin_addr) != 1) {
    bound.sin_addr.s_addr = INADDR_ANY;
  }
  socklen_t length = sizeof(bound);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&bound), sizeof(bound)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) == 0) {
    port = ntohs(bound.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace tl
