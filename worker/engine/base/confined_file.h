// Files read under a root, checked where they are opened. A path checked
// when a job is submitted may be swapped for a symbolic link to somewhere
// else while the job waits in the queue; so every file the engine reads is
// opened first and the file the kernel actually opened (its descriptor's
// resolved path) is held against the root, then read through that
// descriptor. Nothing is read from a file that leads out.
#pragma once

#include <cstdint>
#include <string>

namespace tl::engine {

enum class OpenOutcome {
  kOpened,
  kUnreadable,   // missing, not a regular file, or an I/O error
  kOutsideRoot,  // resolves to a file outside the root
};

// An open, read-only file descriptor confined to a root; closed on destruction.
class ConfinedFile {
 public:
  // Opens `path`. With a non-empty `root`, the opened file's resolved path
  // must lie inside root's resolved path (common/path_inside.h); an empty
  // root confines nothing (the engine run alone, without a worker's roots).
  static ConfinedFile Open(const std::string& path, const std::string& root);

  ConfinedFile(ConfinedFile&& other) noexcept;
  ConfinedFile& operator=(ConfinedFile&& other) noexcept;
  ConfinedFile(const ConfinedFile&) = delete;
  ConfinedFile& operator=(const ConfinedFile&) = delete;
  ~ConfinedFile();

  OpenOutcome outcome() const { return outcome_; }
  bool ok() const { return outcome_ == OpenOutcome::kOpened; }
  // Why it did not open, for messages ("leads outside the root /data").
  const std::string& error() const { return error_; }
  int64_t size() const { return size_; }
  // A name of the opened file itself (/proc/self/fd/N), for libraries that
  // open by name: they get this very file even if `path` changes meanwhile.
  std::string OpenedPath() const;
  // Reads the whole file; false on an I/O error or when it is not size() long.
  bool ReadAll(std::string& bytes) const;

 private:
  ConfinedFile() = default;
  int fd_ = -1;
  int64_t size_ = 0;
  OpenOutcome outcome_ = OpenOutcome::kUnreadable;
  std::string error_;
};

// The whole file at `path`, confined to `root`. Throws
// EngineError(kInvalidArgument) naming `what` ("backbone manifest") and the
// path when it cannot be opened, leads outside the root or cannot be read.
std::string ReadConfinedFile(const std::string& path, const std::string& root,
                             const std::string& what);

// Opens `path` confined to `root` for a library that reads by name; throws
// as ReadConfinedFile does. Keep the returned file open while it reads.
ConfinedFile OpenConfinedOrThrow(const std::string& path, const std::string& root,
                                 const std::string& what);

}  // namespace tl::engine
