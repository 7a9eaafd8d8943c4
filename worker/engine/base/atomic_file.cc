#include "base/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <streambuf>
#include <vector>

#include "base/errors.h"
#include "base/fnv1a.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;

EngineError WriteError(const std::string& path, const std::string& reason) {
  return EngineError(ErrorKind::kInternal, "cannot write " + path + ": " + reason);
}

// A unique name beside `path`: two writers of one path (two jobs caching
// the same features) never share a temporary file.
std::string TemporaryNameFor(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

}  // namespace

// A stream buffer over a file descriptor that keeps the first write error
// (errno), the byte count and the running hash.
class AtomicFileWriter::Buffer : public std::streambuf {
 public:
  explicit Buffer(int fd) : fd_(fd), pending_(1 << 16) {
    setp(pending_.data(), pending_.data() + pending_.size());
  }
  ~Buffer() override {
    if (fd_ >= 0) ::close(fd_);
  }

  // Writes out what is buffered; false (error() set) when the system refused.
  bool Drain() {
    const char* data = pbase();
    size_t left = static_cast<size_t>(pptr() - pbase());
    AddToFnv1a(written_.fnv1a, data, left);
    written_.size += left;
    while (left > 0 && error_ == 0) {
      const ssize_t done = ::write(fd_, data, left);
      if (done < 0 && errno == EINTR) continue;
      if (done < 0) {
        error_ = errno;
      } else if (done == 0) {
        error_ = EIO;
      } else {
        data += done;
        left -= static_cast<size_t>(done);
      }
    }
    setp(pending_.data(), pending_.data() + pending_.size());
    return error_ == 0;
  }

  // Drains, fsyncs and closes; false with error() set on any failure.
  bool Finish() {
    if (!Drain()) return false;
    if (::fsync(fd_) != 0) error_ = errno;
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0 && error_ == 0) error_ = errno;
    return error_ == 0;
  }

  int error() const { return error_; }
  const WrittenFile& written() const { return written_; }

 protected:
  int_type overflow(int_type next) override {
    if (!Drain()) return traits_type::eof();
    if (!traits_type::eq_int_type(next, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(next);
      pbump(1);
    }
    return traits_type::not_eof(next);
  }
  int sync() override { return Drain() ? 0 : -1; }

 private:
  int fd_;
  std::vector<char> pending_;
  int error_ = 0;
  WrittenFile written_{0, kFnv1aOffset};
};

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)), temporary_(TemporaryNameFor(path_)) {
  const int fd = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) throw WriteError(path_, std::strerror(errno));
  buffer_ = std::make_unique<Buffer>(fd);
  stream_ = std::make_unique<std::ostream>(buffer_.get());
}

AtomicFileWriter::~AtomicFileWriter() {
  stream_.reset();
  buffer_.reset();  // closes the descriptor if Commit() did not
  if (!committed_) ::unlink(temporary_.c_str());
}

std::ostream& AtomicFileWriter::stream() { return *stream_; }

std::string AtomicFileWriter::FailedWriteReason() {
  buffer_->Drain();
  return buffer_->error() != 0 ? std::strerror(buffer_->error()) : "";
}

WrittenFile AtomicFileWriter::Commit() {
  const bool flushed = static_cast<bool>(stream_->flush());
  if (!buffer_->Finish() || !flushed) {
    throw WriteError(path_, buffer_->error() != 0 ? std::strerror(buffer_->error())
                                                  : "the stream failed");
  }
  if (::rename(temporary_.c_str(), path_.c_str()) != 0) {
    throw WriteError(path_, std::strerror(errno));
  }
  committed_ = true;
  SyncFolder(fs::path(path_).parent_path().string());
  return buffer_->written();
}

WrittenFile WriteFileAtomically(const std::string& path, const std::string& contents) {
  return WriteFileAtomically(path, [&contents](std::ostream& out) {
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  });
}

WrittenFile WriteFileAtomically(const std::string& path,
                                const std::function<void(std::ostream&)>& write) {
  AtomicFileWriter writer(path);
  try {
    write(writer.stream());
  } catch (const EngineError&) {
    throw;
  } catch (const std::exception& error) {
    // Libraries report a refused write in their own words; the system's
    // reason, when a write saw one, is the useful part.
    const std::string reason = writer.FailedWriteReason();
    const std::string text = error.what();
    throw WriteError(path, reason.empty() ? text.substr(0, text.find('\n')) : reason);
  }
  return writer.Commit();
}

void SyncFolder(const std::string& dir) {
  const std::string folder = dir.empty() ? "." : dir;
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw WriteError(folder, std::strerror(errno));
  const int synced = ::fsync(fd);
  const int sync_error = errno;
  ::close(fd);
  // EINVAL: a file system that cannot sync folders; nothing more to do there.
  if (synced != 0 && sync_error != EINVAL) throw WriteError(folder, std::strerror(sync_error));
}

}  // namespace tl::engine
