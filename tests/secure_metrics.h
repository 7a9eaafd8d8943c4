// What a test needs to run tlserver and tlworker with a secured /metrics: a
// self-signed certificate for 127.0.0.1 made with openssl, a bearer token in
// a file, and the flags that name them.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "tests/process.h"

namespace tl::testing {

struct SecureMetricsFiles {
  std::string cert;        // also what scrapers trust (tls_config.ca_file)
  std::string key;
  std::string token_file;  // Prometheus: authorization.credentials_file
  std::string token;
};

// Writes the files under `folder` (a path prefix), failing the test when
// openssl does.
inline SecureMetricsFiles MakeSecureMetricsFiles(const std::string& folder,
                                                 const std::string& name = "metrics") {
  SecureMetricsFiles files{folder + "/" + name + ".crt", folder + "/" + name + ".key",
                           folder + "/" + name + ".token", name + "-token-0123456789abcdef"};
  auto [status, output] = RunToEnd(
      {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
       "/CN=tl metrics test", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", files.key,
       "-out", files.cert},
      folder + "/" + name + "-openssl.log");
  EXPECT_EQ(status, 0) << output;
  // A trailing newline, as `echo` or an editor leaves it: not part of the token.
  std::ofstream(files.token_file) << files.token << "\n";
  return files;
}

inline std::vector<std::string> SecureMetricsFlags(const SecureMetricsFiles& files) {
  return {"--metrics_tls_cert=" + files.cert, "--metrics_tls_key=" + files.key,
          "--metrics_token_file=" + files.token_file};
}

}  // namespace tl::testing
