#include "checksum.h"

// Inlined: xxHash is then a header-only dependency, with nothing to link on machines that have only its header.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <stdexcept>

namespace deformer::detail {

uint64_t checksum(const void* data, size_t bytes, uint64_t seed) { return XXH3_64bits_withSeed(data, bytes, seed); }

struct Digest::State {
  XXH3_state_t xxh;
};

Digest::Digest() : state_(std::make_unique<State>()) {
  if (XXH3_64bits_reset(&state_->xxh) != XXH_OK) throw std::logic_error("XXH3_64bits_reset failed");
}
Digest::~Digest() = default;
Digest::Digest(Digest&&) noexcept = default;
Digest& Digest::operator=(Digest&&) noexcept = default;

void Digest::update(const void* data, size_t bytes) {
  if (bytes && XXH3_64bits_update(&state_->xxh, data, bytes) != XXH_OK)
    throw std::logic_error("XXH3_64bits_update failed");
}

uint64_t Digest::value() const { return XXH3_64bits_digest(&state_->xxh); }

}  // namespace deformer::detail
