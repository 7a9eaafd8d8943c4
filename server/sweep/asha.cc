#include "server/sweep/asha.h"

#include <algorithm>

namespace tl::server {

std::vector<int> AshaRungs(int min_epochs, int reduction_factor, int epochs) {
  std::vector<int> rungs;
  if (min_epochs < 1 || reduction_factor < 2) return rungs;
  // 64-bit: the next rung may pass any int before the loop sees it ends.
  for (long long rung = min_epochs; rung < epochs; rung *= reduction_factor) {
    rungs.push_back(static_cast<int>(rung));
  }
  return rungs;
}

bool IsAshaRung(int epoch, int min_epochs, int reduction_factor, int epochs) {
  const std::vector<int> rungs = AshaRungs(min_epochs, reduction_factor, epochs);
  return std::find(rungs.begin(), rungs.end(), epoch) != rungs.end();
}

AshaDecision DecideAtRung(const SweepObjective& objective, int reduction_factor, double value,
                          const std::vector<double>& earlier) {
  const long long reached = static_cast<long long>(earlier.size()) + 1;
  const long long going_on = std::max(1LL, reached / std::max(1, reduction_factor));
  const long long better = std::count_if(earlier.begin(), earlier.end(), [&](double other) {
    return IsBetter(objective, other, value);
  });
  return better < going_on ? AshaDecision::kContinue : AshaDecision::kStop;
}

}  // namespace tl::server
