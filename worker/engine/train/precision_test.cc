// The precision rule with the CPU's bf16 support faked both ways, the
// autocast scope on the CPU, and bf16 training against float32 training on
// a small generated task.
#include "train/precision.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "base/errors.h"
#include "common/testing/temp_dir.h"
#include "data/tensor_source.h"
#include "testing/tiny_backbone.h"
#include "train/trainer.h"

namespace tl::engine {
namespace {

using ::tl::testing::TempDir;

TEST(ChoosePrecisionTest, AutoTakesBf16WhereTheHardwareHasIt) {
  const torch::Device cpu(torch::kCPU);
  const torch::Device cuda(torch::kCUDA, 0);
  Bf16Hardware none;
  Bf16Hardware avx512;
  avx512.cpu.avx512_bf16 = true;
  Bf16Hardware amx;
  amx.cpu.amx_bf16 = true;

  PrecisionChoice choice = ChoosePrecision(PrecisionRequest::kAuto, cpu, none);
  EXPECT_EQ(choice.precision, Precision::kFloat32);
  EXPECT_NE(choice.reason.find("no bf16 instructions"), std::string::npos) << choice.reason;
  choice = ChoosePrecision(PrecisionRequest::kAuto, cpu, avx512);
  EXPECT_EQ(choice.precision, Precision::kBFloat16);
  EXPECT_NE(choice.reason.find("AVX512-BF16"), std::string::npos) << choice.reason;
  choice = ChoosePrecision(PrecisionRequest::kAuto, cpu, amx);
  EXPECT_EQ(choice.precision, Precision::kBFloat16);
  EXPECT_NE(choice.reason.find("AMX-BF16"), std::string::npos) << choice.reason;
  // CUDA: bf16 tensor cores from compute capability 8.0; a GPU the driver said nothing of is
  // taken to have them.
  EXPECT_EQ(ChoosePrecision(PrecisionRequest::kAuto, cuda, none).precision, Precision::kBFloat16);
  Bf16Hardware turing = amx;  // the CPU's instructions do not decide for a GPU job
  turing.cuda = CudaCapability{7, 5};
  choice = ChoosePrecision(PrecisionRequest::kAuto, cuda, turing);
  EXPECT_EQ(choice.precision, Precision::kFloat32);
  EXPECT_NE(choice.reason.find("compute capability 7.5"), std::string::npos) << choice.reason;
  Bf16Hardware hopper;
  hopper.cuda = CudaCapability{9, 0};
  choice = ChoosePrecision(PrecisionRequest::kAuto, cuda, hopper);
  EXPECT_EQ(choice.precision, Precision::kBFloat16);
  EXPECT_NE(choice.reason.find("compute capability 9.0"), std::string::npos) << choice.reason;
  EXPECT_EQ(ChoosePrecision(PrecisionRequest::kBFloat16, cuda, turing).precision,
            Precision::kBFloat16);
  // A CPU job never asks the GPU driver.
  EXPECT_FALSE(DetectBf16Hardware(cpu).cuda.has_value());

  // Explicit requests win, whatever the hardware.
  EXPECT_EQ(ChoosePrecision(PrecisionRequest::kFloat32, cpu, amx).precision, Precision::kFloat32);
  EXPECT_EQ(ChoosePrecision(PrecisionRequest::kFloat32, cuda, none).precision,
            Precision::kFloat32);
  EXPECT_EQ(ChoosePrecision(PrecisionRequest::kBFloat16, cpu, none).precision,
            Precision::kBFloat16);
  EXPECT_STREQ(PrecisionName(Precision::kBFloat16), "BF16");
  EXPECT_STREQ(PrecisionName(Precision::kFloat32), "FP32");
}

// A oneDNN instruction-set cap hides what lies above it, and AUTO then keeps float32 and
// says why; caps at or above the CPU's own instructions, and names oneDNN does not know,
// change nothing.
TEST(ChoosePrecisionTest, AOneDnnCapBelowBf16KeepsFloat32) {
  CpuBf16Support amx;
  amx.avx512_bf16 = true;
  amx.amx_bf16 = true;
  const auto cap = [](const std::string& value) {
    return OneDnnIsaCap{"ONEDNN_MAX_CPU_ISA", value};
  };
  CpuBf16Support capped = CapToOneDnnIsa(amx, cap("avx512_core"));
  EXPECT_FALSE(capped.any());
  EXPECT_EQ(capped.hidden_by, "ONEDNN_MAX_CPU_ISA=avx512_core");
  capped = CapToOneDnnIsa(amx, OneDnnIsaCap{"DNNL_MAX_CPU_ISA", "AVX512_CORE_BF16"});
  EXPECT_TRUE(capped.avx512_bf16);
  EXPECT_FALSE(capped.amx_bf16);
  EXPECT_EQ(capped.hidden_by, "DNNL_MAX_CPU_ISA=AVX512_CORE_BF16");
  for (const std::string value :
       {"", "ALL", "AVX512_CORE_AMX", "avx10_1_512_amx", "NONSENSE"}) {
    capped = CapToOneDnnIsa(amx, cap(value));
    EXPECT_TRUE(capped.avx512_bf16 && capped.amx_bf16) << value;
    EXPECT_TRUE(capped.hidden_by.empty()) << value;
  }
  CpuBf16Support avx512_only;
  avx512_only.avx512_bf16 = true;
  // Nothing above AVX512-BF16 to hide: the cap names nothing this CPU has.
  EXPECT_TRUE(CapToOneDnnIsa(avx512_only, cap("AVX512_CORE_BF16")).hidden_by.empty());
  EXPECT_TRUE(CapToOneDnnIsa(CpuBf16Support(), cap("AVX2")).hidden_by.empty());

  // The newer variable first; an empty value is no cap, and the older one then applies.
  OneDnnIsaCap from = OneDnnIsaCapFrom("AVX2", "ALL");
  EXPECT_EQ(from.variable, "ONEDNN_MAX_CPU_ISA");
  EXPECT_EQ(from.value, "AVX2");
  from = OneDnnIsaCapFrom("", "AVX512_CORE");
  EXPECT_EQ(from.variable, "DNNL_MAX_CPU_ISA");
  EXPECT_EQ(from.value, "AVX512_CORE");
  from = OneDnnIsaCapFrom(nullptr, nullptr);
  EXPECT_TRUE(from.value.empty());

  const torch::Device cpu(torch::kCPU);
  Bf16Hardware hardware;
  hardware.cpu = CapToOneDnnIsa(amx, cap("AVX512_CORE_VNNI"));
  PrecisionChoice choice = ChoosePrecision(PrecisionRequest::kAuto, cpu, hardware);
  EXPECT_EQ(choice.precision, Precision::kFloat32);
  EXPECT_NE(choice.reason.find("ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI"), std::string::npos)
      << choice.reason;
  // AVX512-BF16 left but AMX hidden: measured slower than float32 on such a CPU.
  hardware.cpu = CapToOneDnnIsa(amx, cap("AVX512_CORE_BF16"));
  choice = ChoosePrecision(PrecisionRequest::kAuto, cpu, hardware);
  EXPECT_EQ(choice.precision, Precision::kFloat32);
  EXPECT_NE(choice.reason.find("ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16"), std::string::npos)
      << choice.reason;
  // A CPU of AVX512-BF16 alone under that cap loses nothing to it.
  hardware.cpu = CapToOneDnnIsa(avx512_only, cap("AVX512_CORE_BF16"));
  EXPECT_EQ(ChoosePrecision(PrecisionRequest::kAuto, cpu, hardware).precision,
            Precision::kBFloat16);
  EXPECT_EQ(ChoosePrecision(PrecisionRequest::kBFloat16, cpu, hardware).precision,
            Precision::kBFloat16);
}

TEST(ChoosePrecisionTest, CommandLineNamesMapToRequests) {
  EXPECT_EQ(PrecisionRequestNamed("auto"), PrecisionRequest::kAuto);
  EXPECT_EQ(PrecisionRequestNamed("fp32"), PrecisionRequest::kFloat32);
  EXPECT_EQ(PrecisionRequestNamed("bf16"), PrecisionRequest::kBFloat16);
  EXPECT_THROW(PrecisionRequestNamed("fp16"), EngineError);
}

TEST(AutocastScopeTest, CpuMatrixProductsRunInBf16OnlyInsideTheScope) {
  const torch::Device cpu(torch::kCPU);
  torch::nn::Linear linear(4, 3);
  const torch::Tensor input = torch::randn({2, 4});
  {
    const AutocastScope scope(Precision::kBFloat16, cpu);
    EXPECT_EQ(linear->forward(input).scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(linear->forward(input).scalar_type(), torch::kFloat32);
  {
    const AutocastScope scope(Precision::kFloat32, cpu);
    EXPECT_EQ(linear->forward(input).scalar_type(), torch::kFloat32);
  }
  // A scope inside another leaves the outer one on.
  {
    const AutocastScope outer(Precision::kBFloat16, cpu);
    { const AutocastScope inner(Precision::kBFloat16, cpu); }
    EXPECT_EQ(linear->forward(input).scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(linear->forward(input).scalar_type(), torch::kFloat32);
}

// Four classes told apart by which quarter of the image is bright.
std::pair<torch::Tensor, torch::Tensor> Quarters(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t side = testing::kTinyInputSize;
  torch::Tensor labels = torch::arange(n, torch::kInt64).remainder(4);
  torch::Tensor images = torch::randn({n, 3, side, side}) * 0.5;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t q = labels[i].item<int64_t>();
    images[i]
        .narrow(1, (q / 2) * (side / 2), side / 2)
        .narrow(2, (q % 2) * (side / 2), side / 2)
        .add_(1.5);
  }
  return {images, labels};
}

double TrainedAccuracy(Precision precision) {
  TempDir dir;
  TransferModel model(testing::WriteTinyBackbone(dir.path()), testing::TinyManifest(), 4, 1);
  TrainOptions options;
  options.strategy = Strategy::kFull;
  options.epochs = 6;
  options.optimizer = OptimizerKind::kAdam;
  options.learning_rate = 0.01;
  options.backbone_lr_scale = 1.0;
  options.precision = precision;
  Trainer trainer(model, options);
  auto [train_images, train_labels] = Quarters(128, 1);
  auto [val_images, val_labels] = Quarters(128, 2);
  TensorSource train(train_images, train_labels, 16, /*shuffle=*/true, 1);
  TensorSource val(val_images, val_labels, 32, /*shuffle=*/false, 1);
  class Quiet : public TrainObserver {
  } observer;
  const std::vector<EpochStats> epochs = trainer.Run(train, &val, observer).epochs;
  EXPECT_EQ(epochs.size(), 6u);
  return epochs.empty() ? 0 : epochs.back().val_accuracy;
}

// bf16 rounds activations to 8 bits of mantissa; on a task float32 learns
// well, it must learn as well within 5 points.
TEST(Bf16ParityTest, Bf16TrainingReachesFloat32sAccuracy) {
  const double fp32 = TrainedAccuracy(Precision::kFloat32);
  const double bf16 = TrainedAccuracy(Precision::kBFloat16);
  EXPECT_GT(fp32, 0.9);
  // The TorchScript classifier runs under the scope too.
  TempDir dir;
  TransferModel model(testing::WriteTinyBackbone(dir.path()), testing::TinyManifest(), 4, 1);
  const AutocastScope scope(Precision::kBFloat16, torch::Device(torch::kCPU));
  EXPECT_EQ(model.Forward(Quarters(4, 3).first).scalar_type(), torch::kBFloat16);
  EXPECT_GT(bf16, fp32 - 0.05) << "fp32 " << fp32 << ", bf16 " << bf16;
}

}  // namespace
}  // namespace tl::engine
