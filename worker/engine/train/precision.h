// Which precision a job's forward passes run in, and the autocast that
// applies it. bf16 autocast (weights and optimizer stay float32) is fast
// where the hardware has bf16 arithmetic: CUDA tensor cores, and CPUs with
// AVX512-BF16 or AMX, where oneDNN's bf16 convolutions run faster than
// float32 (2.0x for a ResNet-18 at 224 px on a 2-core AVX512-BF16 machine,
// docs/BENCHMARKS.md). Elsewhere autocast would emulate bf16 and lose time,
// so AUTO keeps float32 there.
#pragma once

#include <optional>
#include <string>

#include <torch/torch.h>

namespace tl::engine {

enum class Precision {
  kFloat32,
  kBFloat16,  // autocast to bfloat16; weights and optimizer stay float32
};

// What a job asks for: its spec's training.precision.
enum class PrecisionRequest { kAuto, kFloat32, kBFloat16 };

// The CPU's bf16 instructions (CPUID leaf 7) that oneDNN, which runs the
// CPU's convolutions and matrix products, may use.
struct CpuBf16Support {
  bool avx512_bf16 = false;
  bool amx_bf16 = false;
  // "<variable>=<cap>" where that cap hid bf16 instructions the CPU has;
  // empty otherwise.
  std::string hidden_by;
  bool any() const { return avx512_bf16 || amx_bf16; }
};

// oneDNN's instruction-set cap: the environment variable that set it and its value.
struct OneDnnIsaCap {
  std::string variable;
  std::string value;  // empty: no cap
};

// The cap oneDNN takes from ONEDNN_MAX_CPU_ISA, else DNNL_MAX_CPU_ISA (either
// may be null); an empty value counts as unset, as oneDNN counts it.
OneDnnIsaCap OneDnnIsaCapFrom(const char* onednn_max_cpu_isa, const char* dnnl_max_cpu_isa);

// What `cpu` leaves to oneDNN under `cap` (any case): below AVX512_CORE_BF16
// no bf16 instructions, below AVX512_CORE_AMX no AMX. An operator caps oneDNN
// to work around a kernel, or to match a fleet's oldest CPU. An empty or
// unknown cap (which oneDNN ignores too) changes nothing.
CpuBf16Support CapToOneDnnIsa(CpuBf16Support cpu, const OneDnnIsaCap& cap);

// A GPU's compute capability: bf16 tensor cores from 8.0 (Ampere) on.
struct CudaCapability {
  int major = 0;
  int minor = 0;
};

// What AUTO looks at: the CPU's instructions and, for a CUDA device, its
// compute capability (absent when the driver could not say).
struct Bf16Hardware {
  CpuBf16Support cpu;
  std::optional<CudaCapability> cuda;
};

// This CPU's, read once, under the process's oneDNN cap (OneDnnIsaCapFrom,
// CapToOneDnnIsa).
CpuBf16Support DetectCpuBf16();
// This CPU's, and `device`'s compute capability when it is a CUDA device
// (asked of the CUDA driver, loaded at run time: the engine also builds
// against CPU-only LibTorch, without CUDA's headers).
Bf16Hardware DetectBf16Hardware(const torch::Device& device);

struct PrecisionChoice {
  Precision precision = Precision::kFloat32;
  std::string reason;  // one line for people: what was asked and why this
};

// The rule, a pure function: FP32 and BF16 as asked; AUTO bf16 on a CUDA
// GPU of compute capability 8.0 or more (or one whose capability is
// unknown) and on a CPU with bf16 instructions; float32 on older GPUs, on
// other CPUs, where autocast would emulate bf16, and where a oneDNN cap hides
// bf16 instructions the CPU has (CpuBf16Support::hidden_by).
PrecisionChoice ChoosePrecision(PrecisionRequest request, const torch::Device& device,
                                const Bf16Hardware& hardware);

const char* PrecisionName(Precision precision);  // "FP32", "BF16"

// A request by the name command lines take: "auto", "fp32" or "bf16";
// throws EngineError(kInvalidArgument) for any other.
PrecisionRequest PrecisionRequestNamed(const std::string& name);

// bf16 autocast of the ops of `device`'s kind for its lifetime (nothing for
// float32), restoring what was there before. Cast weight copies are cached
// while autocast is on and dropped when the outermost scope ends.
class AutocastScope {
 public:
  AutocastScope(Precision precision, const torch::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool was_enabled_ = false;
  at::ScalarType was_type_ = at::kBFloat16;
};

}  // namespace tl::engine
