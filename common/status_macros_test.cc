#include "common/status_macros.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"

namespace tl {
namespace {

using ::testing::ElementsAre;
using ::testing::Pointee;
using ::tl::testing::IsOk;
using ::tl::testing::StatusIs;

// Records every call, so a test sees what ran before an early return.
struct Calls {
  std::vector<std::string> names;

  absl::Status Step(const std::string& name, absl::Status result) {
    names.push_back(name);
    return result;
  }
  absl::StatusOr<int> Number(const std::string& name, absl::StatusOr<int> result) {
    names.push_back(name);
    return result;
  }
};

absl::Status TwoSteps(Calls& calls, absl::Status first, absl::Status second) {
  TL_RETURN_IF_ERROR(calls.Step("first", first));
  TL_RETURN_IF_ERROR(calls.Step("second", second));
  calls.names.push_back("end");
  return absl::OkStatus();
}

TEST(ReturnIfErrorTest, RunsOnWhenEveryStepSucceeds) {
  Calls calls;
  EXPECT_THAT(TwoSteps(calls, absl::OkStatus(), absl::OkStatus()), IsOk());
  EXPECT_THAT(calls.names, ElementsAre("first", "second", "end"));
}

TEST(ReturnIfErrorTest, ReturnsTheFirstErrorUnchangedAndStopsThere) {
  Calls calls;
  EXPECT_THAT(TwoSteps(calls, absl::NotFoundError("no such job"), absl::InternalError("later")),
              StatusIs(absl::StatusCode::kNotFound, "no such job"));
  EXPECT_THAT(calls.names, ElementsAre("first"));
}

TEST(ReturnIfErrorTest, AnErrorInALaterStepSkipsTheRest) {
  Calls calls;
  EXPECT_THAT(TwoSteps(calls, absl::OkStatus(), absl::PermissionDeniedError("not yours")),
              StatusIs(absl::StatusCode::kPermissionDenied, "not yours"));
  EXPECT_THAT(calls.names, ElementsAre("first", "second"));
}

absl::Status CheckNumber(Calls& calls, absl::StatusOr<int> number) {
  TL_RETURN_IF_ERROR(calls.Number("number", number));
  calls.names.push_back("end");
  return absl::OkStatus();
}

TEST(ReturnIfErrorTest, TakesAStatusOrAndReturnsItsStatus) {
  Calls calls;
  EXPECT_THAT(CheckNumber(calls, 7), IsOk());
  EXPECT_THAT(CheckNumber(calls, absl::OutOfRangeError("too big")),
              StatusIs(absl::StatusCode::kOutOfRange, "too big"));
  EXPECT_THAT(calls.names, ElementsAre("number", "end", "number"));
}

TEST(ReturnIfErrorTest, WorksAsTheBodyOfAnUnbracedIfElse) {
  auto run = [](bool check, absl::Status status) -> absl::Status {
    if (check)
      TL_RETURN_IF_ERROR(status);
    else
      return absl::AbortedError("not checked");
    return absl::OkStatus();
  };
  EXPECT_THAT(run(true, absl::OkStatus()), IsOk());
  EXPECT_THAT(run(true, absl::UnknownError("x")), StatusIs(absl::StatusCode::kUnknown, "x"));
  EXPECT_THAT(run(false, absl::OkStatus()), StatusIs(absl::StatusCode::kAborted, "not checked"));
}

absl::StatusOr<int> Sum(Calls& calls, absl::StatusOr<int> a, absl::StatusOr<int> b) {
  // Two in one scope, and one assigning to a variable declared before.
  TL_ASSIGN_OR_RETURN(const int first, calls.Number("a", a));
  int second = -1;
  TL_ASSIGN_OR_RETURN(second, calls.Number("b", b));
  return first + second;
}

TEST(AssignOrReturnTest, AssignsTheValues) {
  Calls calls;
  absl::StatusOr<int> sum = Sum(calls, 2, 3);
  ASSERT_THAT(sum, IsOk());
  EXPECT_EQ(*sum, 5);
  EXPECT_THAT(calls.names, ElementsAre("a", "b"));
}

TEST(AssignOrReturnTest, ReturnsTheErrorUnchangedAndEvaluatesNothingAfter) {
  Calls calls;
  EXPECT_THAT(Sum(calls, absl::InvalidArgumentError("a is bad"), 3),
              StatusIs(absl::StatusCode::kInvalidArgument, "a is bad"));
  EXPECT_THAT(calls.names, ElementsAre("a"));
  calls.names.clear();
  EXPECT_THAT(Sum(calls, 2, absl::DataLossError("b is gone")),
              StatusIs(absl::StatusCode::kDataLoss, "b is gone"));
  EXPECT_THAT(calls.names, ElementsAre("a", "b"));
}

absl::StatusOr<std::unique_ptr<int>> MakeBox(int value) { return std::make_unique<int>(value); }

absl::StatusOr<std::unique_ptr<int>> Boxed(absl::StatusOr<int> value) {
  TL_ASSIGN_OR_RETURN(const int unboxed, value);
  // A move-only value is moved out of its StatusOr.
  TL_ASSIGN_OR_RETURN(std::unique_ptr<int> box, MakeBox(unboxed * 10));
  return box;
}

TEST(AssignOrReturnTest, MovesMoveOnlyValuesAndReturnsIntoAnotherStatusOrType) {
  absl::StatusOr<std::unique_ptr<int>> box = Boxed(4);
  ASSERT_THAT(box, IsOk());
  EXPECT_THAT(*box, Pointee(40));
  EXPECT_THAT(Boxed(absl::ResourceExhaustedError("full")),
              StatusIs(absl::StatusCode::kResourceExhausted, "full"));
}

absl::StatusOr<int> CountedTwice(int& evaluations) {
  ++evaluations;
  return evaluations;
}

TEST(StatusMacrosTest, EachMacroEvaluatesItsExpressionOnce) {
  int evaluations = 0;
  auto run = [&]() -> absl::Status {
    TL_RETURN_IF_ERROR(CountedTwice(evaluations));
    TL_ASSIGN_OR_RETURN(const int seen, CountedTwice(evaluations));
    return seen == 2 ? absl::OkStatus() : absl::InternalError("evaluated more than once");
  };
  EXPECT_THAT(run(), IsOk());
  EXPECT_EQ(evaluations, 2);
}

}  // namespace
}  // namespace tl
