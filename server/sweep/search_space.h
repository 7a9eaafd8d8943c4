// A sweep's search space resolved against the spec table (server/spec/
// spec_fields.h), and the trials drawn from it.
//
// Every value travels as the table's fields do, as a double: enum numbers,
// 0 and 1 for booleans. A trial's values are a pure function of the stored
// SweepSpec and the trial's index, so a restarted server draws the same
// trials: GRID walks the cartesian product (the last parameter fastest),
// RANDOM and ASHA hash (seed, index, parameter) into a uniform draw of their
// own (not a standard-library distribution, whose numbers differ between
// library versions).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/struct.pb.h"
#include "server/spec/spec_fields.h"
#include "tl/v1/jobs.pb.h"
#include "tl/v1/sweeps.pb.h"

namespace tl::server {

// One parameter of the space.
struct SpaceParameter {
  const SpecField* field = nullptr;  // the spec table's row
  std::vector<double> values;        // listed values; empty for a range
  double min = 0;
  double max = 0;
  bool log = false;
  bool IsRange() const { return values.empty(); }
};

// Resolves the space of `spec`: each parameter's field is a numeric, bool or
// enum row of the spec table under "training." or "preprocessing.", named
// once; it lists values of the field's type or gives a numeric range (with
// min <= max, above 0 for LOG, whole for integer fields); each listed value
// and each end of a range lies within the field's own bounds (those that
// depend on other fields read the base spec, defaults filled in).
// INVALID_ARGUMENT naming `space[i]`, `space[i].field`, `space[i].values[j]`,
// `space[i].min` ...
absl::StatusOr<std::vector<SpaceParameter>> ResolveSpace(const tl::v1::SweepSpec& spec);

// Points of GRID's cartesian product; saturates at INT64_MAX.
int64_t GridSize(const std::vector<SpaceParameter>& space);

// The values of trial `index`, one per parameter. GRID needs a space of lists
// and index < GridSize.
std::vector<double> TrialValues(const std::vector<SpaceParameter>& space,
                                tl::v1::SweepSpec::Method method, uint64_t seed, int index);

// A trial's job spec: `base` with each value set where its field applies to
// the result (training.unfreeze_groups only under FINE_TUNE and AUTO, say),
// defaults not filled in. `applied` (may be null) gets field path -> value
// of the values set, as JSON writes them.
tl::v1::JobSpec TrialJobSpec(const tl::v1::JobSpec& base, const std::vector<SpaceParameter>& space,
                             const std::vector<double>& values, google::protobuf::Struct* applied);

// A value as JSON writes it: an enum by name, a bool, a number.
google::protobuf::Value JsonValue(const SpecField& field, double value);

// "training.learning_rate = 0.01, training.strategy = FULL"
std::string DescribeValues(const std::vector<SpaceParameter>& space,
                           const std::vector<double>& values);

}  // namespace tl::server
