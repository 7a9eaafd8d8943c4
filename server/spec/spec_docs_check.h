// docs/API.md's JobSpec table held to the spec table (spec_fields.h): every
// row of the spec table has a docs row with its type, with its default (the
// value first, then any words on it), and with bounds that say its interval,
// its enum values and the setting it needs. Used by ctest docs.spec_table.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/spec/spec_fields.h"

namespace tl::server {

// A row of docs/API.md's JobSpec table: "| field | type | default | bounds and rules |".
struct DocsRow {
  int line = 0;  // 0-based, in the markdown
  std::string type;
  std::string default_text;
  std::string bounds;
};

// The JobSpec table's rows by the path they name ("training.batchSize"); a row
// naming several fields ("`preprocessing.brightness`, `.contrast`") is under each.
// An error when `markdown` has no such table or a row is malformed.
absl::StatusOr<std::map<std::string, DocsRow>> ParseJobSpecTable(const std::string& markdown);

// What the docs must say of `field`, generated from its row.
std::string DocsType(const SpecField& field);
std::string DocsDefault(const SpecField& field);
// Text the bounds cell must contain, each piece somewhere in it.
std::vector<std::string> DocsBounds(const SpecField& field);

// Every disagreement between `fields` and the JobSpec table of `markdown`, one
// line each, naming the field; empty when they agree.
std::vector<std::string> CompareDocsWithTable(const std::string& markdown,
                                              const std::vector<SpecField>& fields);

}  // namespace tl::server
