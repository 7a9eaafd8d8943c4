#include "common/metrics_http_server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <climits>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace tl {
namespace {

using Clock = std::chrono::steady_clock;

// How soon a serving thread notices that the server is stopping.
constexpr int kPollMilliseconds = 200;
// Serving threads: a client that holds its connection until the deadline
// (slowly, or on purpose) occupies one; the others go on serving Prometheus.
constexpr int kServingThreads = 4;
// A client gets this long for the TLS handshake and its request's head...
constexpr auto kRequestTime = std::chrono::seconds(5);
// ...and this long to take the response (Prometheus's default scrape timeout).
constexpr auto kResponseTime = std::chrono::seconds(10);
constexpr size_t kMaxRequestBytes = 8192;
// The first byte of a TLS connection: a handshake record.
constexpr int kTlsHandshakeRecord = 0x16;
constexpr auto kRefusalLogInterval = std::chrono::minutes(1);
constexpr size_t kMinTokenLength = 16;
constexpr char kRealm[] = "tl metrics";

constexpr std::array<const char*, kMetricsRequestOutcomes> kOutcomeNames = {
    "served", "unauthorized", "not_found", "not_tls", "failed"};

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

using Sha256 = std::array<unsigned char, 32>;

Sha256 Digest(const std::string& text) {
  Sha256 digest{};
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest.data(), &length, EVP_sha256(), nullptr);
  return digest;
}

}  // namespace

// One accepted socket, plain or TLS, whose every wait ends at one deadline.
// The socket is non-blocking: a wait is a poll() bounded by the time left.
class MetricsHttpServer::Connection {
 public:
  Connection(int fd, Clock::time_point deadline) : fd_(fd), deadline_(deadline) {}
  ~Connection() {
    if (ssl_ != nullptr) {
      // close_notify, best effort: the response carried its length already.
      if (tls_healthy_) {
        ERR_clear_error();
        SSL_shutdown(ssl_);
      }
      SSL_free(ssl_);
      ERR_clear_error();
    }
    close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void SetDeadline(Clock::time_point deadline) { deadline_ = deadline; }

  // The first byte the client sent, left unread; -1 when none came in time.
  int PeekByte() {
    unsigned char byte = 0;
    while (true) {
      const ssize_t n = recv(fd_, &byte, 1, MSG_PEEK);
      if (n == 1) return byte;
      if (n == 0 || !Retriable() || !Wait(POLLIN)) return -1;
    }
  }

  bool AcceptTls(SSL_CTX* context) {
    ssl_ = SSL_new(context);
    if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1) return false;
    while (true) {
      ERR_clear_error();
      const int result = SSL_accept(ssl_);
      if (result == 1) {
        tls_healthy_ = true;
        return true;
      }
      if (!WaitForTls(result)) return false;
    }
  }

  // Bytes read into `buffer`; 0 when the client closed, failed or ran out of time.
  size_t Read(char* buffer, size_t size) {
    while (true) {
      if (ssl_ != nullptr) {
        ERR_clear_error();
        const int n = SSL_read(ssl_, buffer, static_cast<int>(std::min<size_t>(size, INT_MAX)));
        if (n > 0) return static_cast<size_t>(n);
        if (!WaitForTls(n)) return 0;
      } else {
        const ssize_t n = recv(fd_, buffer, size, 0);
        if (n > 0) return static_cast<size_t>(n);
        if (n == 0 || !Retriable() || !Wait(POLLIN)) return 0;
      }
    }
  }

  // The request line and headers, up to and including the CRLF of the last
  // header; "" when they did not come whole, within the size limit, in time.
  std::string ReadRequestHead() {
    std::string head;
    char buffer[2048];
    size_t end = std::string::npos;
    while ((end = head.find("\r\n\r\n")) == std::string::npos) {
      if (head.size() >= kMaxRequestBytes) return "";
      const size_t n = Read(buffer, sizeof(buffer));
      if (n == 0) return "";
      head.append(buffer, n);
    }
    return head.substr(0, end + 2);
  }

  bool Write(const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      const size_t left = data.size() - sent;
      if (ssl_ != nullptr) {
        ERR_clear_error();
        const int n =
            SSL_write(ssl_, data.data() + sent, static_cast<int>(std::min<size_t>(left, INT_MAX)));
        if (n > 0) {
          sent += static_cast<size_t>(n);
        } else if (!WaitForTls(n)) {
          return false;
        }
      } else {
        const ssize_t n = send(fd_, data.data() + sent, left, MSG_NOSIGNAL);
        if (n > 0) {
          sent += static_cast<size_t>(n);
        } else if (n == 0 || !Retriable() || !Wait(POLLOUT)) {
          return false;
        }
      }
    }
    return true;
  }

 private:
  static bool Retriable() { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR; }

  // Waits until the socket is ready for `events` or the deadline passes.
  bool Wait(short events) const {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
    if (left <= 0) return false;
    pollfd ready{fd_, events, 0};
    return poll(&ready, 1, static_cast<int>(left)) > 0;
  }

  // After an OpenSSL call returned `result`: waits for what it needs to go
  // on; false on errors (after which no close_notify may be sent) and timeouts.
  bool WaitForTls(int result) {
    switch (SSL_get_error(ssl_, result)) {
      case SSL_ERROR_WANT_READ:
        return Wait(POLLIN);
      case SSL_ERROR_WANT_WRITE:
        return Wait(POLLOUT);
      default:
        tls_healthy_ = false;
        ERR_clear_error();
        return false;
    }
  }

  const int fd_;
  Clock::time_point deadline_;
  SSL* ssl_ = nullptr;
  bool tls_healthy_ = false;
};

namespace {

struct RequestHead {
  std::string request_line;
  std::string authorization;  // the first Authorization header's value
};

RequestHead ParseRequestHead(const std::string& head) {
  RequestHead parsed;
  bool first = true;
  for (absl::string_view line : absl::StrSplit(head, "\r\n", absl::SkipEmpty())) {
    if (first) {
      parsed.request_line = std::string(line);
      first = false;
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    if (parsed.authorization.empty() &&
        absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(line.substr(0, colon)), "authorization")) {
      parsed.authorization = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
  }
  return parsed;
}

std::string Response(const std::string& status, const std::string& extra_headers,
                     const std::string& content_type, const std::string& body) {
  return absl::StrCat("HTTP/1.1 ", status, "\r\n", extra_headers, "Content-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
}

std::string PeerText(const sockaddr_storage& peer) {
  char host[NI_MAXHOST] = {};
  char port[NI_MAXSERV] = {};
  const socklen_t length =
      peer.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&peer), length, host, sizeof(host), port,
                  sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "an unknown address";
  }
  return peer.ss_family == AF_INET6 ? absl::StrCat("[", host, "]:", port)
                                    : absl::StrCat(host, ":", port);
}

bool IsLoopback(const sockaddr_storage& address) {
  if (address.ss_family == AF_INET) {
    const uint32_t ip = ntohl(reinterpret_cast<const sockaddr_in*>(&address)->sin_addr.s_addr);
    return (ip >> 24) == 127;
  }
  if (address.ss_family == AF_INET6) {
    return IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6*>(&address)->sin6_addr);
  }
  return false;
}

absl::Status CheckToken(const std::string& token) {
  if (token.size() < kMinTokenLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics_token_file: the token has ", token.size(), " characters; at least ",
        kMinTokenLength, " are needed (for example the output of `openssl rand -hex 32`)"));
  }
  for (const char c : token) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(
          "--metrics_token_file: the token may hold only visible ASCII characters, no spaces "
          "(it travels in an HTTP header)");
    }
  }
  return absl::OkStatus();
}

// A private key with a passphrase would make OpenSSL ask for it on the terminal;
// refusing to give one makes loading fail instead, with an error.
int NoPassphrase(char*, int, int, void*) { return 0; }

// Opens the listening socket on "HOST:PORT", non-blocking so that several
// threads may wait on it; `bound` receives the address it got.
absl::StatusOr<int> Listen(const std::string& address, sockaddr_storage* bound) {
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address \"", address, "\" is not HOST:PORT (port 0 to 65535)"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const int lookup = getaddrinfo(host.empty() ? nullptr : host.c_str(),
                                 std::to_string(port).c_str(), &hints, &found);
  if (lookup != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address \"", address, "\": ", gai_strerror(lookup)));
  }
  int fd = -1;
  int error = 0;
  for (addrinfo* candidate = found; candidate != nullptr && fd < 0;
       candidate = candidate->ai_next) {
    fd = socket(candidate->ai_family, candidate->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                candidate->ai_protocol);
    if (fd < 0) {
      error = errno;
      continue;
    }
    const int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    if (bind(fd, candidate->ai_addr, candidate->ai_addrlen) != 0 || listen(fd, 16) != 0) {
      error = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on metrics address \"", address,
                                               "\": ", std::strerror(error)));
  }
  socklen_t length = sizeof(*bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(bound), &length);
  return fd;
}

}  // namespace

struct MetricsHttpServer::TlsContext {
  explicit TlsContext(SSL_CTX* context) : context(context) {}
  ~TlsContext() { SSL_CTX_free(context); }
  SSL_CTX* const context;
};

namespace {

absl::StatusOr<SSL_CTX*> LoadTlsContext(const std::string& cert_path, const std::string& key_path) {
  for (const auto& [flag, path] : {std::pair{"--metrics_tls_cert", cert_path},
                                   std::pair{"--metrics_tls_key", key_path}}) {
    if (access(path.c_str(), R_OK) != 0) {
      return absl::NotFoundError(
          absl::StrCat(flag, " ", path, ": cannot read it: ", std::strerror(errno)));
    }
  }
  ERR_clear_error();
  SSL_CTX* context = SSL_CTX_new(TLS_server_method());
  if (context == nullptr) return absl::InternalError("cannot make a TLS context: " + OpenSslError());
  SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
  SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION);
  absl::Status status;
  if (SSL_CTX_use_certificate_chain_file(context, cert_path.c_str()) != 1) {
    status = absl::InvalidArgumentError(absl::StrCat(
        "--metrics_tls_cert ", cert_path, ": not a PEM certificate chain: ", OpenSslError()));
  } else {
    // Read apart from the certificate, so that a file that holds no key and a key
    // of another certificate get errors of their own.
    EVP_PKEY* key = nullptr;
    if (FILE* file = std::fopen(key_path.c_str(), "r"); file != nullptr) {
      key = PEM_read_PrivateKey(file, nullptr, NoPassphrase, nullptr);
      std::fclose(file);
    }
    if (key == nullptr) {
      status = absl::InvalidArgumentError(absl::StrCat(
          "--metrics_tls_key ", key_path,
          ": not a PEM private key without a passphrase: ", OpenSslError()));
    } else if (SSL_CTX_use_PrivateKey(context, key) != 1 ||
               SSL_CTX_check_private_key(context) != 1) {
      status = absl::InvalidArgumentError(absl::StrCat("--metrics_tls_key ", key_path,
                                                       " is not the key of the certificate in "
                                                       "--metrics_tls_cert ", cert_path));
    }
    EVP_PKEY_free(key);
  }
  if (!status.ok()) {
    SSL_CTX_free(context);
    ERR_clear_error();
    return status;
  }
  X509* certificate = SSL_CTX_get0_certificate(context);
  if (certificate != nullptr && X509_cmp_current_time(X509_get0_notAfter(certificate)) < 0) {
    LogWarning("--metrics_tls_cert ", cert_path,
               ": the certificate has expired; scrapers that verify it will fail");
  }
  return context;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const MetricsHttpOptions& options, std::shared_ptr<prometheus::Collectable> metrics) {
  if (options.tls_cert_path.empty() != options.tls_key_path.empty()) {
    return absl::InvalidArgumentError(
        "--metrics_tls_cert and --metrics_tls_key go together: set both (HTTPS) or neither");
  }
  if (!options.bearer_token.empty()) TL_RETURN_IF_ERROR(CheckToken(options.bearer_token));
  std::unique_ptr<TlsContext> tls;
  if (!options.tls_cert_path.empty()) {
    TL_ASSIGN_OR_RETURN(SSL_CTX* const context,
                        LoadTlsContext(options.tls_cert_path, options.tls_key_path));
    tls = std::make_unique<TlsContext>(context);
  }
  sockaddr_storage bound{};
  TL_ASSIGN_OR_RETURN(const int fd, Listen(options.listen_address, &bound));
  const int port = ntohs(bound.ss_family == AF_INET6
                             ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                             : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (!IsLoopback(bound)) {
    if (options.bearer_token.empty()) {
      LogWarning("metrics on ", options.listen_address,
                 " are served to anyone who reaches the address: set --metrics_token_file, "
                 "and --metrics_tls_cert with --metrics_tls_key (docs/METRICS.md)");
    } else if (!tls) {
      LogWarning("metrics on ", options.listen_address,
                 ": the bearer token travels unencrypted; set --metrics_tls_cert and "
                 "--metrics_tls_key (docs/METRICS.md)");
    }
  }
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(
      fd, port, std::move(tls), options.bearer_token, std::move(metrics)));
}

MetricsHttpServer::MetricsHttpServer(int listen_fd, int port, std::unique_ptr<TlsContext> tls,
                                     std::string bearer_token,
                                     std::shared_ptr<prometheus::Collectable> metrics)
    : listen_fd_(listen_fd),
      port_(port),
      tls_(std::move(tls)),
      bearer_token_(std::move(bearer_token)),
      metrics_(std::move(metrics)) {
  for (int i = 0; i < kServingThreads; ++i) threads_.emplace_back([this] { Serve(); });
}

MetricsHttpServer::~MetricsHttpServer() {
  stopping_ = true;
  for (std::thread& thread : threads_) thread.join();
  close(listen_fd_);
}

std::string MetricsHttpServer::Describe() const {
  return absl::StrCat(tls_ ? "https" : "http",
                      bearer_token_.empty() ? ", no authentication" : ", bearer token required");
}

void MetricsHttpServer::Serve() {
  // OpenSSL writes to the socket with write(), which raises SIGPIPE when the
  // client has gone; blocked in this thread, it leaves write() to fail with
  // EPIPE instead of ending the process.
  sigset_t pipe_signal;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);
  while (!stopping_) {
    pollfd ready{listen_fd_, POLLIN, 0};
    if (poll(&ready, 1, kPollMilliseconds) <= 0) continue;
    sockaddr_storage peer{};
    socklen_t peer_length = sizeof(peer);
    // Another thread may have taken the connection: the socket is non-blocking.
    const int connection = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &peer_length,
                                   SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (connection < 0) continue;
    Answer(connection, PeerText(peer));
  }
}

void MetricsHttpServer::Answer(int connection_fd, const std::string& peer) {
  Connection connection(connection_fd, Clock::now() + kRequestTime);
  const MetricsRequestOutcome outcome = Exchange(connection, peer);
  // Counted before the connection closes, so that the client's next request sees it.
  ++requests_[static_cast<int>(outcome)];
}

MetricsRequestOutcome MetricsHttpServer::Exchange(Connection& connection, const std::string& peer) {
  if (tls_) {
    const int first_byte = connection.PeekByte();
    if (first_byte < 0) return MetricsRequestOutcome::kFailed;
    if (first_byte != kTlsHandshakeRecord) {
      // Most likely a scraper configured for http: tell it in words it can read. The
      // request is read first so that closing the socket does not reset the answer away.
      connection.ReadRequestHead();
      connection.SetDeadline(Clock::now() + kResponseTime);
      connection.Write(Response("400 Bad Request", "", "text/plain",
                                "this /metrics endpoint speaks HTTPS only\n"));
      NoteRefusal(MetricsRequestOutcome::kNotTls, peer);
      return MetricsRequestOutcome::kNotTls;
    }
    if (!connection.AcceptTls(tls_->context)) return MetricsRequestOutcome::kFailed;
  }
  const std::string head = connection.ReadRequestHead();
  if (head.empty()) return MetricsRequestOutcome::kFailed;
  const RequestHead request = ParseRequestHead(head);
  connection.SetDeadline(Clock::now() + kResponseTime);
  if (!bearer_token_.empty() && !Authorized(request.authorization)) {
    // RFC 6750: a request without credentials gets the challenge alone, one with
    // wrong credentials learns that they were wrong.
    const std::string challenge = absl::StrCat(
        "WWW-Authenticate: Bearer realm=\"", kRealm, "\"",
        request.authorization.empty() ? "" : ", error=\"invalid_token\"", "\r\n");
    connection.Write(Response("401 Unauthorized", challenge, "text/plain",
                              "a bearer token is required for /metrics\n"));
    NoteRefusal(MetricsRequestOutcome::kUnauthorized, peer);
    return MetricsRequestOutcome::kUnauthorized;
  }
  if (!absl::StartsWith(request.request_line, "GET /metrics ") &&
      !absl::StartsWith(request.request_line, "GET /metrics?")) {
    connection.Write(
        Response("404 Not Found", "", "text/plain", "only GET /metrics is served here\n"));
    return MetricsRequestOutcome::kNotFound;
  }
  const bool sent = connection.Write(
      Response("200 OK", "", "text/plain; version=0.0.4; charset=utf-8", MetricsPage()));
  return sent ? MetricsRequestOutcome::kServed : MetricsRequestOutcome::kFailed;
}

bool MetricsHttpServer::Authorized(const std::string& authorization_header) const {
  const size_t space = authorization_header.find(' ');
  if (space == std::string::npos ||
      !absl::EqualsIgnoreCase(authorization_header.substr(0, space), "Bearer")) {
    return false;
  }
  const std::string presented(absl::StripAsciiWhitespace(authorization_header.substr(space + 1)));
  // Digests of equal length, compared in constant time: how long the
  // comparison takes tells nothing of the token, its length included.
  const Sha256 expected = Digest(bearer_token_);
  const Sha256 given = Digest(presented);
  return CRYPTO_memcmp(expected.data(), given.data(), expected.size()) == 0;
}

std::string MetricsHttpServer::MetricsPage() const {
  std::vector<prometheus::MetricFamily> families = metrics_->Collect();
  prometheus::MetricFamily requests;
  requests.name = "tl_metrics_requests_total";
  requests.help =
      "Requests to this /metrics endpoint by outcome: served, unauthorized, not_found, not_tls, "
      "failed.";
  requests.type = prometheus::MetricType::Counter;
  for (int i = 0; i < kMetricsRequestOutcomes; ++i) {
    prometheus::ClientMetric metric;
    metric.label.push_back({"outcome", kOutcomeNames[i]});
    metric.counter.value = static_cast<double>(requests_[i].load());
    requests.metric.push_back(std::move(metric));
  }
  families.push_back(std::move(requests));
  return prometheus::TextSerializer().Serialize(families);
}

void MetricsHttpServer::NoteRefusal(MetricsRequestOutcome outcome, const std::string& peer) {
  uint64_t count = 0;
  bool first_line = false;
  {
    std::lock_guard<std::mutex> lock(refusal_mutex_);
    RefusalLog& log = refusal_logs_[static_cast<int>(outcome)];
    ++log.unlogged;
    const Clock::time_point now = Clock::now();
    if (now < log.next_line) return;
    first_line = log.next_line == Clock::time_point{};
    count = log.unlogged;
    log.unlogged = 0;
    log.next_line = now + kRefusalLogInterval;
  }
  const char* what = outcome == MetricsRequestOutcome::kUnauthorized
                         ? "without a valid bearer token"
                         : "in plain HTTP (this endpoint speaks HTTPS)";
  if (first_line) {
    LogWarning("metrics: refused a request ", what, " from ", peer,
               " (from now on at most one such line a minute; every refusal is counted in "
               "tl_metrics_requests_total)");
  } else {
    LogWarning("metrics: refused ", count, count == 1 ? " request " : " requests ", what,
               " since the last such line, the latest from ", peer);
  }
}

}  // namespace tl
