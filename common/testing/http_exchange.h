// One HTTP request to a /metrics endpoint on 127.0.0.1, plain or over TLS,
// and the whole response, for the tests of the endpoint and of the processes
// serving it. Needs OpenSSL (link OpenSSL::SSL).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <string>

namespace tl::testing {

// `request` sent to 127.0.0.1:port; the response (status line, headers and
// body) read until the server closes. With `ca_file` set, over TLS, the
// server's certificate verified against it for the address 127.0.0.1.
// "" on any failure, with its reason in *error when given.
inline std::string HttpExchange(int port, const std::string& request,
                                const std::string& ca_file = "", std::string* error = nullptr) {
  std::string ignored;
  std::string& reason = error != nullptr ? *error : ignored;
  reason.clear();
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    reason = "socket() failed";
    return "";
  }
  // Every read and write gives up after 10 s, so that a silent server fails the test.
  timeval limit{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    reason = "connect failed";
  } else if (ca_file.empty()) {
    if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char buffer[8192];
      ssize_t n;
      while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) response.append(buffer, n);
    } else {
      reason = "send failed";
    }
  } else {
    // OpenSSL writes with write(): a server that closes first must fail the
    // request, not end the test with SIGPIPE.
    signal(SIGPIPE, SIG_IGN);
    SSL_CTX* context = SSL_CTX_new(TLS_client_method());
    SSL* ssl = nullptr;
    if (SSL_CTX_load_verify_locations(context, ca_file.c_str(), nullptr) != 1) {
      reason = "cannot load " + ca_file;
    } else {
      SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nullptr);
      ssl = SSL_new(context);
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), "127.0.0.1");
      SSL_set_fd(ssl, fd);
      if (SSL_connect(ssl) != 1) {
        const long verified = SSL_get_verify_result(ssl);
        reason = verified != X509_V_OK
                     ? std::string("certificate not trusted: ") +
                           X509_verify_cert_error_string(verified)
                     : std::string("TLS handshake failed: ") +
                           ERR_error_string(ERR_get_error(), nullptr);
      } else if (SSL_write(ssl, request.data(), static_cast<int>(request.size())) !=
                 static_cast<int>(request.size())) {
        reason = "TLS write failed";
      } else {
        char buffer[8192];
        int n;
        while ((n = SSL_read(ssl, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
      }
      SSL_free(ssl);
    }
    SSL_CTX_free(context);
    ERR_clear_error();
  }
  close(fd);
  return response;
}

// A GET of /metrics, with "Authorization: Bearer <token>" when `token` is set.
inline std::string MetricsRequest(const std::string& token = "") {
  return "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
         (token.empty() ? std::string() : "Authorization: Bearer " + token + "\r\n") + "\r\n";
}

}  // namespace tl::testing
