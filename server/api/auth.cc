#include "server/api/auth.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tl::server {

namespace {

bool SameInConstantTime(absl::string_view a, absl::string_view b) {
  unsigned char differences = a.size() == b.size() ? 0 : 1;
  const size_t length = std::max(a.size(), b.size());
  for (size_t i = 0; i < length; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    differences |= x ^ y;
  }
  return differences == 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenAuthenticator>> TokenAuthenticator::LoadFile(
    const std::string& path) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("tokens file ", path, " cannot be read"));
  std::stringstream text;
  text << file.rdbuf();
  return Parse(text.str(), path);
}

absl::StatusOr<std::unique_ptr<TokenAuthenticator>> TokenAuthenticator::Parse(
    absl::string_view text, absl::string_view source) {
  auto authenticator = std::unique_ptr<TokenAuthenticator>(new TokenAuthenticator());
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    const std::string where = absl::StrCat(source, ":", line_number, ": ");
    if (fields.size() != 3 && fields.size() != 4) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "expected \"TOKEN PRINCIPAL ROLE [WORKER_IDS]\", found ",
                       fields.size(), " fields"));
    }
    Principal principal{std::string(fields[1]), Role::kUser, {}, false};
    if (fields[2] == "user") {
      principal.role = Role::kUser;
    } else if (fields[2] == "worker") {
      principal.role = Role::kWorker;
    } else if (fields[2] == "admin") {
      principal.role = Role::kAdmin;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "role \"", fields[2], "\" is not one of user, worker, admin"));
    }
    if (fields.size() == 4) {
      if (principal.role != Role::kWorker) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, "worker ids are given for a ", fields[2], "; only worker tokens "
                         "take them"));
      }
      for (absl::string_view id : absl::StrSplit(fields[3], ',')) {
        // A bare "*" would let one leaked token take over every worker's jobs.
        if (id.empty() || id == "*") {
          return absl::InvalidArgumentError(absl::StrCat(
              where, "worker ids \"", fields[3],
              "\" hold an empty entry or a bare \"*\"; name ids or prefixes such as \"gpu-*\""));
        }
        principal.worker_ids.emplace_back(id);
      }
    }
    // Short tokens can be guessed; refuse them rather than weaken every deployment that
    // copies an example.
    if (fields[0].size() < 16) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "the token is shorter than 16 characters"));
    }
    if (!authenticator->principals_.emplace(std::string(fields[0]), principal).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, "the token is listed twice"));
    }
  }
  if (authenticator->principals_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": no tokens"));
  }
  return authenticator;
}

absl::StatusOr<Principal> TokenAuthenticator::Authenticate(absl::string_view authorization) const {
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "no credentials: send the header \"authorization: Bearer TOKEN\"");
  }
  absl::string_view token = authorization;
  if (!absl::ConsumePrefix(&token, "Bearer ") && !absl::ConsumePrefix(&token, "bearer ")) {
    return absl::UnauthenticatedError("the authorization header must read \"Bearer TOKEN\"");
  }
  token = absl::StripAsciiWhitespace(token);
  // Every known token is compared in full, each in time independent of where it differs, so
  // that answer times do not leak how much of a guess was right.
  const Principal* found = nullptr;
  for (const auto& [known, principal] : principals_) {
    if (SameInConstantTime(known, token)) found = &principal;
  }
  if (found == nullptr) return absl::UnauthenticatedError("unknown token");
  return *found;
}

}  // namespace tl::server
