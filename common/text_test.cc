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
}

TEST(TextTest, EscapesControlsIntoOnePlainLine) {
  EXPECT_EQ(EscapeControlCharacters("plain é"), "plain é");
  EXPECT_EQ(EscapeControlCharacters("job\n2026-12-06T00:00:00Z I tlserver] forged"),
            "job\\x0a2026-12-06T00:00:00Z I tlserver] forged");
  EXPECT_EQ(EscapeControlCharacters("\x1b[31mred"), "\\x1b[31mred");
  EXPECT_EQ(EscapeControlCharacters(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(EscapeControlCharacters("\xC2\x9B" "2J"), "\\u009b2J");
  EXPECT_FALSE(HasControlCharacters(EscapeControlCharacters("\r\n\t\x7f\xC2\x85")));
}

TEST(TextTest, ClipsAtACodePointBoundary) {
  EXPECT_EQ(ClipUtf8("short", 10), "short");
  EXPECT_EQ(ClipUtf8("abcdefghij", 8), "abcde...");
  // "éééx" is seven bytes; six allowed leave three for text, room for one é (two bytes).
  EXPECT_EQ(ClipUtf8("\xC3\xA9\xC3\xA9\xC3\xA9x", 6), "\xC3\xA9...");
  EXPECT_LE(ClipUtf8(std::string(5000, 'x'), 4096).size(), 4096u);
  EXPECT_EQ(ClipUtf8("abcdef", 2), "..");
}

}  // namespace
}  // namespace tl
