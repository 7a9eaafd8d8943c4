#include "client/job_file.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace tl::client {

absl::StatusOr<tl::v1::JobSpec> ParseJobSpecJson(const std::string& json_text,
                                                 const std::string& origin) {
  tl::v1::JobSpec spec;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(json_text, &spec, options);
  if (!status.ok()) {
    // protobuf names the offending field in its message ("Cannot find field").
    return absl::InvalidArgumentError(
        absl::StrCat(origin, " is not a valid JobSpec: ", std::string(status.message())));
  }
  return spec;
}

absl::StatusOr<tl::v1::JobSpec> ReadJobSpecFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read job file ", path));
  std::stringstream text;
  text << in.rdbuf();
  return ParseJobSpecJson(text.str(), path);
}

}  // namespace tl::client
