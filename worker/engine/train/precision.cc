#include "train/precision.h"

#include <ATen/autocast_mode.h>

#include "base/errors.h"

#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <set>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace tl::engine {
namespace {

// The autocast API changed names in LibTorch 2.4; both spellings are kept
// so that the engine builds against Debian's 1.13 and a CUDA machine's 2.x.
bool AutocastEnabled(bool cuda) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return at::autocast::is_autocast_enabled(cuda ? at::kCUDA : at::kCPU);
#else
  return cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

at::ScalarType AutocastType(bool cuda) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return at::autocast::get_autocast_dtype(cuda ? at::kCUDA : at::kCPU);
#else
  return cuda ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

void SetAutocast(bool cuda, bool enabled, at::ScalarType type) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  const at::DeviceType device = cuda ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_enabled(device, enabled);
  at::autocast::set_autocast_dtype(device, type);
#else
  if (cuda) {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(type);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(type);
  }
#endif
}

CpuBf16Support ReadCpuid() {
  CpuBf16Support support;
#if defined(__x86_64__) || defined(__i386__)
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return support;
  // The instructions count only where the OS saves their registers: CPUID.1
  // ECX bit 27 (OSXSAVE), then XCR0's opmask and ZMM bits (5-7) for AVX-512
  // and its tile bits (17-18) for AMX.
  __cpuid(1, eax, ebx, ecx, edx);
  if (((ecx >> 27) & 1u) == 0) return support;
  unsigned int xcr0_low = 0, xcr0_high = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
  const bool avx512_state = (xcr0_low & 0xE6u) == 0xE6u;
  const bool amx_state = (xcr0_low & 0x60000u) == 0x60000u;
  // Leaf 7 sub-leaf 0: EDX bit 22 is AMX-BF16. Sub-leaf 1: EAX bit 5 is AVX512-BF16.
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  support.amx_bf16 = amx_state && ((edx >> 22) & 1u);
  const unsigned int max_subleaf = eax;
  if (max_subleaf >= 1) {
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    support.avx512_bf16 = avx512_state && ((eax >> 5) & 1u);
  }
#endif
  return support;
}

// The CUDA driver API's, declared here rather than taken from cuda.h.
constexpr int kCudaSuccess = 0;
constexpr int kComputeCapabilityMajor = 75;  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
constexpr int kComputeCapabilityMinor = 76;  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR

std::optional<CudaCapability> ReadCudaCapability(int ordinal) {
  // Kept loaded: a CUDA LibTorch has loaded it already, and it is needed for as long.
  void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (driver == nullptr) return std::nullopt;
  using Init = int (*)(unsigned int);
  using DeviceGet = int (*)(int*, int);
  using DeviceGetAttribute = int (*)(int*, int, int);
  const auto init = reinterpret_cast<Init>(dlsym(driver, "cuInit"));
  const auto device_get = reinterpret_cast<DeviceGet>(dlsym(driver, "cuDeviceGet"));
  const auto attribute = reinterpret_cast<DeviceGetAttribute>(dlsym(driver, "cuDeviceGetAttribute"));
  int device = 0;
  CudaCapability capability;
  if (init == nullptr || device_get == nullptr || attribute == nullptr || init(0) != kCudaSuccess ||
      device_get(&device, ordinal) != kCudaSuccess ||
      attribute(&capability.major, kComputeCapabilityMajor, device) != kCudaSuccess ||
      attribute(&capability.minor, kComputeCapabilityMinor, device) != kCudaSuccess) {
    return std::nullopt;
  }
  return capability;
}

std::string CapabilityText(const CudaCapability& capability) {
  return std::to_string(capability.major) + "." + std::to_string(capability.minor);
}

}  // namespace

Bf16Hardware DetectBf16Hardware(const torch::Device& device) {
  Bf16Hardware hardware;
  hardware.cpu = DetectCpuBf16();
  if (device.is_cuda()) hardware.cuda = ReadCudaCapability(device.has_index() ? device.index() : 0);
  return hardware;
}

OneDnnIsaCap OneDnnIsaCapFrom(const char* onednn_max_cpu_isa, const char* dnnl_max_cpu_isa) {
  if (onednn_max_cpu_isa != nullptr && *onednn_max_cpu_isa != '\0') {
    return {"ONEDNN_MAX_CPU_ISA", onednn_max_cpu_isa};
  }
  if (dnnl_max_cpu_isa != nullptr && *dnnl_max_cpu_isa != '\0') {
    return {"DNNL_MAX_CPU_ISA", dnnl_max_cpu_isa};
  }
  return {};
}

CpuBf16Support CapToOneDnnIsa(CpuBf16Support cpu, const OneDnnIsaCap& cap) {
  std::string name = cap.value;
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  // oneDNN's cap names (old and new spellings), by what they allow.
  static const std::set<std::string> kNoBf16 = {"SSE41",       "AVX",         "AVX2",
                                                "AVX2_VNNI",   "AVX2_VNNI_2", "AVX512_CORE",
                                                "AVX512_CORE_VNNI"};
  static const std::set<std::string> kNoAmx = {"AVX512_CORE_BF16", "AVX512_CORE_FP16",
                                               "AVX10_1_512"};
  const bool avx512_bf16 = cpu.avx512_bf16 && kNoBf16.count(name) == 0;
  const bool amx_bf16 = cpu.amx_bf16 && kNoBf16.count(name) == 0 && kNoAmx.count(name) == 0;
  if (avx512_bf16 != cpu.avx512_bf16 || amx_bf16 != cpu.amx_bf16) {
    cpu.hidden_by = cap.variable + "=" + cap.value;
  }
  cpu.avx512_bf16 = avx512_bf16;
  cpu.amx_bf16 = amx_bf16;
  return cpu;
}

CpuBf16Support DetectCpuBf16() {
  // oneDNN reads its cap once too.
  static const CpuBf16Support support = CapToOneDnnIsa(
      ReadCpuid(),
      OneDnnIsaCapFrom(std::getenv("ONEDNN_MAX_CPU_ISA"), std::getenv("DNNL_MAX_CPU_ISA")));
  return support;
}

PrecisionChoice ChoosePrecision(PrecisionRequest request, const torch::Device& device,
                                const Bf16Hardware& hardware) {
  switch (request) {
    case PrecisionRequest::kFloat32:
      return {Precision::kFloat32, "FP32, as the spec asks"};
    case PrecisionRequest::kBFloat16:
      return {Precision::kBFloat16, "BF16, as the spec asks"};
    case PrecisionRequest::kAuto:
      break;
  }
  if (device.is_cuda()) {
    if (!hardware.cuda) {
      return {Precision::kBFloat16,
              "AUTO: BF16 autocast on CUDA (the driver did not say the compute capability)"};
    }
    if (hardware.cuda->major < 8) {
      return {Precision::kFloat32, "AUTO: FP32, this GPU (compute capability " +
                                       CapabilityText(*hardware.cuda) +
                                       ") has no bf16 tensor cores (autocast would emulate them)"};
    }
    return {Precision::kBFloat16,
            "AUTO: BF16 autocast on CUDA (compute capability " + CapabilityText(*hardware.cuda) + ")"};
  }
  // Below the CPU's own instructions oneDNN's bf16 kernels lost to float32 in both caps
  // measured on an AMX CPU: 0.34x with no bf16 instructions left, 0.82x with AVX512-BF16 but
  // no AMX (a CPU that has AVX512-BF16 alone gained 1.96x; docs/BENCHMARKS.md).
  if (!hardware.cpu.hidden_by.empty()) {
    return {Precision::kFloat32, "AUTO: FP32, " + hardware.cpu.hidden_by +
                                     " keeps oneDNN below the CPU's bf16 instructions (its bf16 "
                                     "kernels there lose to float32)"};
  }
  if (hardware.cpu.any()) {
    return {Precision::kBFloat16, std::string("AUTO: BF16 autocast, the CPU has ") +
                                      (hardware.cpu.amx_bf16 ? "AMX-BF16" : "AVX512-BF16")};
  }
  return {Precision::kFloat32,
          "AUTO: FP32, the CPU has no bf16 instructions (autocast would emulate them, slower)"};
}

const char* PrecisionName(Precision precision) {
  return precision == Precision::kBFloat16 ? "BF16" : "FP32";
}

PrecisionRequest PrecisionRequestNamed(const std::string& name) {
  if (name == "auto") return PrecisionRequest::kAuto;
  if (name == "fp32") return PrecisionRequest::kFloat32;
  if (name == "bf16") return PrecisionRequest::kBFloat16;
  throw InvalidArgument("precision \"" + name + "\" is not auto, fp32 or bf16");
}

AutocastScope::AutocastScope(Precision precision, const torch::Device& device) {
  if (precision != Precision::kBFloat16) return;
  active_ = true;
  cuda_ = device.is_cuda();
  // A scope inside another leaves the outer one as it found it.
  was_enabled_ = AutocastEnabled(cuda_);
  was_type_ = AutocastType(cuda_);
  SetAutocast(cuda_, true, at::kBFloat16);
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  SetAutocast(cuda_, was_enabled_, was_type_);
  if (!was_enabled_) at::autocast::clear_cache();
}

}  // namespace tl::engine
