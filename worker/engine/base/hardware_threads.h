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

// The tightest CPU quota on this process's cgroup and its ancestors (a
// parent's counts too: a systemd slice's CPUQuota, a container with cgroups
// of its own inside); 0 for none found. cgroup v2's cpu.max, else v1's cpu
// controller.
inline int CgroupQuotaThreads() {
  const auto read = [](const std::string& path) {
    std::ifstream file(path);
    std::stringstream text;
    text << file.rdbuf();
    return file ? text.str() : std::string();
  };
  // From `relative` ("/a/b", or "/" inside a container's cgroup namespace)
  // up to the root of the hierarchy mounted at `mount`, the tightest
  // quota `at(folder)` finds.
  const auto tightest = [](const std::string& mount, std::string relative,
                           const auto& at) {
    int found = 0;
    while (true) {
      if (relative == "/") relative.clear();
      if (const int quota = at(mount + relative); quota > 0) {
        found = found == 0 ? quota : std::min(found, quota);
      }
      if (relative.empty()) return found;
      relative.erase(relative.rfind('/'));
    }
  };
  std::istringstream cgroups(read("/proc/self/cgroup"));
  std::string v2_path;
  std::string v1_cpu_path;
  bool v2 = false;
  bool v1 = false;
  for (std::string line; std::getline(cgroups, line);) {
    // "ID:CONTROLLERS:PATH"; v2's is "0::PATH", v1's cpu one "N:cpu,cpuacct:PATH".
    const size_t first = line.find(':');
    const size_t second = first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    const std::string controllers = "," + line.substr(first + 1, second - first - 1) + ",";
    if (line.compare(0, second + 1, "0::") == 0) {
      v2 = true;
      v2_path = line.substr(second + 1);
    } else if (controllers.find(",cpu,") != std::string::npos) {
      v1 = true;
      v1_cpu_path = line.substr(second + 1);
    }
  }
  if (v2) {
    const int quota = tightest("/sys/fs/cgroup", v2_path, [&](const std::string& folder) {
      const std::string text = read(folder + "/cpu.max");
      return text.empty() ? 0 : QuotaThreads(text);
    });
    if (quota > 0) return quota;
  }
  if (!v1) return 0;
  for (const std::string mount : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"}) {
    const int quota = tightest(mount, v1_cpu_path, [&](const std::string& folder) {
      const std::string quota_us = read(folder + "/cpu.cfs_quota_us");
      const std::string period_us = read(folder + "/cpu.cfs_period_us");
      if (quota_us.empty() || period_us.empty()) return 0;
      try {
        return QuotaThreads(std::stoll(quota_us), std::stoll(period_us));
      } catch (const std::exception&) {
        return 0;
      }
    });
    if (quota > 0) return quota;
  }
  return 0;
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
