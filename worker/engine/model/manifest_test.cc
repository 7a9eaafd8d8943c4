#include "model/manifest.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "base/errors.h"
#include "common/testing/temp_dir.h"

namespace tl::engine {
namespace {

constexpr char kValid[] = R"({
  "format": "tl.backbone.v1", "architecture": "resnet18", "feature_dim": 512,
  "input_size": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
  "layer_groups": [{"name": "stem", "modules": ["conv1", "bn1"]},
                   {"name": "layer4", "modules": ["layer4"]}],
  "source": "test"})";

std::string ErrorOf(const std::string& text) {
  try {
    ParseManifest(text, "m.json");
  } catch (const EngineError& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
    return error.what();
  }
  return "";
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  text.replace(text.find(from), from.size(), to);
  return text;
}

TEST(ManifestTest, ParsesEveryField) {
  const BackboneManifest manifest = ParseManifest(kValid, "m.json");
  EXPECT_EQ(manifest.architecture, "resnet18");
  EXPECT_EQ(manifest.feature_dim, 512);
  EXPECT_EQ(manifest.input_size, 224);
  EXPECT_FLOAT_EQ(manifest.mean[1], 0.456f);
  EXPECT_FLOAT_EQ(manifest.std[2], 0.225f);
  ASSERT_EQ(manifest.layer_groups.size(), 2u);
  EXPECT_EQ(manifest.layer_groups[0].name, "stem");
  EXPECT_EQ(manifest.layer_groups[0].modules, (std::vector<std::string>{"conv1", "bn1"}));
  EXPECT_EQ(manifest.source, "test");
}

TEST(ManifestTest, ErrorsNameTheFileAndField) {
  EXPECT_NE(ErrorOf(Replace(kValid, "\"source\"", "\"sauce\""))
                .find("backbone manifest m.json: field \"sauce\" is not a known field"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(kValid, "\"name\": \"stem\",", "\"name\": \"stem\", \"lr\": 1,"))
                .find("m.json: field \"layer_groups[0].lr\" is not a known field"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(kValid, "\"feature_dim\": 512", "\"feature_dim\": -1")).find("feature_dim"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(kValid, "0.229,", "0,")).find("\"std\""), std::string::npos);
  EXPECT_NE(ErrorOf(Replace(kValid, "tl.backbone.v1", "other")).find("\"format\""), std::string::npos);
  EXPECT_NE(ErrorOf(Replace(kValid, "\"layer4\"]", "\"conv1\"]")).find("twice"), std::string::npos);
  EXPECT_NE(ErrorOf(Replace(kValid, "\"modules\": [\"layer4\"]", "\"modules\": []"))
                .find("layer_groups[1].modules"),
            std::string::npos);
  EXPECT_NE(ErrorOf("{not json").find("m.json is not valid JSON"), std::string::npos);
  EXPECT_NE(ErrorOf(Replace(kValid, "\"architecture\": \"resnet18\",", "")).find("architecture"),
            std::string::npos);
}

TEST(ManifestTest, WriteThenReadRoundTrips) {
  const tl::testing::TempDir dir;
  const BackboneManifest original = ParseManifest(kValid, "m.json");
  const std::string path = dir.Sub("b.json");
  WriteManifest(original, path);
  const BackboneManifest read = ReadManifest(path);
  EXPECT_EQ(read.architecture, original.architecture);
  EXPECT_EQ(read.layer_groups.size(), original.layer_groups.size());
  EXPECT_EQ(read.layer_groups[1].modules, original.layer_groups[1].modules);
  EXPECT_FLOAT_EQ(read.mean[0], original.mean[0]);
}

TEST(ManifestTest, MissingFileIsNamed) {
  try {
    ReadManifest("/nonexistent/b.json");
    FAIL() << "expected an error";
  } catch (const EngineError& error) {
    EXPECT_NE(std::string(error.what()).find("/nonexistent/b.json"), std::string::npos);
  }
}

TEST(ManifestTest, ManifestSitsBesideTheBackbone) {
  EXPECT_EQ(ManifestPathFor("/a/b/resnet18.pt"), "/a/b/resnet18.json");
  EXPECT_EQ(ManifestPathFor("/a.b/c"), "/a.b/c.json");
  EXPECT_EQ(ManifestPathFor("net"), "net.json");
}

}  // namespace
}  // namespace tl::engine
