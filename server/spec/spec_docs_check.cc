#include "server/spec/spec_docs_check.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tl::server {
namespace {

using ::google::protobuf::FieldDescriptor;

constexpr char kTableHeader[] = "| field | type | default | bounds and rules |";

// A number as the docs write it: 1e6 rather than a stream's 1e+06.
std::string DocsNumber(double value, bool integer) {
  if (integer) return std::to_string(static_cast<int64_t>(value));
  std::ostringstream stream;
  stream << value;
  std::string text = stream.str();
  const size_t exponent = text.find('e');
  if (exponent == std::string::npos) return text;
  std::string digits = text.substr(exponent + 1);
  const bool negative = digits[0] == '-';
  if (digits[0] == '-' || digits[0] == '+') digits.erase(0, 1);
  digits.erase(0, digits.find_first_not_of('0'));
  return absl::StrCat(text.substr(0, exponent), "e", negative ? "-" : "", digits);
}

// A value of `field` as the docs write it: a number, true or false, or `ENUM_NAME`.
std::string DocsValue(const SpecField& field, double value) {
  const FieldDescriptor& descriptor = field.descriptor();
  if (descriptor.cpp_type() == FieldDescriptor::CPPTYPE_BOOL) return value != 0 ? "true" : "false";
  if (descriptor.enum_type() != nullptr) {
    const auto* named = descriptor.enum_type()->FindValueByNumber(static_cast<int>(value));
    return absl::StrCat("`", named != nullptr ? named->name() : std::to_string(value), "`");
  }
  return DocsNumber(value, field.IsInteger());
}

std::string DocsLimit(const SpecField& field, const SpecLimit& limit) {
  return limit.from_spec ? limit.written : DocsNumber(limit.constant, field.IsInteger());
}

// The names a field cell holds: "`a.b`, `.c`" names a.b and a.c.
std::vector<std::string> FieldNames(absl::string_view cell) {
  std::vector<std::string> names;
  std::string parent;
  const std::vector<absl::string_view> pieces = absl::StrSplit(cell, '`');
  for (size_t i = 1; i < pieces.size(); i += 2) {  // the odd pieces are inside backticks
    const std::string name(pieces[i]);
    if (name.empty()) continue;
    if (name[0] == '.') {
      names.push_back(parent + name);
    } else {
      names.push_back(name);
      parent = name.substr(0, name.rfind('.') == std::string::npos ? 0 : name.rfind('.'));
    }
  }
  return names;
}

bool EndsValue(char next) {
  return next == ' ' || next == ':' || next == ';' || next == ',' || next == '(';
}

// Whether `cell` says `expected`: equal, or `expected` then words on it
// ("0: off", "0.2 (when ...)"), not "10" for "1".
bool StartsWithText(const std::string& cell, const std::string& expected) {
  if (!absl::StartsWith(cell, expected)) return false;
  return cell.size() == expected.size() || EndsValue(cell[expected.size()]);
}

// Whether `cell` starts with the number `expected`, written as the docs like
// to: 1e6, 0.75 or 3/4.
bool StartsWithNumber(const std::string& cell, double expected) {
  size_t end = 0;
  while (end < cell.size() && !EndsValue(cell[end])) ++end;
  const std::vector<absl::string_view> parts = absl::StrSplit(cell.substr(0, end), '/');
  double value = 0;
  double divisor = 1;
  if (parts.size() > 2 || !absl::SimpleAtod(parts[0], &value) ||
      (parts.size() == 2 && !absl::SimpleAtod(parts[1], &divisor))) {
    return false;
  }
  return std::fabs(value / divisor - expected) <= 1e-12 * std::max(1.0, std::fabs(expected));
}

bool SaysDefault(const SpecField& field, const std::string& cell) {
  const bool number = field.descriptor().cpp_type() != FieldDescriptor::CPPTYPE_BOOL &&
                      field.descriptor().enum_type() == nullptr;
  const bool constant =
      !field.default_rule && (field.default_constant || field.default_written.empty());
  if (number && constant) return StartsWithNumber(cell, field.default_constant.value_or(0));
  return StartsWithText(cell, DocsDefault(field));
}

// The row the table would want, for a message that says what to write.
std::string WantedRow(const SpecField& field) {
  return absl::StrCat("| `", field.JsonPath(), "` | ", DocsType(field), " | ", DocsDefault(field),
                      " | ", absl::StrJoin(DocsBounds(field), "; "), " |");
}

}  // namespace

absl::StatusOr<std::map<std::string, DocsRow>> ParseJobSpecTable(const std::string& markdown) {
  const std::vector<std::string> lines = absl::StrSplit(markdown, '\n');
  size_t line = 0;
  while (line < lines.size() && absl::StripAsciiWhitespace(lines[line]) != kTableHeader) ++line;
  if (line == lines.size()) {
    return absl::NotFoundError(absl::StrCat("no table headed \"", kTableHeader, "\""));
  }
  std::map<std::string, DocsRow> rows;
  for (line += 2; line < lines.size() && absl::StartsWith(lines[line], "|"); ++line) {
    absl::string_view text = absl::StripAsciiWhitespace(lines[line]);
    text = absl::StripSuffix(absl::StripPrefix(text, "|"), "|");
    const std::vector<std::string> cells = absl::StrSplit(text, '|');
    if (cells.size() != 4) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line + 1, " has ", cells.size(),
                                                     " cells, not 4: ", lines[line]));
    }
    DocsRow row;
    row.line = static_cast<int>(line);
    row.type = std::string(absl::StripAsciiWhitespace(cells[1]));
    row.default_text = std::string(absl::StripAsciiWhitespace(cells[2]));
    row.bounds = std::string(absl::StripAsciiWhitespace(cells[3]));
    for (const std::string& name : FieldNames(cells[0])) {
      if (!rows.emplace(name, row).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line + 1, ": `", name, "` has a row already"));
      }
    }
  }
  return rows;
}

std::string DocsType(const SpecField& field) {
  return FieldDescriptor::TypeName(field.descriptor().type());
}

std::string DocsDefault(const SpecField& field) {
  if (field.default_rule || (!field.default_constant && !field.default_written.empty())) {
    return field.default_written;
  }
  return DocsValue(field, field.default_constant.value_or(0));
}

std::vector<std::string> DocsBounds(const SpecField& field) {
  std::vector<std::string> pieces;
  if (field.only_under) pieces.push_back(field.only_under->written);
  if (const auto* values = field.descriptor().enum_type()) {
    for (int i = 0; i < values->value_count(); ++i) {
      const int number = values->value(i)->number();
      if (number != 0) pieces.push_back(DocsValue(field, number));  // 0 is *_UNSPECIFIED
    }
  }
  if (field.low && field.high) {
    pieces.push_back(absl::StrCat(field.zero_means_unset ? "0, or " : "",
                                  field.low->open ? "(" : "[", DocsLimit(field, *field.low), ", ",
                                  DocsLimit(field, *field.high), field.high->open ? ")" : "]"));
  } else if (field.low) {
    pieces.push_back(absl::StrCat(field.low->open ? "> " : "≥ ", DocsLimit(field, *field.low)));
  }
  return pieces;
}

std::vector<std::string> CompareDocsWithTable(const std::string& markdown,
                                              const std::vector<SpecField>& fields) {
  absl::StatusOr<std::map<std::string, DocsRow>> rows = ParseJobSpecTable(markdown);
  if (!rows.ok()) return {absl::StrCat("JobSpec table: ", rows.status().message())};
  std::vector<std::string> disagreements;
  for (const SpecField& field : fields) {
    const std::string name = field.JsonPath();
    const auto row = rows->find(name);
    if (row == rows->end()) {
      disagreements.push_back(absl::StrCat("`", name, "` has no row; the table's is ",
                                           WantedRow(field)));
      continue;
    }
    const std::string where = absl::StrCat("`", name, "` (line ", row->second.line + 1, ")");
    if (row->second.type != DocsType(field)) {
      disagreements.push_back(absl::StrCat(where, ": type is \"", row->second.type,
                                           "\"; the table's is \"", DocsType(field), "\""));
    }
    if (!SaysDefault(field, row->second.default_text)) {
      disagreements.push_back(absl::StrCat(where, ": default is \"", row->second.default_text,
                                           "\"; the table's is \"", DocsDefault(field), "\""));
    }
    for (const std::string& piece : DocsBounds(field)) {
      if (row->second.bounds.find(piece) == std::string::npos) {
        disagreements.push_back(absl::StrCat(where, ": bounds do not say \"", piece, "\""));
      }
    }
  }
  return disagreements;
}

}  // namespace tl::server
