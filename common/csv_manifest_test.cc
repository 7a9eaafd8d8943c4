#include "common/csv_manifest.h"

#include <gtest/gtest.h>

#include <string>

namespace tl {
namespace {

TEST(ParseCsvManifestTest, ReadsPathLabelLinesWithTheirLineNumbers) {
  const CsvManifest manifest = ParseCsvManifest("a/1.png,cat\n\nb/2.JPG , dog \r\n");
  ASSERT_EQ(manifest.error, "");
  ASSERT_EQ(manifest.entries.size(), 2u);
  EXPECT_EQ(manifest.entries[0].path, "a/1.png");
  EXPECT_EQ(manifest.entries[0].label, "cat");
  EXPECT_EQ(manifest.entries[0].line, 1);
  EXPECT_EQ(manifest.entries[1].path, "b/2.JPG");
  EXPECT_EQ(manifest.entries[1].label, "dog");
  EXPECT_EQ(manifest.entries[1].line, 3);
}

TEST(ParseCsvManifestTest, SkipsAHeaderLineOnlyFirst) {
  const CsvManifest with_header = ParseCsvManifest("path,label\nx.png,a\n");
  ASSERT_EQ(with_header.error, "");
  ASSERT_EQ(with_header.entries.size(), 1u);
  EXPECT_EQ(with_header.entries[0].line, 2);
  const CsvManifest late_header = ParseCsvManifest("x.png,a\npath,label\n");
  EXPECT_EQ(late_header.error.rfind("line 2: ", 0), 0u) << late_header.error;
}

TEST(ParseCsvManifestTest, QuotedFieldsMayHoldCommasAndQuotes) {
  const CsvManifest manifest = ParseCsvManifest("\"a,b \"\"c\"\".png\",\"big, red\"\n");
  ASSERT_EQ(manifest.error, "");
  ASSERT_EQ(manifest.entries.size(), 1u);
  EXPECT_EQ(manifest.entries[0].path, "a,b \"c\".png");
  EXPECT_EQ(manifest.entries[0].label, "big, red");
}

TEST(ParseCsvManifestTest, NamesTheLineOfEachProblem) {
  struct Case {
    const char* text;
    const char* error;
  };
  for (const Case& c : {
           Case{"a.png,x\nb.png\n", "line 2: expected 2 fields (path,label), found 1"},
           Case{"a.png,x\nb.png,x,y\n", "line 2: expected 2 fields (path,label), found 3"},
           Case{"a.png,x\n,x\n", "line 2: the path is empty"},
           Case{"a.png,x\nb.png,\n", "line 2: the label is empty"},
           Case{"a.png,x\nnotes.txt,x\n", "line 2: \"notes.txt\" is not an image file name"},
           Case{"\"a.png,x\n", "line 1: a quoted field has no closing quote"},
           Case{"\"a.png\"z,x\n", "line 1: text follows a quoted field"},
       }) {
    const CsvManifest manifest = ParseCsvManifest(c.text);
    EXPECT_EQ(manifest.error.rfind(c.error, 0), 0u) << c.text << " -> " << manifest.error;
    EXPECT_TRUE(manifest.entries.empty() || !manifest.error.empty());
  }
}

TEST(ParseCsvManifestTest, EmptyTextHasNoEntries) {
  const CsvManifest manifest = ParseCsvManifest("");
  EXPECT_EQ(manifest.error, "");
  EXPECT_TRUE(manifest.entries.empty());
}

}  // namespace
}  // namespace tl
