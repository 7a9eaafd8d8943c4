#include "server/caller_text.h"

#include "absl/strings/str_cat.h"
#include "common/text.h"

namespace tl::server {

absl::Status CheckCallerText(absl::string_view field, absl::string_view text,
                             size_t max_characters) {
  if (HasControlCharacters(text)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " holds a control character (a line break, tab, escape or NUL); "
               "use printable characters only"));
  }
  const size_t characters = CountCodePoints(text);
  if (characters > max_characters) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is ", characters,
                                                   " characters long; at most ",
                                                   max_characters, " are allowed"));
  }
  return absl::OkStatus();
}

}  // namespace tl::server
