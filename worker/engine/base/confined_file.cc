#include "base/confined_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "base/errors.h"
#include "common/path_inside.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;

std::string DescriptorLink(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// Where the kernel says descriptor `fd` leads. Without /proc (not Linux, or
// not mounted) the name is resolved instead, which a swap between the open
// and this call could still fool.
bool ResolveOpened(int fd, const std::string& path, fs::path& resolved) {
  std::error_code error;
  resolved = fs::read_symlink(DescriptorLink(fd), error);
  if (!error && resolved.is_absolute()) return true;
  resolved = fs::canonical(path, error);
  return !error;
}

}  // namespace

ConfinedFile ConfinedFile::Open(const std::string& path, const std::string& root) {
  ConfinedFile file;
  // O_NONBLOCK: a FIFO planted under a dataset must not stall a loader.
  file.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (file.fd_ < 0) {
    file.error_ = std::string("cannot be opened: ") + std::strerror(errno);
    return file;
  }
  struct stat status {};
  if (::fstat(file.fd_, &status) != 0 || !S_ISREG(status.st_mode)) {
    file.error_ = "is not a regular file";
    return file;
  }
  file.size_ = static_cast<int64_t>(status.st_size);
  if (!root.empty()) {
    std::error_code error;
    const fs::path resolved_root = fs::canonical(root, error);
    if (error) {
      file.error_ = "root " + root + " cannot be resolved: " + error.message();
      return file;
    }
    fs::path opened;
    if (!ResolveOpened(file.fd_, path, opened)) {
      file.error_ = "cannot be resolved";
      return file;
    }
    if (!IsInsideRoot(resolved_root, opened)) {
      file.outcome_ = OpenOutcome::kOutsideRoot;
      file.error_ = "leads outside the root " + resolved_root.string();
      return file;
    }
  }
  file.outcome_ = OpenOutcome::kOpened;
  return file;
}

ConfinedFile::ConfinedFile(ConfinedFile&& other) noexcept { *this = std::move(other); }

ConfinedFile& ConfinedFile::operator=(ConfinedFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
    outcome_ = other.outcome_;
    error_ = std::move(other.error_);
  }
  return *this;
}

ConfinedFile::~ConfinedFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::string ConfinedFile::OpenedPath() const { return DescriptorLink(fd_); }

bool ConfinedFile::ReadAll(std::string& bytes) const {
  if (!ok()) return false;
  bytes.resize(static_cast<size_t>(size_));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t got = ::pread(fd_, bytes.data() + done, bytes.size() - done,
                                static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;  // an error, or the file shrank while read
    done += static_cast<size_t>(got);
  }
  return true;
}

ConfinedFile OpenConfinedOrThrow(const std::string& path, const std::string& root,
                                 const std::string& what) {
  ConfinedFile file = ConfinedFile::Open(path, root);
  if (!file.ok()) throw InvalidArgument(what + " " + path + " " + file.error());
  return file;
}

std::string ReadConfinedFile(const std::string& path, const std::string& root,
                             const std::string& what) {
  const ConfinedFile file = OpenConfinedOrThrow(path, root, what);
  std::string bytes;
  if (!file.ReadAll(bytes)) throw InvalidArgument(what + " " + path + " cannot be read");
  return bytes;
}

}  // namespace tl::engine
