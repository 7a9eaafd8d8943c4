#include "server/spec/spec_errors.h"

#include <cstdint>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace tl::server {

absl::Status Invalid(const std::string& field, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", problem));
}

std::string NumberText(double value, bool integer) {
  if (integer) return std::to_string(static_cast<int64_t>(value));
  std::ostringstream text;
  text << value;
  return text.str();
}

absl::Status OutsideInterval(const std::string& field, const std::string& value,
                             const std::string& interval) {
  return Invalid(field, absl::StrCat("is ", value, "; it must lie in ", interval));
}

}  // namespace tl::server
