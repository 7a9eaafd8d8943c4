#include "server/spec/spec_cross_field_rules.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/spec/spec_bounds.h"
#include "server/spec/spec_errors.h"

namespace tl::server {
namespace {

using ::tl::v1::JobSpec;
using ::tl::v1::TrainingSpec;

// A class may weigh up to this many times an unnamed one.
constexpr double kMaxClassWeight = 1000;

// Nesterov's look-ahead is a step along the momentum.
absl::Status CheckNesterovHasMomentum(const JobSpec& spec) {
  if (spec.training().nesterov() && !(spec.training().momentum() > 0)) {
    return Invalid("training.nesterov", "needs training.momentum above 0");
  }
  return absl::OkStatus();
}

// Weights by class folder name: each a folder's name and in bounds, not all 0,
// and not beside balanced weights. Whether each names a class of the training
// set is for spec_files.h.
absl::Status CheckClassWeights(const JobSpec& spec) {
  const TrainingSpec& training = spec.training();
  if (training.balanced_class_weights() && !training.class_weights().empty()) {
    return Invalid("training.balanced_class_weights",
                   "and training.class_weights cannot both be set");
  }
  bool any_positive = training.class_weights().empty();
  for (const auto& [name, weight] : training.class_weights()) {
    const std::string field = absl::StrCat("training.class_weights[\"", name, "\"]");
    if (name.empty() || name.find('/') != std::string::npos) {
      return Invalid(field, "is not a class folder name");
    }
    TL_RETURN_IF_ERROR(CheckInterval(field, weight, /*integer=*/false, 0, kMaxClassWeight, spec));
    any_positive = any_positive || weight > 0;
  }
  if (!any_positive) return Invalid("training.class_weights", "are all 0");
  return absl::OkStatus();
}

absl::Status CheckDevice(const JobSpec& spec) {
  const std::string& device = spec.resources().device();
  if (!device.empty() && device != "cpu" && device != "cuda") {
    return Invalid("resources.device",
                   absl::StrCat("is \"", device, "\"; it must be \"cpu\", \"cuda\" or empty"));
  }
  return absl::OkStatus();
}

// A job that asks for GPUs cannot also ask for a CPU worker.
absl::Status CheckGpuRequestsWithDevice(const JobSpec& spec) {
  const tl::v1::ResourceRequest& resources = spec.resources();
  if (resources.device() != "cpu") return absl::OkStatus();
  if (resources.gpu_count() > 0) {
    return Invalid("resources.gpu_count", "asks for GPUs while resources.device is \"cpu\"");
  }
  if (resources.min_gpu_memory_bytes() > 0) {
    return Invalid("resources.min_gpu_memory_bytes",
                   "asks for GPU memory while resources.device is \"cpu\"");
  }
  return absl::OkStatus();
}

// Data-parallel jobs: every replica needs images of each batch, and the
// strategies that decide or evaluate on one worker's view cannot be split.
absl::Status CheckReplicas(const JobSpec& spec) {
  const int replicas = spec.resources().replicas();
  if (replicas <= 1) return absl::OkStatus();
  if (spec.has_evaluate()) {
    return Invalid("resources.replicas", "must be 0 or 1 for an evaluation job");
  }
  if (spec.training().strategy() == TrainingSpec::AUTO) {
    return Invalid("resources.replicas",
                   "must be 0 or 1 with the AUTO strategy: choose FEATURE_EXTRACTION, "
                   "FINE_TUNE or FULL");
  }
  // A batch left to the data is sized at least `replicas` on the worker.
  if (spec.training().has_batch_size() && spec.training().batch_size() < replicas) {
    return Invalid("training.batch_size",
                   absl::StrCat("is ", spec.training().batch_size(),
                                ", fewer than resources.replicas (", replicas,
                                "): it is the batch of all replicas together"));
  }
  return absl::OkStatus();
}

// Early stopping watches validation metrics, so a training job that uses it
// needs validation images; a slice left to the data is then always held out.
absl::Status CheckEarlyStoppingHasValidation(const JobSpec& spec) {
  const tl::v1::DatasetSpec& dataset = spec.dataset();
  if (spec.has_evaluate() || !spec.training().has_early_stopping() ||
      !dataset.val_dir().empty() || !dataset.val_csv().empty() ||
      !dataset.has_val_fraction() || dataset.val_fraction() > 0) {
    return absl::OkStatus();
  }
  return Invalid("training.early_stopping",
                 "needs validation images: set dataset.val_dir or dataset.val_csv, or a "
                 "dataset.val_fraction above 0");
}

}  // namespace

absl::Status CheckCrossFieldRules(const JobSpec& spec) {
  for (absl::Status (*rule)(const JobSpec&) :
       {CheckNesterovHasMomentum, CheckClassWeights, CheckDevice, CheckGpuRequestsWithDevice,
        CheckReplicas, CheckEarlyStoppingHasValidation}) {
    TL_RETURN_IF_ERROR(rule(spec));
  }
  return absl::OkStatus();
}

}  // namespace tl::server
