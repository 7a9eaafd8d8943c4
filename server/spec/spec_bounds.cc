#include "server/spec/spec_bounds.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/spec/spec_errors.h"

namespace tl::server {
namespace {

using ::tl::v1::JobSpec;

bool Above(double value, const SpecLimit& low, double end) {
  return low.open ? value > end : value >= end;
}

bool Below(double value, const SpecLimit& high, double end) {
  return high.open ? value < end : value <= end;
}

// "applies to the STEP lr_schedule only, not CONSTANT"
std::string OnlyUnderProblem(const SpecCondition& condition, const JobSpec& spec) {
  std::string problem = absl::StrCat("applies to ", condition.setting, " only");
  if (condition.instead) absl::StrAppend(&problem, ", not ", condition.instead(spec));
  return problem;
}

}  // namespace

absl::Status CheckInterval(const std::string& field, double value, bool integer,
                           const SpecLimit& low, const SpecLimit& high, const JobSpec& spec) {
  const double low_end = low.At(spec);
  const double high_end = high.At(spec);
  // Written so that NaN fails both comparisons and is refused.
  if (Above(value, low, low_end) && Below(value, high, high_end)) return absl::OkStatus();
  return OutsideInterval(field, NumberText(value, integer),
                         absl::StrCat(low.open ? "(" : "[", NumberText(low_end, integer), ", ",
                                      NumberText(high_end, integer), high.open ? ")" : "]"));
}

absl::Status CheckFieldBounds(const SpecField& field, const JobSpec& spec) {
  const double value = field.Get(spec);
  if (!field.unknown_value.empty() &&
      field.descriptor().enum_type()->FindValueByNumber(static_cast<int>(value)) == nullptr) {
    return Invalid(field.path, field.unknown_value);
  }
  if (!field.low || (field.zero_means_unset && value == 0)) return absl::OkStatus();
  if (field.positive_first && !(value > 0)) return Invalid(field.path, "must be positive");
  if (field.high) {
    return CheckInterval(field.path, value, field.IsInteger(), *field.low, *field.high, spec);
  }
  const double low_end = field.low->At(spec);
  if (Above(value, *field.low, low_end)) return absl::OkStatus();
  if (low_end == 0) {
    return Invalid(field.path, field.low->open ? "must be positive" : "must not be negative");
  }
  return Invalid(field.path, absl::StrCat("is ", NumberText(value, field.IsInteger()),
                                          "; it must be ", field.low->open ? "above " : "at least ",
                                          NumberText(low_end, field.IsInteger())));
}

absl::Status CheckSpecBounds(const JobSpec& spec) {
  for (const SpecField& field : SpecFields()) {
    if (field.applies && !field.applies(spec)) continue;
    if (field.only_under && !field.only_under->holds(spec)) {
      if (field.IsSet(spec)) return Invalid(field.path, OnlyUnderProblem(*field.only_under, spec));
      continue;
    }
    // Unset with presence: no value to bound (a field the worker sizes).
    if (field.HasPresence() && !field.IsSet(spec)) continue;
    TL_RETURN_IF_ERROR(CheckFieldBounds(field, spec));
  }
  return absl::OkStatus();
}

}  // namespace tl::server
