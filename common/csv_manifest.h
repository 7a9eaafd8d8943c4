// Datasets listed in a CSV file, one image per line: `path,label`. Parsing is
// header-only and free of dependencies, so that the scheduler (which checks
// the file at submit) and the engine (which reads it) agree on every line
// without the engine depending on anything but LibTorch.
//
// Rules: blank lines are skipped; a trailing "\r" is dropped; a field may be
// wrapped in double quotes (then it may hold commas, and "" is one quote);
// spaces around an unquoted field are trimmed; a first line whose path is not
// an image file name ("path,label", "file,class") is a header and skipped.
#pragma once

#include <string>
#include <vector>

#include "common/image_files.h"

namespace tl {

struct CsvManifestEntry {
  std::string path;   // as written: relative to the CSV's folder, or absolute
  std::string label;  // the class name
  int line = 0;       // 1-based line in the file
};

struct CsvManifest {
  std::vector<CsvManifestEntry> entries;
  // Empty when the text parsed; else "line N: what is wrong".
  std::string error;
};

namespace csv_manifest_internal {

inline std::string Trim(const std::string& text) {
  const size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(" \t") - begin + 1);
}

// Splits one line into fields; returns false (with `error`) on a broken quote.
inline bool SplitLine(const std::string& line, std::vector<std::string>& fields,
                      std::string& error) {
  fields.clear();
  size_t at = 0;
  while (true) {
    std::string field;
    size_t next = at;
    while (next < line.size() && (line[next] == ' ' || line[next] == '\t')) ++next;
    if (next < line.size() && line[next] == '"') {
      ++next;
      bool closed = false;
      while (next < line.size()) {
        if (line[next] == '"') {
          if (next + 1 < line.size() && line[next + 1] == '"') {
            field += '"';
            next += 2;
            continue;
          }
          closed = true;
          ++next;
          break;
        }
        field += line[next++];
      }
      if (!closed) {
        error = "a quoted field has no closing quote";
        return false;
      }
      while (next < line.size() && (line[next] == ' ' || line[next] == '\t')) ++next;
      if (next < line.size() && line[next] != ',') {
        error = "text follows a quoted field";
        return false;
      }
    } else {
      const size_t comma = line.find(',', at);
      const size_t end = comma == std::string::npos ? line.size() : comma;
      field = Trim(line.substr(at, end - at));
      next = end;
    }
    fields.push_back(field);
    if (next >= line.size()) return true;
    at = next + 1;  // past the comma
  }
}

}  // namespace csv_manifest_internal

inline CsvManifest ParseCsvManifest(const std::string& text) {
  CsvManifest manifest;
  std::vector<std::string> fields;
  size_t begin = 0;
  int line_number = 0;
  bool first_content_line = true;
  while (begin <= text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (csv_manifest_internal::Trim(line).empty()) {
      if (end == text.size()) break;
      continue;
    }
    const std::string where = "line " + std::to_string(line_number) + ": ";
    std::string problem;
    if (!csv_manifest_internal::SplitLine(line, fields, problem)) {
      manifest.error = where + problem;
      return manifest;
    }
    const bool header = first_content_line && fields.size() == 2 && !HasImageExtension(fields[0]);
    first_content_line = false;
    if (header) continue;
    if (fields.size() != 2) {
      manifest.error = where + "expected 2 fields (path,label), found " +
                       std::to_string(fields.size());
      return manifest;
    }
    if (fields[0].empty()) {
      manifest.error = where + "the path is empty";
      return manifest;
    }
    if (fields[1].empty()) {
      manifest.error = where + "the label is empty";
      return manifest;
    }
    if (!HasImageExtension(fields[0])) {
      manifest.error = where + "\"" + fields[0] +
                       "\" is not an image file name (.png .jpg .jpeg .bmp .pgm .ppm .pbm .tif "
                       ".tiff .webp)";
      return manifest;
    }
    manifest.entries.push_back({fields[0], fields[1], line_number});
    if (end == text.size()) break;
  }
  return manifest;
}

}  // namespace tl
