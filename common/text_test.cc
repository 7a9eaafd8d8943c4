#include "common/text.h"

#include <gtest/gtest.h>

#include <string>

namespace tl {
namespace {

TEST(TextTest, CountsCodePointsNotBytes) {
  EXPECT_EQ(CountCodePoints(""), 0u);
  EXPECT_EQ(CountCodePoints("flowers"), 7u);
  std::string accents;
  for (int i = 0; i < 200; ++i) accents += "\xC3\xA9";  // é, two bytes each
  EXPECT_EQ(accents.size(), 400u);
  EXPECT_EQ(CountCodePoints(accents), 200u);
  EXPECT_EQ(CountCodePoints("\xF0\x9F\x8C\xB7"), 1u);  // a four-byte flower
  EXPECT_EQ(CountCodePoints("\xE2\x82"), 2u);            // a cut sequence: two stray bytes
}

TEST(TextTest, FindsC0DeleteAndC1Controls) {
  EXPECT_FALSE(HasControlCharacters("résumé \xF0\x9F\x8C\xB7 jobs"));
  EXPECT_TRUE(HasControlCharacters("two\nlines"));
  EXPECT_TRUE(HasControlCharacters("tab\there"));
  EXPECT_TRUE(HasControlCharacters(std::string("nul\0byte", 8)));
  EXPECT_TRUE(HasControlCharacters("\x1b[31mred"));
  EXPECT_TRUE(HasControlCharacters("del\x7f"));
  EXPECT_TRUE(HasControlCharacters("csi\xC2\x9B"));     // U+009B
  EXPECT_FALSE(HasControlCharacters("nbsp\xC2\xA0"));  // U+00A0 is printable
  EXPECT_TRUE(HasControlCharacters("abc\xE2\x80\xAEtxt.exe"));  // right-to-left override
  EXPECT_TRUE(HasControlCharacters("zero\xE2\x80\x8Bwidth"));
  EXPECT_TRUE(HasControlCharacters("line\xE2\x80\xA8separator"));
  EXPECT_TRUE(HasControlCharacters("\xEF\xBB\xBFbom"));
  // Bytes that are not well-formed UTF-8: a stray 8-bit CSI, an overlong U+009B, a surrogate.
  EXPECT_TRUE(HasControlCharacters("stray\x9B"));
  EXPECT_TRUE(HasControlCharacters("overlong\xE0\x82\x9B"));
  EXPECT_TRUE(HasControlCharacters("surrogate\xED\xA0\x80"));
  EXPECT_FALSE(HasControlCharacters("\xE2\x82\xAC euro"));
}

TEST(TextTest, EscapesControlsIntoOnePlainLine) {
  EXPECT_EQ(EscapeControlCharacters("plain é"), "plain é");
  EXPECT_EQ(EscapeControlCharacters("job\n2026-12-06T00:00:00Z I tlserver] forged"),
            "job\\x0a2026-12-06T00:00:00Z I tlserver] forged");
  EXPECT_EQ(EscapeControlCharacters("\x1b[31mred"), "\\x1b[31mred");
  EXPECT_EQ(EscapeControlCharacters(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(EscapeControlCharacters("\xC2\x9B" "2J"), "\\u009b2J");
  EXPECT_EQ(EscapeControlCharacters("a\xE2\x80\xAE" "b"), "a\\u202eb");
  EXPECT_EQ(EscapeControlCharacters("x\x9By"), "x\\x9by");
  EXPECT_EQ(EscapeControlCharacters("\xE0\x82\x9B"), "\\xe0\\x82\\x9b");
  EXPECT_FALSE(HasControlCharacters(
      EscapeControlCharacters("\r\n\t\x7f\xC2\x85\x9b\xE2\x80\xA8\xF4\x90\x80\x80")));
}

TEST(TextTest, EscapesOnlyMalformedUtf8ForProtoStrings) {
  EXPECT_EQ(EscapeMalformedUtf8("caf\xC3\xA9\ttab"), "caf\xC3\xA9\ttab");
  EXPECT_EQ(EscapeMalformedUtf8("latin1 caf\xE9"), "latin1 caf\\xe9");
  EXPECT_EQ(EscapeMalformedUtf8("cut \xE2\x82"), "cut \\xe2\\x82");
}

TEST(TextTest, ClipsAtACodePointBoundary) {
  EXPECT_EQ(ClipUtf8("short", 10), "short");
  EXPECT_EQ(ClipUtf8("abcdefghij", 8), "abcde...");
  // "éééx" is seven bytes; six allowed leave three for text, room for one é (two bytes).
  EXPECT_EQ(ClipUtf8("\xC3\xA9\xC3\xA9\xC3\xA9x", 6), "\xC3\xA9...");
  EXPECT_LE(ClipUtf8(std::string(5000, 'x'), 4096).size(), 4096u);
  EXPECT_EQ(ClipUtf8("abcdef", 2), "..");
  EXPECT_EQ(PrefixUtf8("abcdef", 4), "abcd");
  EXPECT_EQ(PrefixUtf8("\xC3\xA9\xC3\xA9", 3), "\xC3\xA9");
  EXPECT_EQ(PrefixUtf8("short", 10), "short");
}

}  // namespace
}  // namespace tl
