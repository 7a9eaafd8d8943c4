// GoogleTest matchers for absl::Status and absl::StatusOr<T> (Debian's abseil ships none):
//
//   EXPECT_THAT(store.UpdateJob(job), IsOk());
//   EXPECT_THAT(store.GetJob("x"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("x")));
//   ASSERT_OK_AND_ASSIGN(Job job, store.GetJob(id));
//
// A failing match prints the whole status, which gtest cannot print for a StatusOr by itself.
#pragma once

#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tl::testing {
namespace internal {

inline const absl::Status& StatusOf(const absl::Status& status) { return status; }

template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

// Polymorphic over Status and StatusOr<T>; see ::testing::MakePolymorphicMatcher.
class StatusIsMatcher {
 public:
  StatusIsMatcher(absl::StatusCode code, ::testing::Matcher<const std::string&> message_matcher)
      : code_(code), message_matcher_(std::move(message_matcher)) {}

  template <typename StatusType>
  bool MatchAndExplain(const StatusType& value, ::testing::MatchResultListener* listener) const {
    const absl::Status& status = StatusOf(value);
    *listener << "whose status is " << status;
    if (status.code() != code_) return false;
    return message_matcher_.Matches(std::string(status.message()));
  }

  void DescribeTo(std::ostream* os) const {
    *os << "has status code " << code_ << " and a message that ";
    message_matcher_.DescribeTo(os);
  }

  void DescribeNegationTo(std::ostream* os) const {
    *os << "has a status code other than " << code_ << " or a message that ";
    message_matcher_.DescribeNegationTo(os);
  }

 private:
  absl::StatusCode code_;
  ::testing::Matcher<const std::string&> message_matcher_;
};

class IsOkMatcher {
 public:
  template <typename StatusType>
  bool MatchAndExplain(const StatusType& value, ::testing::MatchResultListener* listener) const {
    const absl::Status& status = StatusOf(value);
    *listener << "whose status is " << status;
    return status.ok();
  }

  void DescribeTo(std::ostream* os) const { *os << "is OK"; }
  void DescribeNegationTo(std::ostream* os) const { *os << "is not OK"; }
};

}  // namespace internal

// Matches an OK absl::Status or an absl::StatusOr<T> that holds a value.
inline ::testing::PolymorphicMatcher<internal::IsOkMatcher> IsOk() {
  return ::testing::MakePolymorphicMatcher(internal::IsOkMatcher());
}

// Matches a status with `code` whose message matches `message_matcher` (a string or a matcher
// such as ::testing::HasSubstr).
template <typename MessageMatcher>
::testing::PolymorphicMatcher<internal::StatusIsMatcher> StatusIs(
    absl::StatusCode code, MessageMatcher&& message_matcher) {
  return ::testing::MakePolymorphicMatcher(internal::StatusIsMatcher(
      code,
      ::testing::MatcherCast<const std::string&>(std::forward<MessageMatcher>(message_matcher))));
}

// Matches a status with `code`, whatever its message.
inline ::testing::PolymorphicMatcher<internal::StatusIsMatcher> StatusIs(absl::StatusCode code) {
  return StatusIs(code, ::testing::_);
}

}  // namespace tl::testing

#define TL_STATUS_MATCHERS_CONCAT_INNER_(a, b) a##b
#define TL_STATUS_MATCHERS_CONCAT_(a, b) TL_STATUS_MATCHERS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::StatusOr<T>); fails the test with the status when it is not OK,
// otherwise moves the value into `lhs`, which may declare a variable ("auto job"). Like other
// ASSERT_ macros it returns from the enclosing function, which must return void.
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  TL_ASSERT_OK_AND_ASSIGN_IMPL_(TL_STATUS_MATCHERS_CONCAT_(tl_status_or_, __LINE__), lhs, expr)

#define TL_ASSERT_OK_AND_ASSIGN_IMPL_(status_or, lhs, expr)                  \
  auto status_or = (expr);                                                   \
  ASSERT_TRUE(status_or.ok()) << #expr << " failed: " << status_or.status(); \
  lhs = std::move(status_or).value()
