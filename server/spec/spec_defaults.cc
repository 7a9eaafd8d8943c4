#include "server/spec/spec_defaults.h"

#include <algorithm>
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

namespace tl::server {

void FillSizedFields(const tl::v1::DataSizing& sizing, JobSpec& spec) {
  const auto sized = [&sizing](const char* field) {
    return std::count(sizing.sized_fields().begin(), sizing.sized_fields().end(), field) > 0;
  };
  tl::v1::TrainingSpec& training = *spec.mutable_training();
  if (sized("training.epochs") && !training.has_epochs()) training.set_epochs(sizing.epochs());
  if (sized("training.batch_size") && !training.has_batch_size()) {
    training.set_batch_size(sizing.batch_size());
  }
  tl::v1::DatasetSpec& dataset = *spec.mutable_dataset();
  if (sized("dataset.val_fraction") && !dataset.has_val_fraction()) {
    dataset.set_val_fraction(sizing.val_fraction());
  }
  FillSpecDefaults(spec);
}

}  // namespace tl::server
