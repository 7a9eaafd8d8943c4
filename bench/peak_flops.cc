// peak_flops: the machine's measured float32 (or bfloat16) peak through
// LibTorch, the ceiling that bench/run holds training throughput against.
// Times large matrix products and large 3x3 convolutions (the operation
// ResNets spend their time in) and prints the best of several repeats as JSON.
//
//   OMP_WAIT_POLICY=PASSIVE peak_flops [--threads N] [--repeats N] [--dtype bf16]
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <iostream>
#include <limits>
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
  CLI::App app{"peak_flops: the measured peak (matrix products, 3x3 convolutions)",
               "peak_flops"};
  int threads = 2;
  int repeats = 5;
  std::string dtype = "fp32";
  const CLI::Range positive(1, std::numeric_limits<int>::max());
  app.add_option("--threads", threads, "intra-op threads (default 2)")->check(positive);
  app.add_option("--repeats", repeats, "timed calls of each, the best kept (default 5)")
      ->check(positive);
  app.add_option("--dtype", dtype,
                 "fp32, or bf16: both operands bfloat16, the kernels bf16 autocast reaches")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  at::set_num_threads(threads);
  torch::NoGradGuard no_grad;
  const auto options =
      torch::TensorOptions().dtype(dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32);

  // Products of two n-square matrices: 2 n^3 FLOPs (a multiply and an add each).
  double matmul = 0;
  for (const int64_t n : {2048, 4096}) {
    const torch::Tensor a = torch::randn({n, n}, options);
    const torch::Tensor b = torch::randn({n, n}, options);
    matmul = std::max(matmul,
                      BestFlopsPerSecond(2.0 * n * n * n, repeats, [&] { torch::mm(a, b); }));
  }

  // ResNet-18's 3x3 convolutions at 224 px, batch 32, in layer1 (64
  // channels, 56x56) and layer3 (256 channels, 14x14):
  // 2 * N * Cout * H * W * Cin * 9 FLOPs.
  double conv = 0;
  for (const auto& [channels, side] : {std::pair<int64_t, int64_t>{64, 56}, {256, 14}}) {
    const int64_t batch = 32;
    const torch::Tensor input = torch::randn({batch, channels, side, side}, options);
    const torch::Tensor weight = torch::randn({channels, channels, 3, 3}, options);
    const double flops = 2.0 * batch * channels * side * side * channels * 9;
    conv = std::max(conv, BestFlopsPerSecond(flops, repeats, [&] {
                      torch::conv2d(input, weight, /*bias=*/{}, /*stride=*/1, /*padding=*/1);
                    }));
  }

  const nlohmann::json out = {{"threads", threads},
                              {"dtype", dtype},
                              {"matmul_gflops", matmul / 1e9},
                              {"conv_gflops", conv / 1e9},
                              {"peak_gflops", std::max(matmul, conv) / 1e9}};
  std::cout << out.dump() << std::endl;
  return 0;
}
