// The JobSpec's numeric, bool and enum fields in one table: each field's path
// (the proto field names, as errors name it and as job.json may write it), its
// default, its bounds, and the setting of other fields it needs.
//
// FillSpecDefaults (spec_defaults.h) and CheckSpecBounds (spec_bounds.h) walk
// the table in its order, so a field whose default or bound depends on another
// field comes after that field. docs/API.md's JobSpec table is held to it by
// ctest docs.spec_table (spec_docs_check.h). Rules between fields that no row
// can say are code, in spec_cross_field_rules.h.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "google/protobuf/descriptor.h"
#include "tl/v1/jobs.pb.h"

namespace tl::server {

using SpecPredicate = std::function<bool(const tl::v1::JobSpec&)>;
// A value that depends on other fields; nullopt where there is none.
using SpecRule = std::function<std::optional<double>(const tl::v1::JobSpec&)>;

// One end of a field's interval: a constant, or a value of other fields.
struct SpecLimit {
  SpecLimit(double constant) : constant(constant) {}  // NOLINT: a number is a closed end
  SpecLimit(SpecRule from_spec, std::string written)
      : from_spec(std::move(from_spec)), written(std::move(written)) {}
  double At(const tl::v1::JobSpec& spec) const;

  double constant = 0;
  SpecRule from_spec;    // set: the end depends on other fields, which hold a value by then
  std::string written;   // how docs/API.md writes an end that depends on other fields
  bool open = false;     // the end itself lies outside
};
// An end that is itself outside: (0, 1].
SpecLimit Open(double constant);

// A setting of another field that a field needs. Under any other setting the
// field gets no default and, if set, is an error.
struct SpecCondition {
  SpecPredicate holds;
  std::string setting;  // "the STEP lr_schedule", in "applies to the STEP lr_schedule only"
  // The setting that holds instead, named in the error (", not CONSTANT"); may be empty.
  std::function<std::string(const tl::v1::JobSpec&)> instead;
  std::string written;  // "`STEP` only", as docs/API.md's bounds say it
};

// One row of the table. Built in the table's own words:
//   SpecField("training.epochs").Defaults(10).Within(1, 1000).PositiveFirst()
struct SpecField {
  explicit SpecField(std::string path);  // aborts on a path JobSpec does not have

  // The value an unset field takes: a constant, or a rule of other fields
  // (`written` is how docs/API.md says it). Without either the field keeps its
  // zero value, which ZeroMeans can describe for the docs.
  SpecField& Defaults(double constant);
  SpecField& Defaults(SpecRule rule, std::string written);
  SpecField& ZeroMeans(std::string written);
  // No default at submit; `written` says what an unset field means (sized by
  // the data on the worker), for docs/API.md.
  SpecField& UnsetMeans(std::string written);
  // Bounds. Within(low, high) is closed unless an end is Open(); AtLeast has no upper end.
  SpecField& Within(SpecLimit low, SpecLimit high);
  SpecField& AtLeast(SpecLimit low);
  // 0 passes whatever the interval: it means "not given" (preprocessing.image_size).
  SpecField& ZeroMeansUnset();
  // A value at or below 0 is refused as "must be positive" before the interval is checked.
  SpecField& PositiveFirst();
  // The problem an enum field holding an undefined number has: "is not a known strategy".
  SpecField& UnknownValue(std::string problem);
  // The field needs another field's setting (see SpecCondition).
  SpecField& OnlyUnder(SpecCondition condition);
  // The field means nothing unless `applies` holds, and is then left alone: no
  // default, no bounds, no error (fields of training.early_stopping without it).
  SpecField& AppliesWhen(SpecPredicate applies);

  // Whether the field is in play for `spec`: it applies and any condition holds.
  bool InPlay(const tl::v1::JobSpec& spec) const;
  // The default for `spec`, if the field gets one.
  std::optional<double> DefaultFor(const tl::v1::JobSpec& spec) const;

  // The field read and written through protobuf reflection. Integers, enums and
  // bools travel as doubles (every bound and default here is exact in one).
  bool IsSet(const tl::v1::JobSpec& spec) const;  // has_x, or non-zero without presence
  double Get(const tl::v1::JobSpec& spec) const;
  void Set(tl::v1::JobSpec& spec, double value) const;
  bool HasPresence() const { return leaf_->has_presence(); }
  bool IsInteger() const;
  const google::protobuf::FieldDescriptor& descriptor() const { return *leaf_; }
  // "training.earlyStopping.minDelta": the path as docs/API.md writes it.
  std::string JsonPath() const;

  std::string path;
  std::optional<double> default_constant;
  SpecRule default_rule;
  std::string default_written;  // the rule, or what the zero value means
  std::optional<SpecLimit> low;
  std::optional<SpecLimit> high;
  bool zero_means_unset = false;
  bool positive_first = false;
  std::string unknown_value;
  std::optional<SpecCondition> only_under;
  SpecPredicate applies;

 private:
  // The fields from JobSpec down to this one: every one but the last is a message.
  std::vector<const google::protobuf::FieldDescriptor*> chain_;
  const google::protobuf::FieldDescriptor* leaf_ = nullptr;
};

// The table, in the order defaults are filled and bounds checked.
const std::vector<SpecField>& SpecFields();

}  // namespace tl::server
