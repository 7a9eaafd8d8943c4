// The job and sweep files under examples/ are what docs/API.md and README.md
// point people at: each must parse as tlctl parses it, and pass the
// scheduler's validation against a data root holding the files and folders
// it names. Sweep files are those whose names start with "sweep".
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
#include "server/sweep/sweep_spec.h"

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
using ::tl::v1::SweepSpec;

bool IsSweepFile(const fs::path& file) {
  return file.filename().string().rfind("sweep", 0) == 0;
}

std::vector<fs::path> ExampleFiles(bool sweeps) {
  std::vector<fs::path> files;
  for (const fs::directory_entry& entry : fs::directory_iterator(TL_EXAMPLES_DIR)) {
    if (entry.path().extension() == ".json" && IsSweepFile(entry.path()) == sweeps) {
      files.push_back(entry.path());
    }
  }
  return files;
}

std::vector<fs::path> JobFiles() { return ExampleFiles(/*sweeps=*/false); }
std::vector<fs::path> SweepFiles() { return ExampleFiles(/*sweeps=*/true); }

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
    for (const std::string& dir :
         {spec.dataset().train_dir(), spec.dataset().val_dir(), spec.dataset().test_dir()}) {
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
  for (const fs::path& file : JobFiles()) {
    absl::StatusOr<JobSpec> spec = ReadJobSpecFile(file.string());
    if (spec.ok()) strategies.insert(spec->training().strategy());
  }
  EXPECT_EQ(strategies, (std::set<int>{tl::v1::TrainingSpec::FEATURE_EXTRACTION,
                                       tl::v1::TrainingSpec::FINE_TUNE, tl::v1::TrainingSpec::FULL,
                                       tl::v1::TrainingSpec::AUTO}));
}

TEST(ExamplesTest, EachExampleParsesAndValidates) {
  const std::vector<fs::path> files = JobFiles();
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

// A sweep file parses as a SweepSpec and passes the scheduler's sweep
// checks, which check every trial it can make as a job.
TEST(ExamplesTest, EachSweepParsesAndValidates) {
  const std::vector<fs::path> files = SweepFiles();
  ASSERT_GE(files.size(), 1u) << "examples/ lost its sweep file";
  for (const fs::path& file : files) {
    SCOPED_TRACE(file.string());
    absl::StatusOr<SweepSpec> spec = ReadSweepSpecFile(file.string());
    ASSERT_THAT(spec, IsOk());
    EXPECT_FALSE(spec->name().empty());
    EXPECT_GT(spec->space_size(), 0);
    RootsFor roots(spec->base());
    EXPECT_THAT(server::ValidateSweepSpec(*spec, roots.Context()), IsOk());
  }
}

// What docs/API.md says of examples/sweep.json: ASHA over a log range of the
// learning rate, the strategy and the layer groups unfrozen, at most 16 trials,
// from a base that sets its epochs (ASHA's rungs are epochs).
TEST(ExamplesTest, TheSweepIsASmallAshaSearchOverRateStrategyAndGroups) {
  absl::StatusOr<SweepSpec> spec = ReadSweepSpecFile(std::string(TL_EXAMPLES_DIR) + "/sweep.json");
  ASSERT_THAT(spec, IsOk());
  EXPECT_EQ(spec->method(), SweepSpec::ASHA);
  ASSERT_TRUE(spec->has_max_trials());
  EXPECT_LE(spec->max_trials(), 16);
  EXPECT_TRUE(spec->base().training().has_epochs());
  std::set<std::string> fields;
  for (const tl::v1::SearchParameter& parameter : spec->space()) {
    fields.insert(parameter.field());
    if (parameter.field() == "training.learning_rate") {
      EXPECT_EQ(parameter.scale(), tl::v1::SearchParameter::LOG);
      EXPECT_GT(parameter.min(), 0);
      EXPECT_LT(parameter.min(), parameter.max());
    } else {
      EXPECT_GT(parameter.values().values_size(), 1) << parameter.field();
    }
  }
  EXPECT_EQ(fields, (std::set<std::string>{"training.learning_rate", "training.strategy",
                                           "training.unfreeze_groups"}));
}

// The checks above can fail: a misspelt field, and a value out of bounds (of
// a job, and of a sweep's space).
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

TEST(ExamplesTest, AValueOutOfBoundsInTheSweepsSpaceFailsValidation) {
  absl::StatusOr<SweepSpec> spec = ReadSweepSpecFile(std::string(TL_EXAMPLES_DIR) + "/sweep.json");
  ASSERT_THAT(spec, IsOk());
  for (tl::v1::SearchParameter& parameter : *spec->mutable_space()) {
    if (parameter.field() == "training.learning_rate") parameter.set_min(0);
  }
  RootsFor roots(spec->base());
  EXPECT_THAT(server::ValidateSweepSpec(*spec, roots.Context()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("space[0].min")));
}

}  // namespace
}  // namespace tl::client
