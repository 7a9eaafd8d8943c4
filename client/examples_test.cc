// The job files under examples/ are what docs/API.md and README.md point
// people at: each must parse as tlctl parses it, and pass the scheduler's
// validation against a data root holding the files and folders it names.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "client/job_file.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "server/spec/spec_validation.h"

namespace tl::client {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::tl::testing::IsOk;
using ::tl::testing::StatusIs;
using ::tl::testing::TempDir;
using ::tl::testing::WriteFile;
using ::tl::v1::Job;
using ::tl::v1::JobSpec;

std::vector<fs::path> ExampleFiles() {
  std::vector<fs::path> files;
  for (const fs::directory_entry& entry : fs::directory_iterator(TL_EXAMPLES_DIR)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  }
  return files;
}

void WriteBackbone(const fs::path& file) {
  WriteFile(file, "TorchScript stand-in: validation does not load it");
  fs::path manifest = file;
  manifest.replace_extension(".json");
  WriteFile(manifest, R"({"format": "tl.backbone.v1"})");
}

// A data root and an artifact root holding whatever `spec` names: the
// backbone with its manifest, and class folders with one image each.
class RootsFor {
 public:
  explicit RootsFor(const JobSpec& spec) {
    if (spec.backbone().has_path()) WriteBackbone(data_root() / spec.backbone().path());
    for (const std::string& dir : {spec.dataset().train_dir(), spec.dataset().val_dir()}) {
      if (dir.empty()) continue;
      for (const char* name : {"cats", "dogs"}) WriteFile(data_root() / dir / name / "0.png", "");
    }
  }

  fs::path data_root() const { return fs::path(dir_.Sub("data")); }
  fs::path artifact_root() const { return fs::path(dir_.Sub("artifacts")); }

  // Any job named by backbone.from_job has succeeded and left a backbone.
  server::SpecContext Context() const {
    server::SpecContext context{data_root().string(), artifact_root().string(), {}};
    context.find_job = [root = artifact_root()](const std::string& id) -> absl::StatusOr<Job> {
      Job job;
      job.set_id(id);
      job.set_state(Job::SUCCEEDED);
      job.mutable_result()->set_backbone_path(id + "/backbone.pt");
      WriteBackbone(root / id / "backbone.pt");
      return job;
    };
    return context;
  }

 private:
  TempDir dir_;
};

TEST(ExamplesTest, ThereAreExamplesOfEachStrategy) {
  std::set<int> strategies;
  for (const fs::path& file : ExampleFiles()) {
    absl::StatusOr<JobSpec> spec = ReadJobSpecFile(file.string());
    if (spec.ok()) strategies.insert(spec->training().strategy());
  }
  EXPECT_EQ(strategies, (std::set<int>{tl::v1::TrainingSpec::FEATURE_EXTRACTION,
                                       tl::v1::TrainingSpec::FINE_TUNE,
                                       tl::v1::TrainingSpec::FULL}));
}

TEST(ExamplesTest, EachExampleParsesAndValidates) {
  const std::vector<fs::path> files = ExampleFiles();
  ASSERT_GE(files.size(), 3u) << "examples/ lost its job files";
  for (const fs::path& file : files) {
    SCOPED_TRACE(file.string());
    absl::StatusOr<JobSpec> spec = ReadJobSpecFile(file.string());
    ASSERT_THAT(spec, IsOk());
    EXPECT_FALSE(spec->name().empty());
    RootsFor roots(*spec);
    EXPECT_THAT(server::ValidateJobSpec(*spec, roots.Context()), IsOk());
  }
}

// The two checks above can fail: a misspelt field, and a value out of bounds.
TEST(ExamplesTest, AMisspeltFieldIsRefusedNamingFileAndField) {
  TempDir dir;
  WriteFile(dir.Sub("typo.json"), R"({"training": {"epoch": 3}})");
  EXPECT_THAT(ReadJobSpecFile(dir.Sub("typo.json")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("typo.json"), HasSubstr("epoch"))));
}

TEST(ExamplesTest, AnOutOfBoundsValueFailsValidation) {
  absl::StatusOr<JobSpec> spec = ReadJobSpecFile(std::string(TL_EXAMPLES_DIR) + "/fine_tune.json");
  ASSERT_THAT(spec, IsOk());
  spec->mutable_training()->set_batch_size(5000);
  RootsFor roots(*spec);
  EXPECT_THAT(server::ValidateJobSpec(*spec, roots.Context()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("training.batch_size")));
}

}  // namespace
}  // namespace tl::client
