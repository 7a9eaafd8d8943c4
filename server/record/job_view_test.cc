#include "server/record/job_view.h"

#include <set>
#include <string>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace tl::server {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::Reflection;

// Record fields that clients never see.
const std::set<std::string> kRecordOnly = {"last_event_sequence", "stop_early_requested"};
// Job fields that are not stored: worked out when asked.
const std::set<std::string> kApiOnly = {"pending_reason"};

// Sets every field of `message` to a value that differs from field to field
// (by field number) and from the default.
void FillEveryField(Message& message) {
  const Descriptor* descriptor = message.GetDescriptor();
  const Reflection* reflection = message.GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    const int n = field->number();
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        if (field->is_repeated()) {
          reflection->AddString(&message, field, "first" + std::to_string(n));
          reflection->AddString(&message, field, "second" + std::to_string(n));
        } else {
          reflection->SetString(&message, field, "value" + std::to_string(n));
        }
        break;
      case FieldDescriptor::CPPTYPE_INT32:
        reflection->SetInt32(&message, field, 100 + n);
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        reflection->SetInt64(&message, field, 1000 + n);
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        reflection->SetBool(&message, field, true);
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        reflection->SetEnumValue(&message, field, 1 + n % 7);
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE: {
        Message* inner = reflection->MutableMessage(&message, field);
        // A message field holds something recognisable: its first scalar field set.
        const Descriptor* inner_descriptor = inner->GetDescriptor();
        for (int j = 0; j < inner_descriptor->field_count(); ++j) {
          const FieldDescriptor* first = inner_descriptor->field(j);
          if (first->is_repeated()) continue;
          if (first->cpp_type() == FieldDescriptor::CPPTYPE_INT64) {
            inner->GetReflection()->SetInt64(inner, first, 10000 + n);
            break;
          }
          if (first->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
            inner->GetReflection()->SetString(inner, first, "inner" + std::to_string(n));
            break;
          }
        }
        break;
      }
      default:
        FAIL() << "no test value for the type of " << field->full_name();
    }
  }
}

// Every field the two messages share by name holds the same value in both, and the fields
// only one of them has are exactly the ones listed: a field added to one message and
// forgotten in the other, or in ToApiJob, fails here.
TEST(JobViewTest, CopiesEveryFieldTheRecordAndTheApiShare) {
  JobRecord record;
  FillEveryField(record);
  const tl::v1::Job job = ToApiJob(record, "waiting for a worker");

  const Descriptor* record_fields = JobRecord::descriptor();
  const Descriptor* job_fields = tl::v1::Job::descriptor();
  for (int i = 0; i < record_fields->field_count(); ++i) {
    const FieldDescriptor* field = record_fields->field(i);
    const FieldDescriptor* shown = job_fields->FindFieldByName(field->name());
    if (kRecordOnly.count(field->name()) > 0) {
      EXPECT_EQ(shown, nullptr) << field->name() << " is meant for the scheduler only";
      continue;
    }
    ASSERT_NE(shown, nullptr) << "tl.v1.Job has no field " << field->name();
    ASSERT_EQ(shown->type(), field->type()) << field->name();
    // Compare through text, which covers every type alike.
    std::string stored;
    std::string seen;
    if (field->is_repeated()) {
      ASSERT_TRUE(shown->is_repeated()) << field->name();
      for (int k = 0; k < record.GetReflection()->FieldSize(record, field); ++k) {
        stored += record.GetReflection()->GetRepeatedString(record, field, k) + ",";
      }
      for (int k = 0; k < job.GetReflection()->FieldSize(job, shown); ++k) {
        seen += job.GetReflection()->GetRepeatedString(job, shown, k) + ",";
      }
    } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      stored = record.GetReflection()->GetMessage(record, field).SerializeAsString();
      seen = job.GetReflection()->GetMessage(job, shown).SerializeAsString();
    } else {
      google::protobuf::TextFormat::PrintFieldValueToString(record, field, -1, &stored);
      google::protobuf::TextFormat::PrintFieldValueToString(job, shown, -1, &seen);
    }
    EXPECT_EQ(seen, stored) << field->name();
    EXPECT_FALSE(stored.empty()) << field->name();
  }
  for (int i = 0; i < job_fields->field_count(); ++i) {
    const std::string& name = job_fields->field(i)->name();
    if (kApiOnly.count(name) > 0) continue;
    EXPECT_NE(record_fields->FindFieldByName(name), nullptr)
        << "tl.v1.Job." << name << " has no field in JobRecord to come from";
  }
  EXPECT_EQ(job.pending_reason(), "waiting for a worker");
}

TEST(JobViewTest, UnsetTimesAndResultStayUnset) {
  JobRecord record;
  record.set_id("abc");
  const tl::v1::Job job = ToApiJob(record);
  EXPECT_FALSE(job.has_start_time());
  EXPECT_FALSE(job.has_end_time());
  EXPECT_FALSE(job.has_result());
  EXPECT_EQ(job.id(), "abc");
}

}  // namespace
}  // namespace tl::server
