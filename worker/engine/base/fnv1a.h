// FNV-1a, 64 bit: the engine's one content hash (checkpoint checksums,
// duplicate images, feature-cache keys). Stable across runs, machines and
// standard libraries, unlike std::hash; not meant to resist tampering.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tl::engine {

inline constexpr uint64_t kFnv1aOffset = 0xcbf29ce484222325;

// Adds `size` bytes to a running hash that started at kFnv1aOffset.
inline void AddToFnv1a(uint64_t& hash, const char* data, size_t size) {
  constexpr uint64_t kPrime = 0x100000001b3;
  for (size_t i = 0; i < size; ++i) {
    hash ^= static_cast<unsigned char>(data[i]);
    hash *= kPrime;
  }
}

inline uint64_t Fnv1a(const std::string& bytes) {
  uint64_t hash = kFnv1aOffset;
  AddToFnv1a(hash, bytes.data(), bytes.size());
  return hash;
}

}  // namespace tl::engine
