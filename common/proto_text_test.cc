#include "common/proto_text.h"

#include <gtest/gtest.h>

#include <string>

#include "tl/v1/service.pb.h"

namespace tl {
namespace {

// A class folder named in Latin-1 ("café" as 63 61 66 E9) reaches the scheduler in a report.
TEST(ProtoTextTest, MalformedUtf8InAnyStringIsEscapedSoThatThePeerCanParse) {
  tl::v1::WorkerMessage message;
  tl::v1::JobFinished& finished = *message.mutable_finished();
  finished.set_job_id("job-1");
  finished.set_error("cannot read caf\xE9/1.png");
  finished.mutable_result()->mutable_dataset()->add_class_names("caf\xE9");
  finished.mutable_result()->mutable_dataset()->add_class_names("th\xC3\xA9");
  finished.mutable_result()->mutable_test_report()->add_classes()->set_class_name("caf\xE9");

  std::string wire;
  ASSERT_TRUE(message.SerializeToString(&wire));  // proto3 only complains when sending
  tl::v1::WorkerMessage received;
  EXPECT_FALSE(received.ParseFromString(wire));

  EscapeMalformedUtf8In(message);
  ASSERT_TRUE(message.SerializeToString(&wire));
  ASSERT_TRUE(received.ParseFromString(wire));
  EXPECT_EQ(received.finished().error(), "cannot read caf\\xe9/1.png");
  EXPECT_EQ(received.finished().result().dataset().class_names(0), "caf\\xe9");
  EXPECT_EQ(received.finished().result().dataset().class_names(1), "th\xC3\xA9");
  EXPECT_EQ(received.finished().result().test_report().classes(0).class_name(), "caf\\xe9");
  EXPECT_EQ(received.finished().job_id(), "job-1");
}

}  // namespace
}  // namespace tl
