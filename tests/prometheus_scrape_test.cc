// Prometheus against real processes: Debian's prometheus scrapes a tlserver
// and a tlworker started here while they run jobs, and every PromQL
// expression of the Grafana dashboard must return data through Prometheus's
// HTTP API. promtool checks a live scrape of each process on the way, and
// the per-job series must go from both when their job ends. With /metrics
// secured (TLS, bearer token), Prometheus scrapes both with a token file and
// the certificate as its CA, and a scrape without the token is refused.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "common/free_port.h"
#include "tests/cluster.h"
#include "tests/http_get.h"
#include "tests/secure_metrics.h"

namespace tl::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::tl::v1::Job;

std::string UrlEncoded(const std::string& text) {
  std::string encoded;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      encoded += static_cast<char>(c);
    } else {
      char hex[4];
      snprintf(hex, sizeof(hex), "%%%02X", c);
      encoded += hex;
    }
  }
  return encoded;
}

// (exit status, output) of `promtool check metrics` on a scrape.
std::pair<int, std::string> PromtoolCheckMetrics(const std::string& scrape,
                                                 const std::string& scrape_file) {
  std::ofstream(scrape_file) << scrape;
  const std::string command =
      std::string(PROMTOOL_PATH) + " check metrics < '" + scrape_file + "' 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, "cannot run " + command};
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// Every PromQL expression of a Grafana dashboard: panel targets (rows'
// panels too) and the PromQL inside variable queries, with the dashboard's
// variables replaced by what Grafana would send.
std::vector<std::string> DashboardExpressions(const nlohmann::json& dashboard) {
  std::vector<std::string> expressions;
  std::function<void(const nlohmann::json&)> panels = [&](const nlohmann::json& list) {
    for (const nlohmann::json& panel : list) {
      for (const nlohmann::json& target : panel.value("targets", nlohmann::json::array())) {
        if (target.contains("expr")) expressions.push_back(target["expr"]);
      }
      panels(panel.value("panels", nlohmann::json::array()));
    }
  };
  panels(dashboard.value("panels", nlohmann::json::array()));
  const std::regex label_values(R"(^\s*label_values\((.*),\s*\w+\s*\)\s*$)");
  for (const nlohmann::json& variable :
       dashboard.value("templating", nlohmann::json::object()).value("list", nlohmann::json::array())) {
    const nlohmann::json& query = variable["query"];
    const std::string text = query.is_object() ? query.value("query", "") : query.get<std::string>();
    std::smatch match;
    if (std::regex_match(text, match, label_values)) expressions.push_back(match[1]);
  }
  for (std::string& expression : expressions) {
    expression = std::regex_replace(expression, std::regex(R"(\$__rate_interval|\$__interval)"), "1m");
    expression = std::regex_replace(expression, std::regex(R"(\$__range)"), "5m");
    expression = std::regex_replace(expression, std::regex(R"(\$\{?\w+\}?)"), ".*");
  }
  return expressions;
}

// The number of samples an instant query returns; -1 on an error.
int QueryResultCount(int port, const std::string& expression, std::string* error) {
  const std::string body = HttpGet(port, "/api/v1/query?query=" + UrlEncoded(expression));
  const nlohmann::json reply = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (reply.is_discarded() || reply.value("status", "") != "success") {
    *error = body.empty() ? "no answer" : body;
    return -1;
  }
  const nlohmann::json& data = reply["data"];
  if (data.value("resultType", "") == "scalar") return 1;
  return static_cast<int>(data["result"].size());
}

class PrometheusScrapeTest : public ::testing::Test {
 protected:
  // Starts Prometheus scraping both processes every second; returns its port.
  int StartPrometheus(int worker_metrics_port) {
    return StartPrometheusWith(
        "  - job_name: tlserver\n"
        "    static_configs:\n"
        "      - targets: ['127.0.0.1:" + std::to_string(cluster_.metrics_port()) + "']\n"
        "  - job_name: tlworker\n"
        "    static_configs:\n"
        "      - targets: ['127.0.0.1:" + std::to_string(worker_metrics_port) + "']\n");
  }

  // Starts Prometheus with these scrape configs, every second; returns its port.
  int StartPrometheusWith(const std::string& scrape_configs) {
    const std::string config = cluster_.path("prometheus.yml");
    std::ofstream(config) << "global:\n"
                          << "  scrape_interval: 1s\n"
                          << "  evaluation_interval: 1s\n"
                          << "scrape_configs:\n"
                          << scrape_configs;
    // Prometheus takes it a moment later; a clash with another process in between would
    // show as Prometheus failing to start.
    const int port = tl::FreePort();
    prometheus_ = std::make_unique<Process>(
        std::vector<std::string>{PROMETHEUS_PATH, "--config.file=" + config,
                                 "--storage.tsdb.path=" + cluster_.path("prometheus-data"),
                                 "--web.listen-address=127.0.0.1:" + std::to_string(port)},
        cluster_.path("prometheus.log"));
    EXPECT_TRUE(WaitFor([&] { return !HttpGet(port, "/-/ready").empty() || prometheus_->Exited(); },
                        30s));
    EXPECT_FALSE(prometheus_->Exited()) << prometheus_->Log();
    return port;
  }

  void TearDown() override {
    if (prometheus_) {
      prometheus_->Signal(SIGTERM);
      prometheus_->Wait();
    }
  }

  Cluster cluster_;
  std::unique_ptr<Process> prometheus_;
};

TEST_F(PrometheusScrapeTest, EveryDashboardQueryHasDataWhileAJobRuns) {
  ASSERT_TRUE(fs::exists(PROMETHEUS_PATH) && fs::exists(PROMTOOL_PATH))
      << "prometheus and promtool are needed (Debian package prometheus; scripts/install-deps)";
  std::ifstream dashboard_file(DASHBOARD_PATH);
  const nlohmann::json dashboard = nlohmann::json::parse(dashboard_file, nullptr, false);
  ASSERT_FALSE(dashboard.is_discarded()) << DASHBOARD_PATH;
  const std::vector<std::string> expressions = DashboardExpressions(dashboard);
  ASSERT_GE(expressions.size(), 10u) << "the dashboard lost its panels";

  ASSERT_NO_FATAL_FAILURE(cluster_.StartServer());
  const int worker_port = cluster_.StartMeteredWorker("scraped-worker");
  ASSERT_GT(worker_port, 0);
  const int prometheus_port = StartPrometheus(worker_port);
  ASSERT_FALSE(prometheus_->Exited());

  // A sweep of two trials, one after the other. The first (one epoch) ends:
  // the outcome and duration histograms and the sweep's best objective have
  // something to show. The second runs until cancelled, keeping the per-job
  // and per-sweep series alive while the queries run.
  tl::v1::SubmitSweepRequest sweep_request;
  tl::v1::SweepSpec& sweep_spec = *sweep_request.mutable_spec();
  sweep_spec.set_name("scraped-sweep");
  *sweep_spec.mutable_base() = TinySpec(1);
  sweep_spec.mutable_base()->clear_name();
  tl::v1::SearchParameter& epochs = *sweep_spec.add_space();
  epochs.set_field("training.epochs");
  epochs.mutable_values()->add_values()->set_number_value(1);
  epochs.mutable_values()->add_values()->set_number_value(1000);  // the most a job may ask for
  sweep_spec.set_method(tl::v1::SweepSpec::GRID);
  sweep_spec.set_max_trials(2);
  sweep_spec.set_max_parallel_trials(1);
  sweep_request.set_owner("e2e");
  tl::v1::Sweep sweep;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    const grpc::Status status = cluster_.stub().SubmitSweep(&context, sweep_request, &sweep);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        tl::v1::GetSweepRequest get;
        get.set_sweep_id(sweep.id());
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + 10s);
        return cluster_.stub().GetSweep(&context, get, &sweep).ok() && sweep.trials_size() == 2 &&
               !sweep.trials(1).job_id().empty();
      },
      90s))
      << sweep.ShortDebugString();
  EXPECT_EQ(Get(cluster_, sweep.trials(0).job_id()).state(), Job::SUCCEEDED);
  Job running;
  running.set_id(sweep.trials(1).job_id());
  const Job started = WaitForJob(cluster_, running.id(), [](const Job& j) { return j.epoch() >= 2; });
  ASSERT_GE(started.epoch(), 2) << Job::State_Name(started.state()) << " " << started.error();

  const std::string job_label = "job_id=\"" + running.id() + "\"";
  const std::string server_scrape = HttpGet(cluster_.metrics_port(), "/metrics");
  const std::string worker_scrape = HttpGet(worker_port, "/metrics");
  EXPECT_NE(server_scrape.find("tl_job_eta_seconds{" + job_label), std::string::npos)
      << server_scrape;
  EXPECT_NE(worker_scrape.find("tl_worker_job_images_per_second{" + job_label), std::string::npos)
      << worker_scrape;
  for (const auto& [name, scrape] : {std::pair{std::string("tlserver"), server_scrape},
                                     std::pair{std::string("tlworker"), worker_scrape}}) {
    const auto [status, output] = PromtoolCheckMetrics(scrape, cluster_.path(name + ".prom"));
    EXPECT_EQ(status, 0) << "promtool check metrics on " << name << "'s /metrics:\n" << output;
  }

  // Series show in Prometheus after a scrape or two, rates after a few: each
  // expression is asked until it returns data, all within one deadline.
  // A worker on a CPU has no device memory to export (docs/METRICS.md).
  const bool cuda_served = worker_scrape.find("tl_worker_cuda_memory") != std::string::npos;
  std::set<std::string> pending;
  int cuda_only = 0;
  for (const std::string& expression : expressions) {
    if (cuda_served || expression.find("tl_worker_cuda_") == std::string::npos) {
      pending.insert(expression);
    } else {
      ++cuda_only;
    }
  }
  ASSERT_LE(cuda_only, 2) << "only the GPU memory panel may go without data on a CPU worker";
  const size_t asked = pending.size();
  std::map<std::string, std::string> errors;
  const auto queries_start = std::chrono::steady_clock::now();
  WaitFor(
      [&] {
        for (auto it = pending.begin(); it != pending.end();) {
          std::string error;
          const int count = QueryResultCount(prometheus_port, *it, &error);
          if (!error.empty()) errors[*it] = error;
          it = count > 0 ? pending.erase(it) : std::next(it);
        }
        return pending.empty();
      },
      90s);
  for (const std::string& expression : pending) {
    ADD_FAILURE() << "no data for dashboard query: " << expression
                  << (errors.count(expression) ? "\n  " + errors[expression] : "");
  }
  std::cout << asked - pending.size() << " of " << asked
            << " distinct dashboard queries returned data within "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - queries_start).count()
            << " s\n";
  // The per-job queries saw the job while it ran, not what was left after it.
  EXPECT_EQ(Get(cluster_, running.id()).state(), Job::RUNNING);

  tl::v1::CancelJobRequest cancel;
  cancel.set_job_id(running.id());
  Job cancelled;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  const grpc::Status cancel_status = cluster_.stub().CancelJob(&context, cancel, &cancelled);
  EXPECT_TRUE(cancel_status.ok()) << cancel_status.error_message();
  EXPECT_EQ(WaitForJob(cluster_, running.id(), [](const Job& j) { return Ended(j.state()); }).state(),
            Job::CANCELLED);
  // The job's series go from both processes once it has ended.
  EXPECT_TRUE(WaitFor(
      [&] {
        return HttpGet(cluster_.metrics_port(), "/metrics").find(job_label) == std::string::npos &&
               HttpGet(worker_port, "/metrics").find(job_label) == std::string::npos;
      },
      20s));
}

TEST_F(PrometheusScrapeTest, ScrapesOverTlsWithABearerTokenFile) {
  ASSERT_TRUE(fs::exists(PROMETHEUS_PATH))
      << "prometheus is needed (Debian package prometheus; scripts/install-deps)";
  // The token and certificate that deploy/make-secrets makes for compose and Kubernetes,
  // made by a copy of it here.
  fs::create_directories(cluster_.path("deploy"));
  fs::copy_file(SECRETS_SCRIPT_PATH, cluster_.path("deploy/make-secrets"));
  const auto [status, output] = RunToEnd({"/bin/sh", cluster_.path("deploy/make-secrets")},
                                         cluster_.path("make-secrets.log"));
  ASSERT_EQ(status, 0) << output;
  SecureMetricsFiles files;
  files.cert = cluster_.path("deploy/secrets/metrics.crt");
  files.key = cluster_.path("deploy/secrets/metrics.key");
  files.token_file = cluster_.path("deploy/secrets/metrics-token");
  ASSERT_NO_FATAL_FAILURE(cluster_.StartServer(SecureMetricsFlags(files)));
  const int worker_port =
      cluster_.StartMeteredWorker("secured-worker", SecureMetricsFlags(files));
  ASSERT_GT(worker_port, 0);
  const std::string targets = "['127.0.0.1:" + std::to_string(cluster_.metrics_port()) +
                              "', '127.0.0.1:" + std::to_string(worker_port) + "']";
  // What deploy/prometheus.yml does (the certificate checked for the name tl-metrics, as
  // targets found by address need), and a job that leaves the token out.
  const std::string secured =
      "    scheme: https\n"
      "    tls_config:\n"
      "      ca_file: " + files.cert + "\n"
      "      server_name: tl-metrics\n";
  const int prometheus_port = StartPrometheusWith(
      "  - job_name: tlserver\n" + secured +
      "    authorization:\n"
      "      type: Bearer\n"
      "      credentials_file: " + files.token_file + "\n"
      "    static_configs:\n"
      "      - targets: ['127.0.0.1:" + std::to_string(cluster_.metrics_port()) + "']\n"
      "  - job_name: tlworker\n" + secured +
      "    authorization:\n"
      "      type: Bearer\n"
      "      credentials_file: " + files.token_file + "\n"
      "    static_configs:\n"
      "      - targets: ['127.0.0.1:" + std::to_string(worker_port) + "']\n"
      "  - job_name: anonymous\n" + secured +
      "    static_configs:\n"
      "      - targets: " + targets + "\n");
  ASSERT_FALSE(prometheus_->Exited());

  // Each expression must come to return exactly the series given, within one deadline.
  const std::map<std::string, int> expected = {
      {R"(up{job=~"tlserver|tlworker"} == 1)", 2},
      {R"(up{job="anonymous"} == 0)", 2},
      {"tl_workers_connected == 1", 1},
      {"tl_worker_batches_total", 1},
      // The refused scrapes, as the processes themselves count them.
      {R"(tl_metrics_requests_total{job=~"tlserver|tlworker",outcome="unauthorized"} > 0)", 2},
  };
  std::map<std::string, int> seen;
  std::map<std::string, std::string> errors;
  WaitFor(
      [&] {
        bool all = true;
        for (const auto& [expression, count] : expected) {
          std::string error;
          seen[expression] = QueryResultCount(prometheus_port, expression, &error);
          if (!error.empty()) errors[expression] = error;
          all = all && seen[expression] == count;
        }
        return all;
      },
      60s);
  for (const auto& [expression, count] : expected) {
    EXPECT_EQ(seen[expression], count)
        << expression << (errors.count(expression) ? "\n  " + errors[expression] : "");
  }
  // Prometheus says why the anonymous scrapes fail.
  const std::string targets_page = HttpGet(prometheus_port, "/api/v1/targets?state=active");
  EXPECT_NE(targets_page.find("401 Unauthorized"), std::string::npos) << targets_page;
}

}  // namespace
}  // namespace tl::testing
