// A row of the spec table (spec_fields.h): how it is built, and how it reads
// and writes its field through protobuf reflection.
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_split.h"
#include "server/spec/spec_fields.h"

namespace tl::server {
namespace {

using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::Reflection;
using ::tl::v1::JobSpec;

// A row naming a field JobSpec lacks is a mistake in the table, found when the
// table is first built (every test that validates a spec builds it).
[[noreturn]] void TableError(const std::string& path, const char* problem) {
  std::fprintf(stderr, "spec table: %s %s\n", path.c_str(), problem);
  std::abort();
}

bool IsSupported(const FieldDescriptor& field) {
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT64:
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_BOOL:
    case FieldDescriptor::CPPTYPE_ENUM:
      return !field.is_repeated();
    default:
      return false;
  }
}

}  // namespace

double SpecLimit::At(const JobSpec& spec) const {
  return from_spec ? from_spec(spec).value_or(constant) : constant;
}

SpecLimit Open(double constant) {
  SpecLimit limit(constant);
  limit.open = true;
  return limit;
}

SpecField::SpecField(std::string path_in) : path(std::move(path_in)) {
  const google::protobuf::Descriptor* message = JobSpec::descriptor();
  for (absl::string_view name : absl::StrSplit(path, '.')) {
    if (message == nullptr) TableError(path, "goes on past a field that is not a message");
    const FieldDescriptor* field = message->FindFieldByName(std::string(name));
    if (field == nullptr) TableError(path, "is not a field of JobSpec");
    chain_.push_back(field);
    message = field->message_type();
  }
  leaf_ = chain_.back();
  if (!IsSupported(*leaf_)) TableError(path, "is not a single number, bool or enum");
}

SpecField& SpecField::Defaults(double constant) {
  default_constant = constant;
  return *this;
}

SpecField& SpecField::Defaults(SpecRule rule, std::string written) {
  default_rule = std::move(rule);
  default_written = std::move(written);
  return *this;
}

SpecField& SpecField::ZeroMeans(std::string written) {
  default_written = std::move(written);
  return *this;
}

SpecField& SpecField::UnsetMeans(std::string written) {
  default_written = std::move(written);
  return *this;
}

SpecField& SpecField::Within(SpecLimit low_end, SpecLimit high_end) {
  low = std::move(low_end);
  high = std::move(high_end);
  return *this;
}

SpecField& SpecField::AtLeast(SpecLimit low_end) {
  low = std::move(low_end);
  return *this;
}

SpecField& SpecField::ZeroMeansUnset() {
  zero_means_unset = true;
  return *this;
}

SpecField& SpecField::PositiveFirst() {
  positive_first = true;
  return *this;
}

SpecField& SpecField::UnknownValue(std::string problem) {
  if (leaf_->enum_type() == nullptr) TableError(path, "is not an enum");
  unknown_value = std::move(problem);
  return *this;
}

SpecField& SpecField::OnlyUnder(SpecCondition condition) {
  only_under = std::move(condition);
  return *this;
}

SpecField& SpecField::AppliesWhen(SpecPredicate applies_in) {
  applies = std::move(applies_in);
  return *this;
}

bool SpecField::InPlay(const JobSpec& spec) const {
  return (!applies || applies(spec)) && (!only_under || only_under->holds(spec));
}

std::optional<double> SpecField::DefaultFor(const JobSpec& spec) const {
  if (default_rule) return default_rule(spec);
  return default_constant;
}

bool SpecField::IsInteger() const {
  return leaf_->cpp_type() != FieldDescriptor::CPPTYPE_DOUBLE;
}

namespace {

// The message holding the field: read through default instances where a
// message on the way is absent.
const Message& Holder(const JobSpec& spec, const std::vector<const FieldDescriptor*>& chain) {
  const Message* message = &spec;
  for (size_t i = 0; i + 1 < chain.size(); ++i) {
    message = &message->GetReflection()->GetMessage(*message, chain[i]);
  }
  return *message;
}

// The same, creating the messages on the way.
Message& MutableHolder(JobSpec& spec, const std::vector<const FieldDescriptor*>& chain) {
  Message* message = &spec;
  for (size_t i = 0; i + 1 < chain.size(); ++i) {
    message = message->GetReflection()->MutableMessage(message, chain[i]);
  }
  return *message;
}

}  // namespace

bool SpecField::IsSet(const JobSpec& spec) const {
  const Message& holder = Holder(spec, chain_);
  return holder.GetReflection()->HasField(holder, leaf_);
}

double SpecField::Get(const JobSpec& spec) const {
  const Message& holder = Holder(spec, chain_);
  const Reflection& reflection = *holder.GetReflection();
  switch (leaf_->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return reflection.GetInt32(holder, leaf_);
    case FieldDescriptor::CPPTYPE_INT64:
      return static_cast<double>(reflection.GetInt64(holder, leaf_));
    case FieldDescriptor::CPPTYPE_UINT64:
      return static_cast<double>(reflection.GetUInt64(holder, leaf_));
    case FieldDescriptor::CPPTYPE_BOOL:
      return reflection.GetBool(holder, leaf_) ? 1 : 0;
    case FieldDescriptor::CPPTYPE_ENUM:
      return reflection.GetEnumValue(holder, leaf_);
    default:
      return reflection.GetDouble(holder, leaf_);
  }
}

void SpecField::Set(JobSpec& spec, double value) const {
  Message& holder = MutableHolder(spec, chain_);
  const Reflection& reflection = *holder.GetReflection();
  switch (leaf_->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return reflection.SetInt32(&holder, leaf_, static_cast<int32_t>(value));
    case FieldDescriptor::CPPTYPE_INT64:
      return reflection.SetInt64(&holder, leaf_, static_cast<int64_t>(value));
    case FieldDescriptor::CPPTYPE_UINT64:
      return reflection.SetUInt64(&holder, leaf_, static_cast<uint64_t>(value));
    case FieldDescriptor::CPPTYPE_BOOL:
      return reflection.SetBool(&holder, leaf_, value != 0);
    case FieldDescriptor::CPPTYPE_ENUM:
      return reflection.SetEnumValue(&holder, leaf_, static_cast<int>(value));
    default:
      return reflection.SetDouble(&holder, leaf_, value);
  }
}

std::string SpecField::JsonPath() const {
  std::string json;
  for (const FieldDescriptor* field : chain_) {
    if (!json.empty()) json += '.';
    json += field->json_name();
  }
  return json;
}

}  // namespace tl::server
