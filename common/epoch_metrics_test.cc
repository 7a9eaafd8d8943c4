#include "common/epoch_metrics.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "tl/v1/jobs.pb.h"

namespace tl {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;

// Fields of tl.v1.EpochMetrics that are not epoch figures: the scheduler's
// attempt number, set by the worker beside the list.
const std::set<std::string> kProtoFieldsNotListed = {"attempt"};

FieldDescriptor::CppType CppTypeOf(EpochMetricType type) {
  switch (type) {
    case EpochMetricType::kInt32:
      return FieldDescriptor::CPPTYPE_INT32;
    case EpochMetricType::kInt64:
      return FieldDescriptor::CPPTYPE_INT64;
    case EpochMetricType::kDouble:
      return FieldDescriptor::CPPTYPE_DOUBLE;
  }
  return FieldDescriptor::CPPTYPE_MESSAGE;  // matches no figure
}

TEST(EpochMetricsTest, EveryFigureOnTheWireHasAProtoFieldOfItsNameAndType) {
  const Descriptor* message = tl::v1::EpochMetrics::descriptor();
  for (const EpochMetricInfo& figure : kEpochMetrics) {
    const FieldDescriptor* field = message->FindFieldByName(std::string(figure.name));
    if (!figure.on_wire) {
      EXPECT_EQ(field, nullptr) << figure.name << " is in the proto but listed as LOCAL";
      continue;
    }
    ASSERT_NE(field, nullptr) << "tl.v1.EpochMetrics has no field " << figure.name;
    EXPECT_FALSE(field->is_repeated()) << figure.name;
    EXPECT_EQ(field->cpp_type(), CppTypeOf(figure.type)) << figure.name;
  }
}

TEST(EpochMetricsTest, EveryProtoFieldIsListedOrNamedAsNotAFigure) {
  std::set<std::string> on_wire;
  for (const EpochMetricInfo& figure : kEpochMetrics) {
    if (figure.on_wire) on_wire.insert(std::string(figure.name));
  }
  const Descriptor* message = tl::v1::EpochMetrics::descriptor();
  for (int i = 0; i < message->field_count(); ++i) {
    const std::string& name = message->field(i)->name();
    EXPECT_TRUE(on_wire.count(name) == 1 || kProtoFieldsNotListed.count(name) == 1)
        << "tl.v1.EpochMetrics." << name << " is not in TL_EPOCH_METRICS";
  }
  for (const std::string& name : kProtoFieldsNotListed) {
    EXPECT_NE(message->FindFieldByName(name), nullptr) << name;
    EXPECT_EQ(on_wire.count(name), 0u) << name;
  }
}

TEST(EpochMetricsTest, NamesAndGaugesAreUniqueAndGaugesHaveHelp) {
  std::set<std::string_view> names;
  std::set<std::string_view> gauges;
  for (const EpochMetricInfo& figure : kEpochMetrics) {
    EXPECT_TRUE(names.insert(figure.name).second) << figure.name << " listed twice";
    EXPECT_EQ(figure.gauge.empty(), figure.help.empty()) << figure.name;
    if (figure.gauge.empty()) continue;
    EXPECT_TRUE(figure.on_wire) << figure.name << ": the scheduler sees only the wire's figures";
    EXPECT_EQ(figure.gauge.substr(0, 7), "tl_job_") << figure.gauge;
    EXPECT_TRUE(gauges.insert(figure.gauge).second) << figure.gauge << " listed twice";
  }
}

TEST(EpochMetricsTest, IndexNamesEachFiguresPosition) {
#define TL_EXPECT_INDEX(member, ...) \
  EXPECT_EQ(kEpochMetrics[EpochMetricIndex::member].name, #member);
  TL_EPOCH_METRICS(TL_EXPECT_INDEX, TL_EXPECT_INDEX)
#undef TL_EXPECT_INDEX
}

// Checkpoints written by every earlier version must still load, so only
// the figures that every epochs.json has held from the start may be required.
TEST(EpochMetricsTest, OnlyTheFiguresOfTheFirstCheckpointsAreRequired) {
  const std::set<std::string_view> from_the_start = {
      "epoch",
      "train_loss",
      "train_accuracy",
      "val_loss",
      "val_accuracy",
      "val_macro_precision",
      "val_macro_recall",
      "val_macro_f1",
      "images_per_second",
      "seconds",
      "learning_rate",
      "train_images",
      "val_images",
  };
  for (const EpochMetricInfo& figure : kEpochMetrics) {
    if (figure.json == EpochJson::kRequired) {
      EXPECT_EQ(from_the_start.count(figure.name), 1u)
          << figure.name << " is missing from older checkpoints: make it kOptional";
    }
  }
}

TEST(EpochMetricsTest, ValidationFiguresAreThoseMeasuredOnTheValidationImages) {
  EXPECT_TRUE(IsValidationFigure(EpochMetricIndex::val_loss));
  EXPECT_TRUE(IsValidationFigure(EpochMetricIndex::val_accuracy));
  EXPECT_TRUE(IsValidationFigure(EpochMetricIndex::val_images));
  EXPECT_FALSE(IsValidationFigure(EpochMetricIndex::train_accuracy));
  EXPECT_FALSE(IsValidationFigure(EpochMetricIndex::images_per_second));
  EXPECT_FALSE(IsValidationFigure(kEpochMetricCount));
}

}  // namespace
}  // namespace tl
