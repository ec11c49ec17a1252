#pragma once
// Checksums of what the cache stores (docs/design.md, 'Document cache'): XXH3-64 from Debian's xxHash.
// Why XXH3 and not zlib's crc32, which the build already has: every window read is verified, and on this project's
// 2-core machine XXH3 hashes 13 GB/s against crc32's 3.3, so verification stays a small part of a read.
#include <cstddef>
#include <cstdint>
#include <memory>

namespace deformer::detail {

// XXH3-64 of `bytes` bytes at `data`; a seed chains one call onto the previous one's value.
uint64_t checksum(const void* data, size_t bytes, uint64_t seed = 0);

// The checksum of bytes that arrive in pieces: equal to checksum() of them all at once.
class Digest {
 public:
  Digest();
  ~Digest();
  Digest(Digest&&) noexcept;
  Digest& operator=(Digest&&) noexcept;
  void update(const void* data, size_t bytes);
  uint64_t value() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace deformer::detail
