// ctest docs.spec_table: docs/API.md's JobSpec table against the spec table,
// and the check itself against copies of the docs changed on purpose, so that
// it is known to fail when the docs go wrong.
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/spec/spec_docs_check.h"
#include "server/spec/spec_fields.h"

namespace tl::server {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::tl::v1::TrainingSpec;

std::string ApiDocs() {
  std::ifstream in(TL_API_DOCS);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// `markdown` with the cell `column` (0: field, ... 3: bounds) of line `line` replaced.
std::string WithCell(const std::string& markdown, int line, int column, const std::string& cell) {
  std::vector<std::string> lines = absl::StrSplit(markdown, '\n');
  std::vector<std::string> cells = absl::StrSplit(lines[line], '|');
  cells[column + 1] = " " + cell + " ";  // cells[0] is the text before the first '|'
  lines[line] = absl::StrJoin(cells, "|");
  return absl::StrJoin(lines, "\n");
}

std::string WithoutLine(const std::string& markdown, int line) {
  std::vector<std::string> lines = absl::StrSplit(markdown, '\n');
  lines.erase(lines.begin() + line);
  return absl::StrJoin(lines, "\n");
}

TEST(SpecDocsTest, ApiDocsAgreeWithTheSpecTable) {
  const std::vector<std::string> disagreements = CompareDocsWithTable(ApiDocs(), SpecFields());
  EXPECT_THAT(disagreements, IsEmpty()) << "docs/API.md:\n" << absl::StrJoin(disagreements, "\n");
}

// ---------------------------------------------------------------- the check fails when it should

class SpecDocsChangedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    docs_ = ApiDocs();
    absl::StatusOr<std::map<std::string, DocsRow>> rows = ParseJobSpecTable(docs_);
    ASSERT_TRUE(rows.ok()) << rows.status();
    rows_ = *rows;
  }

  // The line of `field`'s row, or -1 (and a failure) when it has none.
  int LineOf(const SpecField& field) {
    const auto row = rows_.find(field.JsonPath());
    if (row != rows_.end()) return row->second.line;
    ADD_FAILURE() << field.JsonPath() << " has no row in docs/API.md";
    return -1;
  }

  std::string docs_;
  std::map<std::string, DocsRow> rows_;
};

TEST_F(SpecDocsChangedTest, EveryFieldsDefaultIsChecked) {
  for (const SpecField& field : SpecFields()) {
    if (LineOf(field) < 0) continue;
    const std::string changed = WithCell(docs_, LineOf(field), 2, "999");
    EXPECT_THAT(CompareDocsWithTable(changed, SpecFields()),
                Contains(AllOf(HasSubstr("`" + field.JsonPath() + "`"), HasSubstr("default"))))
        << field.path;
  }
}

TEST_F(SpecDocsChangedTest, EveryFieldsBoundsAreChecked) {
  for (const SpecField& field : SpecFields()) {
    if (DocsBounds(field).empty() || LineOf(field) < 0) continue;
    const std::string changed = WithCell(docs_, LineOf(field), 3, "Anything.");
    EXPECT_THAT(CompareDocsWithTable(changed, SpecFields()),
                Contains(AllOf(HasSubstr("`" + field.JsonPath() + "`"),
                               HasSubstr("bounds do not say"))))
        << field.path;
  }
}

TEST_F(SpecDocsChangedTest, EveryFieldNeedsARow) {
  for (const SpecField& field : SpecFields()) {
    if (LineOf(field) < 0) continue;
    const std::string changed = WithoutLine(docs_, LineOf(field));
    EXPECT_THAT(CompareDocsWithTable(changed, SpecFields()),
                Contains(HasSubstr("`" + field.JsonPath() + "` has no row")))
        << field.path;
  }
}

TEST_F(SpecDocsChangedTest, AnotherTypeIsFound) {
  const SpecField epochs("training.epochs");
  ASSERT_GE(LineOf(epochs), 0);
  EXPECT_THAT(CompareDocsWithTable(WithCell(docs_, LineOf(epochs), 1, "int64"), SpecFields()),
              Contains(HasSubstr("`training.epochs` (line " + std::to_string(LineOf(epochs) + 1) +
                                 "): type is \"int64\"")));
}

TEST_F(SpecDocsChangedTest, DocsWithoutTheTableFail) {
  EXPECT_THAT(CompareDocsWithTable("# API\n\nNo table here.\n", SpecFields()),
              ElementsAre(HasSubstr("no table headed")));
}

// ---------------------------------------------------------------- what the docs must say

TEST(SpecDocsTextTest, DefaultsAreTheValueOrTheRulesWords) {
  EXPECT_EQ(DocsDefault(SpecField("training.epochs").Defaults(10)), "10");
  EXPECT_EQ(DocsDefault(SpecField("training.threads")), "0");
  EXPECT_EQ(DocsDefault(SpecField("preprocessing.horizontal_flip").Defaults(true)), "true");
  EXPECT_EQ(DocsDefault(SpecField("training.optimizer").Defaults(TrainingSpec::ADAM)), "`ADAM`");
  EXPECT_EQ(DocsDefault(SpecField("training.strategy")), "`STRATEGY_UNSPECIFIED`");
  EXPECT_EQ(DocsDefault(SpecField("training.momentum")
                            .Defaults([](const tl::v1::JobSpec&) { return 0.5; }, "a half")),
            "a half");
  EXPECT_EQ(DocsDefault(SpecField("training.precision").ZeroMeans("`FP32`")), "`FP32`");
}

TEST(SpecDocsTextTest, BoundsAreIntervalsValuesAndConditions) {
  EXPECT_THAT(DocsBounds(SpecField("training.clip_grad_norm").Within(0, 1e6)),
              ElementsAre("[0, 1e6]"));
  EXPECT_THAT(DocsBounds(SpecField("training.learning_rate").Within(1e-12, 10)),
              ElementsAre("[1e-12, 10]"));
  EXPECT_THAT(DocsBounds(SpecField("training.label_smoothing").Within(Open(0), Open(1))),
              ElementsAre("(0, 1)"));
  EXPECT_THAT(DocsBounds(SpecField("preprocessing.image_size").Within(8, 1024).ZeroMeansUnset()),
              ElementsAre("0, or [8, 1024]"));
  EXPECT_THAT(DocsBounds(SpecField("resources.min_gpu_memory_bytes").AtLeast(0)),
              ElementsAre("≥ 0"));
  EXPECT_THAT(
      DocsBounds(SpecField("training.warmup_epochs")
                     .Within(0, SpecLimit([](const tl::v1::JobSpec&) { return 1.0; }, "`epochs`"))),
      ElementsAre("[0, `epochs`]"));
  EXPECT_THAT(DocsBounds(SpecField("training.optimizer").UnknownValue("is not known")),
              ElementsAre("`SGD`", "`ADAM`", "`ADAMW`"));
  SpecCondition step;
  step.written = "`STEP` only";
  EXPECT_THAT(DocsBounds(SpecField("training.step_gamma").OnlyUnder(step).Within(Open(0), 1)),
              ElementsAre("`STEP` only", "(0, 1]"));
}

TEST(SpecDocsTextTest, DefaultsMayBeFollowedByWordsButNotByDigits) {
  const std::vector<SpecField> fields = {SpecField("training.epochs").Defaults(1)};
  const auto docs = [](const std::string& default_text) {
    return "| field | type | default | bounds and rules |\n| --- | --- | --- | --- |\n"
           "| `training.epochs` | int32 | " + default_text + " | Any. |\n";
  };
  EXPECT_THAT(CompareDocsWithTable(docs("1"), fields), IsEmpty());
  EXPECT_THAT(CompareDocsWithTable(docs("1: one"), fields), IsEmpty());
  EXPECT_THAT(CompareDocsWithTable(docs("1 (one)"), fields), IsEmpty());
  EXPECT_THAT(CompareDocsWithTable(docs("10"), fields), Not(IsEmpty()));
  EXPECT_THAT(CompareDocsWithTable(docs("1.5"), fields), Not(IsEmpty()));
  EXPECT_THAT(CompareDocsWithTable(docs("2/2"), fields), IsEmpty()) << "a fraction is a number";
  EXPECT_THAT(CompareDocsWithTable(docs("2/3"), fields), Not(IsEmpty()));
}

TEST(SpecDocsTextTest, ARowMayNameSeveralFields) {
  const std::string docs =
      "| field | type | default | bounds and rules |\n| --- | --- | --- | --- |\n"
      "| `preprocessing.brightness`, `.contrast` | double | 0: off | Each in [0, 1]. |\n";
  const std::vector<SpecField> fields = {SpecField("preprocessing.brightness").Within(0, 1),
                                         SpecField("preprocessing.contrast").Within(0, 1),
                                         SpecField("preprocessing.saturation").Within(0, 1)};
  EXPECT_THAT(CompareDocsWithTable(docs, fields),
              ElementsAre(HasSubstr("`preprocessing.saturation` has no row")));
}

}  // namespace
}  // namespace tl::server
