#include "server/spec/spec_defaults.h"

#include <optional>

#include "server/spec/spec_fields.h"

namespace tl::server {
namespace {

using ::tl::v1::JobSpec;

// A validation set (val_dir or val_csv) replaces the held-out slice of a
// training job, so the fraction is not stored with it.
void DropValFractionBesideValidationSet(JobSpec& spec) {
  if (spec.has_evaluate()) return;
  if (!spec.dataset().val_dir().empty() || !spec.dataset().val_csv().empty()) {
    spec.mutable_dataset()->clear_val_fraction();
  }
}

}  // namespace

void FillSpecDefaults(JobSpec& spec) {
  DropValFractionBesideValidationSet(spec);
  // In the table's order, so that a default that depends on other fields sees theirs.
  for (const SpecField& field : SpecFields()) {
    if (!field.InPlay(spec) || field.IsSet(spec)) continue;
    const std::optional<double> value = field.DefaultFor(spec);
    // A zero without presence is the unset field itself; writing it would only
    // create the messages on its way.
    if (value && (field.HasPresence() || *value != 0)) field.Set(spec, *value);
  }
}

}  // namespace tl::server
