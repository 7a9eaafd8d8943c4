#include "server/api/auth.h"

#include <string>

#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tl::server {
namespace {

using ::testing::HasSubstr;
using ::tl::testing::StatusIs;

constexpr char kTokens[] = R"(# token principal role
alice-token-0123456789 alice user

bob-token-0123456789ab   bob    user
worker-token-0123456789 gpu-1 worker
admin-token-0123456789 ops admin
)";

TEST(TokenAuthenticatorTest, MapsEachTokenToItsPrincipalAndRole) {
  ASSERT_OK_AND_ASSIGN(auto authenticator, TokenAuthenticator::Parse(kTokens, "tokens"));
  EXPECT_EQ(authenticator->size(), 4u);
  ASSERT_OK_AND_ASSIGN(Principal alice, authenticator->Authenticate("Bearer alice-token-0123456789"));
  EXPECT_EQ(alice.name, "alice");
  EXPECT_EQ(alice.role, Role::kUser);
  EXPECT_FALSE(alice.SeesEveryJob());
  ASSERT_OK_AND_ASSIGN(Principal bob, authenticator->Authenticate("Bearer bob-token-0123456789ab"));
  EXPECT_EQ(bob.name, "bob");
  ASSERT_OK_AND_ASSIGN(Principal worker,
                       authenticator->Authenticate("Bearer worker-token-0123456789"));
  EXPECT_EQ(worker.role, Role::kWorker);
  ASSERT_OK_AND_ASSIGN(Principal admin, authenticator->Authenticate("Bearer admin-token-0123456789"));
  EXPECT_EQ(admin.name, "ops");
  EXPECT_TRUE(admin.SeesEveryJob());
}

TEST(TokenAuthenticatorTest, RefusesMissingMalformedAndUnknownCredentials) {
  ASSERT_OK_AND_ASSIGN(auto authenticator, TokenAuthenticator::Parse(kTokens, "tokens"));
  EXPECT_THAT(authenticator->Authenticate(""),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("no credentials")));
  EXPECT_THAT(authenticator->Authenticate("alice-token-0123456789"),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("Bearer")));
  EXPECT_THAT(authenticator->Authenticate("Bearer alice-token-012345678"),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("unknown token")));
  EXPECT_THAT(authenticator->Authenticate("Basic alice-token-0123456789"),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(TokenAuthenticatorTest, AWorkerTokenConnectsOnlyAsTheWorkerIdsItNames) {
  ASSERT_OK_AND_ASSIGN(auto authenticator,
                       TokenAuthenticator::Parse("one-worker-token-0123 gpu-1 worker\n"
                                                 "pool-token-0123456789 pool worker cpu-*,spare\n"
                                                 "alice-token-0123456789 alice user\n",
                                                 "tokens"));
  ASSERT_OK_AND_ASSIGN(Principal one, authenticator->Authenticate("Bearer one-worker-token-0123"));
  EXPECT_TRUE(one.MayConnectAsWorker("gpu-1"));
  EXPECT_FALSE(one.MayConnectAsWorker("gpu-2"));
  EXPECT_FALSE(one.MayConnectAsWorker("gpu-1x"));
  ASSERT_OK_AND_ASSIGN(Principal pool, authenticator->Authenticate("Bearer pool-token-0123456789"));
  EXPECT_TRUE(pool.MayConnectAsWorker("cpu-7"));
  EXPECT_TRUE(pool.MayConnectAsWorker("spare"));
  EXPECT_FALSE(pool.MayConnectAsWorker("pool"));  // the list replaces the principal's name
  EXPECT_FALSE(pool.MayConnectAsWorker("gpu-1"));
  EXPECT_FALSE(pool.MayConnectAsWorker("spare-2"));
  ASSERT_OK_AND_ASSIGN(Principal alice, authenticator->Authenticate("Bearer alice-token-0123456789"));
  EXPECT_FALSE(alice.MayConnectAsWorker("alice"));
  // Without authentication anyone connects as any worker.
  EXPECT_TRUE(Principal::Unauthenticated().MayConnectAsWorker("anything"));

  EXPECT_THAT(TokenAuthenticator::Parse("alice-token-0123456789 alice user a,b\n", "t.txt"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("only worker tokens")));
  EXPECT_THAT(TokenAuthenticator::Parse("pool-token-0123456789 pool worker a,*\n", "t.txt"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bare")));
  EXPECT_THAT(TokenAuthenticator::Parse("pool-token-0123456789 pool worker a,,b\n", "t.txt"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("t.txt:1:")));
}

TEST(TokenAuthenticatorTest, BadFilesNameTheFileAndLine) {
  EXPECT_THAT(TokenAuthenticator::Parse("alice-token-0123456789 alice\n", "t.txt"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("t.txt:1:")));
  EXPECT_THAT(TokenAuthenticator::Parse("\nalice-token-0123456789 alice root\n", "t.txt"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("t.txt:2: role \"root\"")));
  EXPECT_THAT(TokenAuthenticator::Parse("short alice user\n", "t.txt"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shorter than 16")));
  EXPECT_THAT(TokenAuthenticator::Parse(
                  "alice-token-0123456789 alice user\nalice-token-0123456789 bob user\n", "t.txt"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("t.txt:2: the token is listed twice")));
  EXPECT_THAT(TokenAuthenticator::Parse("# nothing\n", "t.txt"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no tokens")));
}

TEST(TokenAuthenticatorTest, LoadsAFileAndNamesAMissingOne) {
  tl::testing::TempDir dir;
  const std::string path = dir.path() + "/tokens";
  tl::testing::WriteFile(path, kTokens);
  ASSERT_OK_AND_ASSIGN(auto authenticator, TokenAuthenticator::LoadFile(path));
  EXPECT_EQ(authenticator->size(), 4u);
  EXPECT_THAT(TokenAuthenticator::LoadFile(dir.path() + "/missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

}  // namespace
}  // namespace tl::server
