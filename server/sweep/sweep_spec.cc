#include "server/sweep/sweep_spec.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/spec/caller_text.h"
#include "server/spec/spec_errors.h"
#include "server/spec/spec_validation.h"
#include "server/sweep/objective.h"
#include "server/sweep/sweep_limits.h"

namespace tl::server {
namespace {

using ::tl::v1::JobSpec;
using ::tl::v1::SweepSpec;

constexpr char kEpochsPath[] = "training.epochs";

absl::Status CheckCount(const std::string& field, int value, int low, int high) {
  if (value >= low && value <= high) return absl::OkStatus();
  return OutsideInterval(field, std::to_string(value),
                         absl::StrCat("[", low, ", ", high, "]"));
}

// Trials compare on validation figures, so every trial needs validation images.
absl::Status EnsureValidation(JobSpec& base) {
  const auto& dataset = base.dataset();
  if (!dataset.val_dir().empty() || !dataset.val_csv().empty()) return absl::OkStatus();
  if (!dataset.has_val_fraction()) {
    base.mutable_dataset()->set_val_fraction(kSweepValFraction);
    return absl::OkStatus();
  }
  if (dataset.val_fraction() > 0) return absl::OkStatus();
  return Invalid("base.dataset.val_fraction",
                 "is 0, but trials are compared on validation images: hold out a share of the "
                 "training images, or give dataset.val_dir or dataset.val_csv");
}

// The refit trains on the share of training images the trials held out; a
// separate validation set leaves it nothing to add.
absl::Status FillRefit(SweepSpec& spec) {
  const auto& dataset = spec.base().dataset();
  const bool holds_out_training = dataset.val_dir().empty() && dataset.val_csv().empty();
  if (!spec.has_refit()) {
    spec.set_refit(holds_out_training);
    return absl::OkStatus();
  }
  if (spec.refit() && !holds_out_training) {
    return Invalid("refit",
                   absl::StrCat("is true, but base names dataset.",
                                dataset.val_dir().empty() ? "val_csv" : "val_dir",
                                ": the trials already train on every training image"));
  }
  return absl::OkStatus();
}

bool AllListed(const std::vector<SpaceParameter>& space) {
  return std::none_of(space.begin(), space.end(),
                      [](const SpaceParameter& parameter) { return parameter.IsRange(); });
}

absl::Status FillTrialCounts(SweepSpec& spec, const std::vector<SpaceParameter>& space) {
  if (spec.method() == SweepSpec::GRID) {
    for (size_t i = 0; i < space.size(); ++i) {
      if (space[i].IsRange()) {
        return Invalid(absl::StrCat("space[", i, "]"),
                       "gives a range, but GRID needs listed values (RANDOM and ASHA take ranges)");
      }
    }
    const int64_t grid = GridSize(space);
    if (grid > kMaxSweepTrials) {
      return Invalid("space", absl::StrCat("makes a grid of ", grid, " points; a sweep has at most ",
                                           kMaxSweepTrials, " trials"));
    }
    if (spec.has_max_trials()) {
      TL_RETURN_IF_ERROR(CheckCount("max_trials", spec.max_trials(), 1, kMaxSweepTrials));
      if (spec.max_trials() < grid) {
        return Invalid("max_trials",
                       absl::StrCat("is ", spec.max_trials(), ", below the grid's ", grid,
                                    " points; GRID tries every point once (leave it unset)"));
      }
    }
    // A larger max_trials would only repeat points.
    spec.set_max_trials(static_cast<int>(grid));
  } else {
    if (!spec.has_max_trials()) spec.set_max_trials(kDefaultSweepTrials);
    TL_RETURN_IF_ERROR(CheckCount("max_trials", spec.max_trials(), 1, kMaxSweepTrials));
  }
  if (!spec.has_max_parallel_trials()) spec.set_max_parallel_trials(kDefaultParallelTrials);
  TL_RETURN_IF_ERROR(
      CheckCount("max_parallel_trials", spec.max_parallel_trials(), 1, kMaxParallelTrials));
  if (!spec.has_max_failed_trials()) {
    spec.set_max_failed_trials(std::max(1, spec.max_trials() / 4));
  }
  return CheckCount("max_failed_trials", spec.max_failed_trials(), 0, spec.max_trials());
}

absl::Status FillObjective(SweepSpec& spec) {
  SweepObjective& objective = *spec.mutable_objective();
  if (!SweepObjective::Metric_IsValid(objective.metric())) {
    return Invalid("objective.metric", "is not a known metric");
  }
  if (!SweepObjective::Direction_IsValid(objective.direction())) {
    return Invalid("objective.direction", "is not MAXIMIZE or MINIMIZE");
  }
  if (objective.metric() == SweepObjective::METRIC_UNSPECIFIED) {
    objective.set_metric(SweepObjective::VAL_ACCURACY);
  }
  if (objective.direction() == SweepObjective::DIRECTION_UNSPECIFIED) {
    objective.set_direction(DefaultDirection(objective.metric()));
  }
  return absl::OkStatus();
}

absl::Status FillAsha(SweepSpec& spec, const std::vector<SpaceParameter>& space) {
  if (spec.method() != SweepSpec::ASHA) {
    if (spec.has_asha()) return Invalid("asha", "applies to the ASHA method only");
    return absl::OkStatus();
  }
  SweepSpec::Asha& asha = *spec.mutable_asha();
  if (!asha.has_min_epochs()) asha.set_min_epochs(kDefaultAshaMinEpochs);
  if (!asha.has_reduction_factor()) asha.set_reduction_factor(kDefaultReductionFactor);
  TL_RETURN_IF_ERROR(CheckCount("asha.min_epochs", asha.min_epochs(), 1, kMaxAshaMinEpochs));
  TL_RETURN_IF_ERROR(CheckCount("asha.reduction_factor", asha.reduction_factor(),
                                kMinReductionFactor, kMaxReductionFactor));
  const int epochs = MaxTrialEpochs(spec, space);
  if (epochs == 0) {
    return Invalid("base.training.epochs",
                   "is unset, but ASHA's rungs are epochs: set it, or search training.epochs");
  }
  if (asha.min_epochs() >= epochs) {
    return Invalid("asha.min_epochs",
                   absl::StrCat("is ", asha.min_epochs(), "; it must be below the trials' ", epochs,
                                " epochs, or ASHA has no rung to stop a trial at"));
  }
  return absl::OkStatus();
}

// The space parameter whose field a job spec error names first, if any.
int ParameterNamedBy(const std::vector<SpaceParameter>& space, absl::string_view message) {
  for (size_t p = 0; p < space.size(); ++p) {
    const std::string& path = space[p].field->path;
    if (absl::StartsWith(message, path) &&
        (message.size() == path.size() || message[path.size()] == ' ')) {
      return static_cast<int>(p);
    }
  }
  return -1;
}

// A trial's job spec failed: name the searched parameter at fault, else the base's field.
absl::Status TrialError(const std::vector<SpaceParameter>& space, int index,
                        const std::vector<double>& values, const absl::Status& error) {
  const std::string trial =
      absl::StrCat("trial ", index, " (", DescribeValues(space, values), ")");
  const int parameter = ParameterNamedBy(space, error.message());
  if (parameter >= 0) {
    return absl::Status(error.code(), absl::StrCat("space[", parameter, "] gives ", trial,
                                                   " a spec that fails: ", error.message()));
  }
  return absl::Status(error.code(),
                      absl::StrCat("base.", error.message(), " (in ", trial, ")"));
}

// "applies to the FINE_TUNE and AUTO strategies only"
std::string WhereItApplies(const SpecField& field) {
  if (field.only_under) return absl::StrCat("applies to ", field.only_under->setting, " only");
  return "applies only where another field is set";
}

}  // namespace

int MaxTrialEpochs(const SweepSpec& spec, const std::vector<SpaceParameter>& space) {
  for (const SpaceParameter& parameter : space) {
    if (parameter.field->path != kEpochsPath) continue;
    if (parameter.IsRange()) return static_cast<int>(parameter.max);
    return static_cast<int>(*std::max_element(parameter.values.begin(), parameter.values.end()));
  }
  return spec.base().training().has_epochs() ? spec.base().training().epochs() : 0;
}

JobSpec TrialSpec(const SweepSpec& spec, const std::vector<SpaceParameter>& space, int index,
                  google::protobuf::Struct* applied) {
  const std::vector<double> values = TrialValues(space, spec.method(), spec.seed(), index);
  JobSpec trial = TrialJobSpec(spec.base(), space, values, applied);
  trial.set_name(absl::StrCat(spec.name().empty() ? "sweep" : spec.name(), "-trial-", index));
  trial.set_priority(spec.priority());
  return trial;
}

JobSpec RefitSpec(const SweepSpec& spec, const std::vector<SpaceParameter>& space, int best_index,
                  const tl::v1::JobResult& best_result) {
  JobSpec refit = TrialSpec(spec, space, best_index, nullptr);
  refit.set_name(absl::StrCat(spec.name().empty() ? "sweep" : spec.name(), "-refit"));
  refit.mutable_dataset()->set_val_fraction(0);
  tl::v1::TrainingSpec& training = *refit.mutable_training();
  // AUTO trains what its probe chose; probing again on other images could choose otherwise.
  if (training.strategy() == tl::v1::TrainingSpec::AUTO && best_result.has_auto_strategy() &&
      best_result.auto_strategy().chosen() != tl::v1::TrainingSpec::STRATEGY_UNSPECIFIED) {
    training.set_strategy(best_result.auto_strategy().chosen());
    // And at the rate it chose, where the trial left the rate to the probe.
    if (!training.has_learning_rate() && best_result.auto_strategy().chosen_learning_rate() > 0) {
      training.set_learning_rate(best_result.auto_strategy().chosen_learning_rate());
    }
    if (training.strategy() != tl::v1::TrainingSpec::FINE_TUNE) {
      // Fields only a fine-tune takes.
      training.clear_unfreeze_groups();
      training.clear_head_only_epochs();
      training.clear_unfreeze_every_epochs();
    }
  }
  if (training.has_early_stopping()) {
    // Nothing is held out to stop on: train as long as the trial's exported weights did, and
    // at least as long as its warmup and head-only epochs need.
    training.clear_early_stopping();
    if (best_result.best_epoch() > 0) {
      training.set_epochs(std::max({best_result.best_epoch(), training.warmup_epochs(),
                                    training.head_only_epochs() + 1}));
    }
  }
  return refit;
}

absl::StatusOr<SweepSpec> ValidateSweepSpec(const SweepSpec& submitted,
                                            const SpecContext& context) {
  SweepSpec spec = submitted;
  spec.DiscardUnknownFields();
  if (spec.ByteSizeLong() > kMaxSpecBytes) {
    return Invalid("spec", absl::StrCat("is ", spec.ByteSizeLong(), " bytes; at most ",
                                        kMaxSpecBytes, " are allowed"));
  }
  TL_RETURN_IF_ERROR(CheckCallerText("name", spec.name(),
                                     kMaxJobNameCharacters - kTrialNameSuffixCharacters));
  if (spec.base().priority() != 0) {
    return Invalid("base.priority",
                   "is set, but every trial takes the sweep's priority: set priority instead");
  }
  if (spec.base().has_evaluate()) {
    return Invalid("base.evaluate",
                   "is set, but a sweep's trials train (an evaluation has no validation figures "
                   "to compare)");
  }
  TL_RETURN_IF_ERROR(EnsureValidation(*spec.mutable_base()));
  TL_RETURN_IF_ERROR(FillRefit(spec));
  if (!SweepSpec::Method_IsValid(spec.method())) {
    return Invalid("method", "is not a known method");
  }
  TL_ASSIGN_OR_RETURN(const std::vector<SpaceParameter> space, ResolveSpace(spec));
  if (spec.method() == SweepSpec::METHOD_UNSPECIFIED) {
    spec.set_method(AllListed(space) ? SweepSpec::GRID : SweepSpec::RANDOM);
  }
  TL_RETURN_IF_ERROR(FillTrialCounts(spec, space));
  if (spec.method() != SweepSpec::GRID && !spec.has_seed()) spec.set_seed(kDefaultSweepSeed);
  TL_RETURN_IF_ERROR(FillObjective(spec));
  TL_RETURN_IF_ERROR(FillAsha(spec, space));

  // Every trial, as SubmitJob would see it: files once, numbers for each.
  std::vector<bool> ever_applied(space.size(), false);
  for (int index = 0; index < spec.max_trials(); ++index) {
    google::protobuf::Struct applied;
    const JobSpec trial = TrialSpec(spec, space, index, &applied);
    absl::StatusOr<JobSpec> checked =
        index == 0 ? ValidateJobSpec(trial, context) : ValidateJobSpecNumbers(trial);
    if (!checked.ok()) {
      return TrialError(space, index, TrialValues(space, spec.method(), spec.seed(), index),
                        checked.status());
    }
    if (index == 0 && spec.base().backbone().has_from_job()) {
      // A sweep's id resolved to the job that is its result now: every trial and the refit
      // start from that one job, whatever that sweep does later.
      spec.mutable_base()->mutable_backbone()->set_from_job(checked->backbone().from_job());
    }
    for (size_t p = 0; p < space.size(); ++p) {
      if (applied.fields().count(space[p].field->path) > 0) ever_applied[p] = true;
    }
    if (spec.refit()) {
      const absl::StatusOr<JobSpec> refit =
          ValidateJobSpecNumbers(RefitSpec(spec, space, index, tl::v1::JobResult()));
      if (!refit.ok()) {
        return TrialError(space, index, TrialValues(space, spec.method(), spec.seed(), index),
                          absl::Status(refit.status().code(),
                                       absl::StrCat(refit.status().message(), " (its refit)")));
      }
    }
  }
  // A field no trial sets (unfreeze_groups where every trial is FULL) would search nothing.
  for (size_t p = 0; p < space.size(); ++p) {
    if (ever_applied[p]) continue;
    return Invalid(absl::StrCat("space[", p, "].field"),
                   absl::StrCat("is ", space[p].field->path, ", which ",
                                WhereItApplies(*space[p].field),
                                "; no trial of this base spec and space has that setting"));
  }
  return spec;
}

}  // namespace tl::server
