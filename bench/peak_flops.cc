// peak_flops: the machine's measured float32 peak through LibTorch, the
// ceiling that bench/run holds training throughput against. Times a large
// matrix products and large 3x3 convolutions (the operation ResNets spend
// their time in) and prints the best of several repeats as JSON.
//
//   OMP_WAIT_POLICY=PASSIVE peak_flops [--threads N] [--repeats N]
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

namespace {

using Clock = std::chrono::steady_clock;

// Best FLOP/s of `repeats` timed calls after one warm-up call.
template <typename Fn>
double BestFlopsPerSecond(double flops, int repeats, Fn&& run) {
  run();
  double best_seconds = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const Clock::time_point start = Clock::now();
    run();
    best_seconds =
        std::min(best_seconds, std::chrono::duration<double>(Clock::now() - start).count());
  }
  return flops / best_seconds;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  int repeats = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (flag == "--repeats" && i + 1 < argc) {
      repeats = std::atoi(argv[++i]);
    } else {
      std::cerr << "usage: peak_flops [--threads N] [--repeats N]\n";
      return 2;
    }
  }
  if (threads < 1 || repeats < 1) {
    std::cerr << "peak_flops: --threads and --repeats must be positive\n";
    return 2;
  }
  at::set_num_threads(threads);
  torch::NoGradGuard no_grad;

  // Products of two n-square matrices: 2 n^3 FLOPs (a multiply and an add each).
  double matmul = 0;
  for (const int64_t n : {2048, 4096}) {
    const torch::Tensor a = torch::randn({n, n});
    const torch::Tensor b = torch::randn({n, n});
    matmul = std::max(matmul,
                      BestFlopsPerSecond(2.0 * n * n * n, repeats, [&] { torch::mm(a, b); }));
  }

  // ResNet-18's 3x3 convolutions at 224 px, batch 32, in layer1 (64
  // channels, 56x56) and layer3 (256 channels, 14x14):
  // 2 * N * Cout * H * W * Cin * 9 FLOPs.
  double conv = 0;
  for (const auto& [channels, side] : {std::pair<int64_t, int64_t>{64, 56}, {256, 14}}) {
    const int64_t batch = 32;
    const torch::Tensor input = torch::randn({batch, channels, side, side});
    const torch::Tensor weight = torch::randn({channels, channels, 3, 3});
    const double flops = 2.0 * batch * channels * side * side * channels * 9;
    conv = std::max(conv, BestFlopsPerSecond(flops, repeats, [&] {
                      torch::conv2d(input, weight, /*bias=*/{}, /*stride=*/1, /*padding=*/1);
                    }));
  }

  const nlohmann::json out = {{"threads", threads},
                              {"matmul_gflops", matmul / 1e9},
                              {"conv_gflops", conv / 1e9},
                              {"peak_gflops", std::max(matmul, conv) / 1e9}};
  std::cout << out.dump() << std::endl;
  return 0;
}
