#include "model/manifest.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "base/atomic_file.h"
#include "base/errors.h"

namespace tl::engine {
namespace {

constexpr char kFormat[] = "tl.backbone.v1";

using Json = nlohmann::json;

// Every error names the file and the field, so that a user can fix the
// manifest without reading the engine.
EngineError FieldError(const std::string& origin, const std::string& field,
                       const std::string& problem) {
  return InvalidArgument("backbone manifest " + origin + ": field \"" + field + "\" " + problem);
}

const Json& Require(const Json& object, const std::string& key, const std::string& origin) {
  auto it = object.find(key);
  if (it == object.end()) throw FieldError(origin, key, "is missing");
  return *it;
}

std::string RequireString(const Json& object, const std::string& key, const std::string& origin) {
  const Json& value = Require(object, key, origin);
  if (!value.is_string()) throw FieldError(origin, key, "must be a string");
  return value.get<std::string>();
}

int64_t RequirePositiveInt(const Json& object, const std::string& key, const std::string& origin) {
  const Json& value = Require(object, key, origin);
  if (!value.is_number_integer() || value.get<int64_t>() <= 0) {
    throw FieldError(origin, key, "must be a positive integer");
  }
  return value.get<int64_t>();
}

std::array<float, 3> RequireTriple(const Json& object, const std::string& key,
                                   const std::string& origin, bool positive) {
  const Json& value = Require(object, key, origin);
  if (!value.is_array() || value.size() != 3) {
    throw FieldError(origin, key, "must be an array of 3 numbers (R, G, B)");
  }
  std::array<float, 3> triple{};
  for (size_t i = 0; i < 3; ++i) {
    if (!value[i].is_number()) throw FieldError(origin, key, "must hold numbers only");
    triple[i] = value[i].get<float>();
    if (positive && !(triple[i] > 0)) throw FieldError(origin, key, "must hold positive numbers");
  }
  return triple;
}

void RejectUnknownKeys(const Json& object, const std::set<std::string>& known,
                       const std::string& origin, const std::string& prefix) {
  for (const auto& [key, value] : object.items()) {
    if (known.count(key) == 0) throw FieldError(origin, prefix + key, "is not a known field");
  }
}

std::vector<LayerGroup> ParseLayerGroups(const Json& object, const std::string& origin) {
  const Json& groups = Require(object, "layer_groups", origin);
  if (!groups.is_array() || groups.empty()) {
    throw FieldError(origin, "layer_groups", "must be a non-empty array");
  }
  std::vector<LayerGroup> parsed;
  std::set<std::string> seen_modules;
  for (size_t i = 0; i < groups.size(); ++i) {
    const std::string field = "layer_groups[" + std::to_string(i) + "]";
    const Json& group = groups[i];
    if (!group.is_object()) throw FieldError(origin, field, "must be an object");
    RejectUnknownKeys(group, {"name", "modules"}, origin, field + ".");
    LayerGroup layer_group;
    layer_group.name = RequireString(group, "name", origin + " " + field);
    const Json& modules = Require(group, "modules", origin + " " + field);
    if (!modules.is_array() || modules.empty()) {
      throw FieldError(origin, field + ".modules", "must be a non-empty array of module paths");
    }
    for (const Json& module : modules) {
      if (!module.is_string() || module.get<std::string>().empty()) {
        throw FieldError(origin, field + ".modules", "must hold non-empty strings");
      }
      if (!seen_modules.insert(module.get<std::string>()).second) {
        throw FieldError(origin, field + ".modules",
                         "names \"" + module.get<std::string>() + "\" twice");
      }
      layer_group.modules.push_back(module.get<std::string>());
    }
    parsed.push_back(std::move(layer_group));
  }
  return parsed;
}

}  // namespace

std::string ManifestPathFor(const std::string& backbone_path) {
  const size_t slash = backbone_path.find_last_of('/');
  const size_t dot = backbone_path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) {
    return backbone_path + ".json";
  }
  return backbone_path.substr(0, dot) + ".json";
}

BackboneManifest ParseManifest(const std::string& json_text, const std::string& origin) {
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const Json::parse_error& error) {
    throw InvalidArgument("backbone manifest " + origin + " is not valid JSON: " + error.what());
  }
  if (!root.is_object()) throw InvalidArgument("backbone manifest " + origin + " must be an object");
  RejectUnknownKeys(root,
                    {"format", "architecture", "feature_dim", "input_size", "mean", "std",
                     "layer_groups", "source"},
                    origin, "");
  const std::string format = RequireString(root, "format", origin);
  if (format != kFormat) {
    throw FieldError(origin, "format", "is \"" + format + "\", expected \"" + kFormat + "\"");
  }
  BackboneManifest manifest;
  manifest.architecture = RequireString(root, "architecture", origin);
  manifest.feature_dim = RequirePositiveInt(root, "feature_dim", origin);
  manifest.input_size = static_cast<int>(RequirePositiveInt(root, "input_size", origin));
  manifest.mean = RequireTriple(root, "mean", origin, /*positive=*/false);
  manifest.std = RequireTriple(root, "std", origin, /*positive=*/true);
  manifest.layer_groups = ParseLayerGroups(root, origin);
  if (root.contains("source")) manifest.source = RequireString(root, "source", origin);
  return manifest;
}

BackboneManifest ReadManifest(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InvalidArgument("backbone manifest " + path + " cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  return ParseManifest(text.str(), path);
}

void WriteManifest(const BackboneManifest& manifest, const std::string& path) {
  Json groups = Json::array();
  for (const LayerGroup& group : manifest.layer_groups) {
    groups.push_back({{"name", group.name}, {"modules", group.modules}});
  }
  Json root = {{"format", kFormat},
               {"architecture", manifest.architecture},
               {"feature_dim", manifest.feature_dim},
               {"input_size", manifest.input_size},
               {"mean", manifest.mean},
               {"std", manifest.std},
               {"layer_groups", groups},
               {"source", manifest.source}};
  WriteFileAtomically(path, root.dump(2) + "\n");
}

}  // namespace tl::engine
