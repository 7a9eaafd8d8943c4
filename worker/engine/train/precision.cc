#include "train/precision.h"

#include <ATen/autocast_mode.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace tl::engine {
namespace {

// The autocast API changed names in LibTorch 2.4; both spellings are kept
// so that the engine builds against Debian's 1.13 and a CUDA machine's 2.x.
void SetAutocast(bool cuda, bool enabled) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  const at::DeviceType type = cuda ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_enabled(type, enabled);
  if (enabled) at::autocast::set_autocast_dtype(type, at::kBFloat16);
#else
  if (cuda) {
    at::autocast::set_enabled(enabled);
    if (enabled) at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    if (enabled) at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  }
#endif
}

CpuBf16Support ReadCpuid() {
  CpuBf16Support support;
#if defined(__x86_64__) || defined(__i386__)
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return support;
  // Leaf 7 sub-leaf 0: EDX bit 22 is AMX-BF16. Sub-leaf 1: EAX bit 5 is AVX512-BF16.
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  support.amx_bf16 = (edx >> 22) & 1u;
  const unsigned int max_subleaf = eax;
  if (max_subleaf >= 1) {
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    support.avx512_bf16 = (eax >> 5) & 1u;
  }
#endif
  return support;
}

}  // namespace

CpuBf16Support DetectCpuBf16() {
  static const CpuBf16Support support = ReadCpuid();
  return support;
}

PrecisionChoice ChoosePrecision(PrecisionRequest request, const torch::Device& device,
                                const CpuBf16Support& cpu) {
  switch (request) {
    case PrecisionRequest::kFloat32:
      return {Precision::kFloat32, "FP32, as the spec asks"};
    case PrecisionRequest::kBFloat16:
      return {Precision::kBFloat16, "BF16, as the spec asks"};
    case PrecisionRequest::kAuto:
      break;
  }
  if (device.is_cuda()) {
    return {Precision::kBFloat16, "AUTO: BF16 autocast on CUDA"};
  }
  if (cpu.any()) {
    return {Precision::kBFloat16, std::string("AUTO: BF16 autocast, the CPU has ") +
                                      (cpu.amx_bf16 ? "AMX-BF16" : "AVX512-BF16")};
  }
  return {Precision::kFloat32,
          "AUTO: FP32, the CPU has no bf16 instructions (autocast would emulate them, slower)"};
}

const char* PrecisionName(Precision precision) {
  return precision == Precision::kBFloat16 ? "BF16" : "FP32";
}

AutocastScope::AutocastScope(Precision precision, const torch::Device& device) {
  if (precision != Precision::kBFloat16) return;
  cuda_ = device.is_cuda();
  cpu_ = !cuda_;
  SetAutocast(cuda_, true);
}

AutocastScope::~AutocastScope() {
  if (!cuda_ && !cpu_) return;
  SetAutocast(cuda_, false);
  at::autocast::clear_cache();
}

}  // namespace tl::engine
