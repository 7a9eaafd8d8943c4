#include "server/sweep/search_space.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "server/spec/spec_bounds.h"
#include "server/spec/spec_defaults.h"
#include "server/spec/spec_errors.h"
#include "server/sweep/sweep_limits.h"

namespace tl::server {
namespace {

using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::Value;
using ::tl::v1::JobSpec;
using ::tl::v1::SearchParameter;
using ::tl::v1::SweepSpec;

bool IsSearchable(const SpecField& field) {
  return absl::StartsWith(field.path, "training.") ||
         absl::StartsWith(field.path, "preprocessing.");
}

const SpecField* FindRow(const std::string& path) {
  for (const SpecField& field : SpecFields()) {
    if (field.path == path) return &field;
  }
  return nullptr;
}

bool IsBool(const SpecField& field) {
  return field.descriptor().cpp_type() == FieldDescriptor::CPPTYPE_BOOL;
}

bool IsEnum(const SpecField& field) {
  return field.descriptor().cpp_type() == FieldDescriptor::CPPTYPE_ENUM;
}

// "FEATURE_EXTRACTION, FINE_TUNE, FULL, AUTO": the names a value may take (0 means unset).
std::string EnumNames(const SpecField& field) {
  std::vector<std::string> names;
  const auto* type = field.descriptor().enum_type();
  for (int i = 0; i < type->value_count(); ++i) {
    if (type->value(i)->number() != 0) names.push_back(type->value(i)->name());
  }
  return absl::StrJoin(names, ", ");
}

// A number the field's C++ type holds exactly: Set casts, and a cast out of range is undefined.
absl::Status CheckRepresentable(const std::string& where, const SpecField& field, double value) {
  if (!std::isfinite(value)) return Invalid(where, "must be a finite number");
  if (!field.IsInteger()) return absl::OkStatus();
  if (value != std::floor(value)) {
    return Invalid(where, absl::StrCat("is ", value, "; ", field.path, " takes whole numbers"));
  }
  double low = std::numeric_limits<int32_t>::min();
  double high = std::numeric_limits<int32_t>::max();
  if (field.descriptor().cpp_type() == FieldDescriptor::CPPTYPE_UINT64) {
    low = 0;
    high = 9007199254740992.0;  // 2^53: every integer up to it is exact in a double
  }
  if (value < low || value > high) {
    return Invalid(where, absl::StrCat("is ", NumberText(value, true), "; ", field.path,
                                       " holds ", NumberText(low, true), " to ",
                                       NumberText(high, true)));
  }
  return absl::OkStatus();
}

// The value a listed JSON value means for the field.
absl::StatusOr<double> ListedNumber(const std::string& where, const SpecField& field,
                                    const Value& value) {
  if (IsBool(field)) {
    if (value.kind_case() != Value::kBoolValue) {
      return Invalid(where, absl::StrCat("must be true or false: ", field.path, " is a bool"));
    }
    return value.bool_value() ? 1.0 : 0.0;
  }
  if (IsEnum(field)) {
    const auto* named = value.kind_case() == Value::kStringValue
                            ? field.descriptor().enum_type()->FindValueByName(value.string_value())
                            : nullptr;
    if (named == nullptr || named->number() == 0) {
      const std::string given =
          value.kind_case() == Value::kStringValue ? absl::StrCat("\"", value.string_value(), "\"")
                                                   : "a value";
      return Invalid(where, absl::StrCat("is ", given, "; ", field.path, " takes one of ",
                                         EnumNames(field)));
    }
    return static_cast<double>(named->number());
  }
  if (value.kind_case() != Value::kNumberValue) {
    return Invalid(where, absl::StrCat("must be a number: ", field.path, " is numeric"));
  }
  TL_RETURN_IF_ERROR(CheckRepresentable(where, field, value.number_value()));
  return value.number_value();
}

// The field's own bounds for one value, read against the base spec (defaults filled in).
absl::Status CheckValueBounds(const std::string& where, const SpecField& field,
                              const JobSpec& filled_base, double value) {
  JobSpec probe = filled_base;
  field.Set(probe, value);
  const absl::Status bounds = CheckFieldBounds(field, probe);
  if (bounds.ok()) return bounds;
  return Invalid(where, absl::StrCat("is out of bounds: ", bounds.message()));
}

absl::StatusOr<SpaceParameter> ResolveParameter(const std::string& where,
                                                const SearchParameter& given,
                                                const JobSpec& filled_base) {
  if (given.field().empty()) return Invalid(where + ".field", "is empty");
  const SpecField* field = FindRow(given.field());
  if (field == nullptr || !IsSearchable(*field)) {
    return Invalid(where + ".field",
                   absl::StrCat("\"", given.field(),
                                "\" is not a field a sweep can search (the numeric, bool and enum "
                                "fields of training and preprocessing, in proto names such as "
                                "training.learning_rate)"));
  }
  SpaceParameter parameter;
  parameter.field = field;
  const bool listed = given.has_values() && given.values().values_size() > 0;
  const bool ranged = given.has_min() || given.has_max();
  if (given.has_values() && !listed && !ranged) return Invalid(where + ".values", "is empty");
  if (listed && ranged) {
    return Invalid(where, "lists values and gives a range (min, max); it takes one or the other");
  }
  if (!listed && !ranged) return Invalid(where, "needs values or a range (min and max)");
  if (!SearchParameter::Scale_IsValid(given.scale())) {
    return Invalid(where + ".scale", "is not a known scale");
  }
  if (listed) {
    if (given.scale() != SearchParameter::SCALE_UNSPECIFIED) {
      return Invalid(where + ".scale", "applies to ranges only, not to listed values");
    }
    if (given.values().values_size() > kMaxListedValues) {
      return Invalid(where + ".values", absl::StrCat("lists ", given.values().values_size(),
                                                     " values; at most ", kMaxListedValues,
                                                     " are allowed"));
    }
    for (int j = 0; j < given.values().values_size(); ++j) {
      const std::string at = absl::StrCat(where, ".values[", j, "]");
      TL_ASSIGN_OR_RETURN(const double value, ListedNumber(at, *field, given.values().values(j)));
      TL_RETURN_IF_ERROR(CheckValueBounds(at, *field, filled_base, value));
      parameter.values.push_back(value);
    }
    return parameter;
  }
  if (IsBool(*field) || IsEnum(*field)) {
    return Invalid(where, absl::StrCat("gives a range, but ", field->path, " is ",
                                       IsBool(*field) ? "a bool" : "an enum",
                                       ": list its values instead"));
  }
  if (!given.has_min()) return Invalid(where + ".min", "is missing: a range needs min and max");
  if (!given.has_max()) return Invalid(where + ".max", "is missing: a range needs min and max");
  TL_RETURN_IF_ERROR(CheckRepresentable(where + ".min", *field, given.min()));
  TL_RETURN_IF_ERROR(CheckRepresentable(where + ".max", *field, given.max()));
  if (given.min() > given.max()) {
    return Invalid(where + ".min", absl::StrCat("is ", given.min(), ", above max (", given.max(),
                                                ")"));
  }
  parameter.log = given.scale() == SearchParameter::LOG;
  if (parameter.log && !(given.min() > 0)) {
    return Invalid(where + ".min",
                   absl::StrCat("is ", given.min(), "; a LOG range must lie above 0"));
  }
  TL_RETURN_IF_ERROR(CheckValueBounds(where + ".min", *field, filled_base, given.min()));
  TL_RETURN_IF_ERROR(CheckValueBounds(where + ".max", *field, filled_base, given.max()));
  parameter.min = given.min();
  parameter.max = given.max();
  return parameter;
}

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Uniform in [0, 1), from (seed, trial, parameter) alone.
double UnitDraw(uint64_t seed, int index, int parameter) {
  const uint64_t bits = SplitMix64(SplitMix64(SplitMix64(seed) ^ static_cast<uint64_t>(index)) ^
                                   static_cast<uint64_t>(parameter));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

double Draw(const SpaceParameter& parameter, double unit) {
  if (!parameter.IsRange()) {
    const size_t n = parameter.values.size();
    return parameter.values[std::min(n - 1, static_cast<size_t>(unit * static_cast<double>(n)))];
  }
  double value = parameter.log ? std::exp(std::log(parameter.min) +
                                          unit * (std::log(parameter.max) - std::log(parameter.min)))
                               : parameter.min + unit * (parameter.max - parameter.min);
  if (parameter.field->IsInteger()) value = std::round(value);
  return std::clamp(value, parameter.min, parameter.max);
}

}  // namespace

absl::StatusOr<std::vector<SpaceParameter>> ResolveSpace(const SweepSpec& spec) {
  if (spec.space_size() == 0) {
    return Invalid("space", "is empty: a sweep searches at least one field");
  }
  if (spec.space_size() > kMaxSpaceParameters) {
    return Invalid("space", absl::StrCat("has ", spec.space_size(), " parameters; at most ",
                                         kMaxSpaceParameters, " are allowed"));
  }
  JobSpec filled_base = spec.base();
  FillSpecDefaults(filled_base);
  std::vector<SpaceParameter> space;
  std::set<std::string> paths;
  for (int i = 0; i < spec.space_size(); ++i) {
    const std::string where = absl::StrCat("space[", i, "]");
    TL_ASSIGN_OR_RETURN(SpaceParameter parameter,
                        ResolveParameter(where, spec.space(i), filled_base));
    if (!paths.insert(parameter.field->path).second) {
      return Invalid(where + ".field", absl::StrCat("names ", parameter.field->path,
                                                    " again; each field is searched once"));
    }
    space.push_back(std::move(parameter));
  }
  return space;
}

int64_t GridSize(const std::vector<SpaceParameter>& space) {
  int64_t size = 1;
  for (const SpaceParameter& parameter : space) {
    const int64_t n = static_cast<int64_t>(parameter.values.size());
    if (n == 0) return 0;
    if (size > std::numeric_limits<int64_t>::max() / n) return std::numeric_limits<int64_t>::max();
    size *= n;
  }
  return size;
}

std::vector<double> TrialValues(const std::vector<SpaceParameter>& space, SweepSpec::Method method,
                                uint64_t seed, int index) {
  std::vector<double> values(space.size());
  if (method == SweepSpec::GRID) {
    int64_t rest = index;
    for (size_t p = space.size(); p-- > 0;) {
      const int64_t n = static_cast<int64_t>(space[p].values.size());
      values[p] = space[p].values[static_cast<size_t>(rest % n)];
      rest /= n;
    }
    return values;
  }
  for (size_t p = 0; p < space.size(); ++p) {
    values[p] = Draw(space[p], UnitDraw(seed, index, static_cast<int>(p)));
  }
  return values;
}

JobSpec TrialJobSpec(const JobSpec& base, const std::vector<SpaceParameter>& space,
                     const std::vector<double>& values, google::protobuf::Struct* applied) {
  JobSpec spec = base;
  for (size_t p = 0; p < space.size(); ++p) space[p].field->Set(spec, values[p]);
  // Whether each field applies is read with defaults filled in: an unset strategy is FINE_TUNE.
  JobSpec filled = spec;
  FillSpecDefaults(filled);
  std::vector<bool> applies(space.size());
  bool all_apply = true;
  for (size_t p = 0; p < space.size(); ++p) {
    applies[p] = space[p].field->InPlay(filled);
    all_apply = all_apply && applies[p];
  }
  if (!all_apply) {
    // The fields that decide where others apply (strategy, optimizer, schedule) apply
    // everywhere, so leaving the others out changes nothing of what is decided.
    spec = base;
    for (size_t p = 0; p < space.size(); ++p) {
      if (applies[p]) space[p].field->Set(spec, values[p]);
    }
  }
  if (applied != nullptr) {
    applied->Clear();
    for (size_t p = 0; p < space.size(); ++p) {
      if (applies[p]) {
        (*applied->mutable_fields())[space[p].field->path] = JsonValue(*space[p].field, values[p]);
      }
    }
  }
  return spec;
}

Value JsonValue(const SpecField& field, double value) {
  Value json;
  if (IsBool(field)) {
    json.set_bool_value(value != 0);
  } else if (IsEnum(field)) {
    const auto* named = field.descriptor().enum_type()->FindValueByNumber(static_cast<int>(value));
    if (named != nullptr) {
      json.set_string_value(named->name());
    } else {
      json.set_number_value(value);
    }
  } else {
    json.set_number_value(value);
  }
  return json;
}

std::string DescribeValues(const std::vector<SpaceParameter>& space,
                           const std::vector<double>& values) {
  std::vector<std::string> parts;
  for (size_t p = 0; p < space.size() && p < values.size(); ++p) {
    const Value json = JsonValue(*space[p].field, values[p]);
    std::string text;
    switch (json.kind_case()) {
      case Value::kBoolValue:
        text = json.bool_value() ? "true" : "false";
        break;
      case Value::kStringValue:
        text = json.string_value();
        break;
      default:
        text = NumberText(values[p], space[p].field->IsInteger());
    }
    parts.push_back(absl::StrCat(space[p].field->path, " = ", text));
  }
  return absl::StrJoin(parts, ", ");
}

}  // namespace tl::server
