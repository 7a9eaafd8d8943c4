#include "common/confined_path.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"

namespace tl {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::tl::testing::IsOk;
using ::tl::testing::StatusIs;
using ::tl::testing::TempDir;

class ConfinedPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = temp_dir_.path();
    root_ = base_ + "/root";
    fs::create_directories(root_ + "/data/cats");
    fs::create_directories(base_ + "/outside");
  }
  TempDir temp_dir_;
  std::string base_;
  std::string root_;
};

TEST_F(ConfinedPathTest, RelativeAndAbsolutePathsInsideTheRootAreAccepted) {
  ASSERT_OK_AND_ASSIGN(ConfinedPath relative, ConfinePath(root_, "data/./cats/", "f"));
  EXPECT_EQ(relative.relative, "data/cats/");
  ASSERT_OK_AND_ASSIGN(ConfinedPath absolute, ConfinePath(root_, root_ + "/data", "f"));
  EXPECT_EQ(absolute.relative, "data");
  EXPECT_THAT(ConfinePath(root_, "not/yet/there", "f"), IsOk());
}

TEST_F(ConfinedPathTest, EscapesAreRefusedNamingTheField) {
  EXPECT_THAT(ConfinePath(root_, "../outside", "dataset.train_dir"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("dataset.train_dir \"../outside\" must not contain")));
  EXPECT_THAT(ConfinePath(root_, "data/../../outside", "f"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ConfinePath(root_, base_ + "/outside", "backbone.path"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside its root")));
  EXPECT_THAT(ConfinePath(root_, "", "f"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("f is empty")));
  // A sibling whose name starts with the root's is not inside it.
  fs::create_directories(root_ + "2");
  EXPECT_THAT(ConfinePath(root_, root_ + "2", "f"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(ConfinedPathTest, SymbolicLinksLeadingOutAreRefused) {
  fs::create_directory_symlink(base_ + "/outside", root_ + "/escape");
  EXPECT_THAT(ConfinePath(root_, "escape", "f"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("leads outside")));
  EXPECT_THAT(ConfinePath(root_, "escape/deeper", "f"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  fs::create_directory_symlink(root_ + "/data", root_ + "/alias");
  EXPECT_THAT(ConfinePath(root_, "alias/cats", "f"), IsOk());
}

TEST_F(ConfinedPathTest, RootsThatHoldOneAnotherAreRefused) {
  EXPECT_THAT(CheckSeparateRoots(base_ + "/data", base_ + "/artifacts"), IsOk());
  EXPECT_THAT(CheckSeparateRoots(base_ + "/data", base_ + "/data-artifacts"), IsOk());
  EXPECT_THAT(CheckSeparateRoots(base_, base_ + "/artifacts"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overlap")));
  EXPECT_THAT(CheckSeparateRoots(base_ + "/data/../data", base_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--artifact_root")));
  // Through a link as well.
  fs::create_directories(base_ + "/real");
  fs::create_directory_symlink(base_ + "/real", base_ + "/link");
  EXPECT_THAT(CheckSeparateRoots(base_ + "/link", base_ + "/real/artifacts"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace tl
