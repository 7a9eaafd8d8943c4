// What scheduler restarts cost a long job, with the default lease (30 s) and
// heartbeat (5 s): a real tlserver and tlworker on 127.0.0.1, a job that has
// run 35 s when tlserver is restarted three times, 10 s apart, by SIGTERM in
// one run and by SIGKILL in another. Prints, per restart, how long the
// server was away and how long the worker took to come back after it was
// serving again, then how the job ended (attempt, failures, epochs stored).
//
//   build/bench/restart_bench            # both runs, about 7 minutes
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/cluster.h"

namespace {

using ::tl::testing::Cluster;
using ::tl::v1::Job;
using namespace std::chrono_literals;

// Times of the log lines of `log` that match `pattern`, in order (the lines start with an
// RFC 3339 time in UTC).
std::vector<absl::Time> TimesOf(const std::string& log, const std::string& pattern) {
  std::vector<absl::Time> times;
  const std::regex line("(\\S+Z) [IWE] [^\\n]*" + pattern);
  for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator();
       ++it) {
    absl::Time time;
    std::string error;
    if (absl::ParseTime(absl::RFC3339_full, (*it)[1].str(), &time, &error)) times.push_back(time);
  }
  return times;
}

bool Ended(const Job& job) { return tl::testing::Ended(job.state()); }

// One run: returns false when the job did not succeed on its first attempt without failures.
bool RunWith(int signal_number, const char* signal_name) {
  Cluster cluster;
  // 600 small images: an epoch takes a fraction of a second, and 1000 of them outlast the
  // restarts on a fast machine.
  cluster.WriteImages("more", {{"red", {0, 0, 255}}, {"green", {0, 255, 0}}, {"blue", {255, 0, 0}}},
                      200);
  tl::v1::JobSpec spec = tl::testing::TinySpec(1000);
  spec.mutable_dataset()->set_train_dir("more");
  cluster.StartServer();
  tl::testing::Process& worker = cluster.StartWorker("w1");
  const Job job = tl::testing::Submit(cluster, spec);
  tl::testing::WaitForJob(
      cluster, job.id(), [](const Job& j) { return j.state() == Job::RUNNING; }, 60s);
  const absl::Time started = absl::Now();

  std::printf("\n%s: job %s\n", signal_name, job.id().c_str());
  std::printf("| restart | at (s into the run) | server away (ms) | worker back after serving (ms) "
              "| worker without a stream (ms) | state after | attempt | failures |\n"
              "| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |\n");
  for (int restart = 1; restart <= 3; ++restart) {
    const absl::Time due = started + absl::Seconds(35 + 10 * (restart - 1));
    if (absl::Now() < due) absl::SleepFor(due - absl::Now());  // the schedule under test
    const double at = absl::ToDoubleSeconds(absl::Now() - started);
    const int port = cluster.grpc_port();
    const size_t hellos_before = TimesOf(cluster.server().Log(), "worker w1 connected").size();
    const absl::Time stopping = absl::Now();
    cluster.StopServer(signal_number);
    cluster.StartServer({}, port);
    const absl::Time serving = TimesOf(cluster.server().Log(), "serving gRPC").back();
    // The worker's hello, as the new server logged it.
    tl::testing::WaitFor(
        [&] {
          return TimesOf(cluster.server().Log(), "worker w1 connected").size() > hellos_before;
        },
        60s);
    const std::vector<absl::Time> connected = TimesOf(cluster.server().Log(), "worker w1 connected");
    // The worker's own count, logged once it has its Welcome: one line per restart.
    const std::regex reconnect(R"(after (\d+) ms without a stream)");
    std::vector<std::string> away_ms;
    tl::testing::WaitFor(
        [&] {
          const std::string log = worker.Log();
          away_ms.clear();
          for (auto it = std::sregex_iterator(log.begin(), log.end(), reconnect);
               it != std::sregex_iterator(); ++it) {
            away_ms.push_back((*it)[1].str());
          }
          return static_cast<int>(away_ms.size()) >= restart;
        },
        60s);
    const std::string without_stream =
        static_cast<int>(away_ms.size()) >= restart ? away_ms[restart - 1] : "-";
    const Job now = tl::testing::Get(cluster, job.id());
    std::printf("| %d | %.1f | %.0f | %.0f | %s | %s | %d | %d |\n", restart, at,
                absl::ToDoubleMilliseconds(serving - stopping),
                connected.size() > hellos_before
                    ? absl::ToDoubleMilliseconds(connected.back() - serving)
                    : -1.0,
                without_stream.c_str(), Job::State_Name(now.state()).c_str(), now.attempt(),
                now.failures());
  }
  const Job ended = tl::testing::WaitForJob(cluster, job.id(), Ended, 900s);
  const std::vector<int> epochs = tl::testing::EpochsOf(tl::testing::WatchToEnd(cluster, job.id()));
  std::map<int, int> seen;
  for (int epoch : epochs) ++seen[epoch];
  bool each_once = seen.size() == 1000;
  for (const auto& [epoch, count] : seen) each_once = each_once && count == 1;
  std::printf("\nended %s, attempt %d, failures %d, %zu epoch events for %zu distinct epochs "
              "(each once: %s), %.0f s after it started; worker stopped the job: %s\n",
              Job::State_Name(ended.state()).c_str(), ended.attempt(), ended.failures(),
              epochs.size(), seen.size(), each_once ? "yes" : "no",
              absl::ToDoubleSeconds(absl::Now() - started),
              worker.Log().find("stopping job") == std::string::npos ? "no" : "yes");
  return ended.state() == Job::SUCCEEDED && ended.attempt() == 1 && ended.failures() == 0 &&
         each_once;
}

}  // namespace

int main() {
  const bool term = RunWith(SIGTERM, "SIGTERM");
  const bool kill = RunWith(SIGKILL, "SIGKILL");
  return term && kill ? 0 : 1;
}
