// Every file a job leaves behind (checkpoints, exported models, reports,
// metrics) is written through here: into a temporary file beside its place,
// every write checked, the file flushed to disk (fsync), renamed over its
// place, and the folder flushed too. A full disk or a crash then leaves the
// previous file or the new one, whole, never a truncated one that a later
// attempt would trust. Standard library and POSIX only: the engine builds
// without abseil.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>

namespace tl::engine {

// What was written: its length and FNV-1a hash (fnv1a.h), computed on the
// way (a checkpoint records them to tell a damaged file later).
struct WrittenFile {
  uint64_t size = 0;
  uint64_t fnv1a = 0;
};

class AtomicFileWriter {
 public:
  // Creates a temporary file in path's folder (which must exist). Throws
  // EngineError(kInternal) naming `path` when it cannot.
  explicit AtomicFileWriter(std::string path);
  // Removes the temporary file unless Commit() succeeded.
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  std::ostream& stream();
  // Flushes and checks every write, fsyncs the file, renames it over the
  // path and fsyncs the folder. Throws EngineError(kInternal) naming the
  // path and the system's reason ("No space left on device"); the path then
  // still holds what it held before.
  WrittenFile Commit();
  // The system's reason a write failed ("File too large"); empty when none
  // did. Writes out what is buffered first.
  std::string FailedWriteReason();

 private:
  class Buffer;
  std::string path_;
  std::string temporary_;
  std::unique_ptr<Buffer> buffer_;
  std::unique_ptr<std::ostream> stream_;
  bool committed_ = false;
};

// Writes `contents` to `path` atomically (as AtomicFileWriter).
WrittenFile WriteFileAtomically(const std::string& path, const std::string& contents);

// Writes what `write` puts on the stream to `path` atomically. An exception
// from `write` (a library's failed save) leaves the path as it was and is
// rethrown as EngineError(kInternal) naming the path, with the system's
// reason when a write failed.
WrittenFile WriteFileAtomically(const std::string& path,
                                const std::function<void(std::ostream&)>& write);

// fsync of a folder, so that renames into it survive a crash. Throws
// EngineError(kInternal) on an I/O error; file systems that cannot sync a
// folder are let be.
void SyncFolder(const std::string& dir);

}  // namespace tl::engine
