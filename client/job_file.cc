#include "client/job_file.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace tl::client {
namespace {

// The one rule for every file tlctl reads: proto3 JSON, unknown fields refused.
absl::Status ParseStrictJson(const std::string& json_text, google::protobuf::Message& message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(json_text, &message, options);
  if (status.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(std::string(status.message()));
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", what, " ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Where in `json_text` a SweepSpec fails to parse, when it is a parameter of
// the space: "space[2]: ...", or an empty string when every parameter parses.
std::string FailingSpaceParameter(const std::string& json_text) {
  google::protobuf::Value document;
  if (!ParseStrictJson(json_text, document).ok() || !document.has_struct_value()) return "";
  const auto& fields = document.struct_value().fields();
  const auto space = fields.find("space");
  if (space == fields.end() || !space->second.has_list_value()) return "";
  const google::protobuf::ListValue& parameters = space->second.list_value();
  for (int i = 0; i < parameters.values_size(); ++i) {
    std::string parameter_json;
    if (!google::protobuf::util::MessageToJsonString(parameters.values(i), &parameter_json).ok()) {
      continue;
    }
    tl::v1::SearchParameter parameter;
    const absl::Status status = ParseStrictJson(parameter_json, parameter);
    if (!status.ok()) return absl::StrCat("space[", i, "]: ", status.message());
  }
  return "";
}

}  // namespace

absl::StatusOr<tl::v1::JobSpec> ParseJobSpecJson(const std::string& json_text,
                                                 const std::string& origin) {
  tl::v1::JobSpec spec;
  const absl::Status status = ParseStrictJson(json_text, spec);
  if (!status.ok()) {
    // protobuf names the offending field in its message ("Cannot find field").
    return absl::InvalidArgumentError(
        absl::StrCat(origin, " is not a valid JobSpec: ", status.message()));
  }
  return spec;
}

absl::StatusOr<tl::v1::JobSpec> ReadJobSpecFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadWholeFile(path, "job file");
  if (!text.ok()) return text.status();
  return ParseJobSpecJson(*text, path);
}

absl::StatusOr<tl::v1::SweepSpec> ParseSweepSpecJson(const std::string& json_text,
                                                     const std::string& origin) {
  tl::v1::SweepSpec spec;
  const absl::Status status = ParseStrictJson(json_text, spec);
  if (!status.ok()) {
    std::string where = FailingSpaceParameter(json_text);
    return absl::InvalidArgumentError(absl::StrCat(origin, " is not a valid SweepSpec: ",
                                                   where.empty() ? status.message() : where));
  }
  return spec;
}

absl::StatusOr<tl::v1::SweepSpec> ReadSweepSpecFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadWholeFile(path, "sweep file");
  if (!text.ok()) return text.status();
  return ParseSweepSpecJson(*text, path);
}

}  // namespace tl::client
