// How many threads "every core" means, for the engine and the tools beside
// it that must count as a job does (engine_bench): one header with no
// library, since engine_bench builds where OpenCV's side of the engine does
// not.
//
// Every core is the cores this process may run on, not the machine's: a
// container limited with `cpus:` (a CFS quota) or a cpuset, a Kubernetes
// pod's CPU limit, taskset. A job that starts a thread for each of the
// machine's cores under a quota of two is throttled for most of each
// period.
#pragma once

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>

namespace tl::engine {

// The CPUs a CFS quota of `quota_us` per `period_us` allows, rounded up; 0
// where there is no quota (quota_us < 0, cgroup v1's -1) or the figures are
// not usable.
inline int QuotaThreads(long long quota_us, long long period_us) {
  if (quota_us <= 0 || period_us <= 0) return 0;
  return static_cast<int>(std::ceil(static_cast<double>(quota_us) / static_cast<double>(period_us)));
}

// cgroup v2's cpu.max: "QUOTA PERIOD", or "max PERIOD" for none. 0 where
// there is no quota or the text does not parse.
inline int QuotaThreads(std::string_view cpu_max) {
  std::istringstream fields{std::string(cpu_max)};
  std::string quota;
  long long period = 0;
  if (!(fields >> quota >> period) || quota == "max") return 0;
  try {
    return QuotaThreads(std::stoll(quota), period);
  } catch (const std::exception&) {
    return 0;
  }
}

// The quota of this process's cgroup (v2, then v1's cpu controller); 0 for
// none found.
inline int CgroupQuotaThreads() {
  const auto read = [](const std::string& path) {
    std::ifstream file(path);
    std::stringstream text;
    text << file.rdbuf();
    return file ? text.str() : std::string();
  };
  // "0::/PATH" names the process's v2 cgroup; inside a container's cgroup
  // namespace it is "/", whose cpu.max is the container's.
  std::istringstream cgroups(read("/proc/self/cgroup"));
  for (std::string line; std::getline(cgroups, line);) {
    if (line.rfind("0::", 0) != 0) continue;
    std::string relative = line.substr(3);
    if (relative == "/") relative.clear();
    for (const std::string& path :
         {"/sys/fs/cgroup" + relative + "/cpu.max", std::string("/sys/fs/cgroup/cpu.max")}) {
      const std::string text = read(path);
      if (!text.empty()) return QuotaThreads(text);
    }
  }
  const std::string quota = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
  const std::string period = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  if (quota.empty() || period.empty()) return 0;
  try {
    return QuotaThreads(std::stoll(quota), std::stoll(period));
  } catch (const std::exception&) {
    return 0;
  }
}

// Every core this process may use (at least one): the CPUs of its affinity
// mask, within its cgroup's CPU quota. Read once.
inline int HardwareThreads() {
  static const int threads = [] {
    int count = static_cast<int>(std::thread::hardware_concurrency());
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) count = CPU_COUNT(&allowed);
    if (const int quota = CgroupQuotaThreads(); quota > 0) count = std::min(count, quota);
    return std::max(1, count);
  }();
  return threads;
}

}  // namespace tl::engine
