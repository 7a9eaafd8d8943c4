// How a spec's errors are worded: the field's path first, then its problem,
// so that a user can find the field from the message alone.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace tl::server {

// INVALID_ARGUMENT "<field> <problem>".
absl::Status Invalid(const std::string& field, const std::string& problem);

// A number as the errors write it: integers whole, others as a stream writes a double.
std::string NumberText(double value, bool integer);

// "<field> is <value>; it must lie in <interval>", the interval written "[0, 1)".
absl::Status OutsideInterval(const std::string& field, const std::string& value,
                             const std::string& interval);

}  // namespace tl::server
