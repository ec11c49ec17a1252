#pragma once
// Private: the index file that makes shards one cache (written by merge_shards, src/cache/merge.cpp).

#include <string>
#include <vector>

namespace deformer {
namespace cache {
namespace detail {

// True when the file's first non-blank byte is '{': an index, not an HDF5 file.
bool looks_like_index(const std::string& path);
// The shard paths an index lists, resolved against its directory; std::runtime_error for anything else.
std::vector<std::string> read_index(const std::string& path);

}  // namespace detail
}  // namespace cache
}  // namespace deformer
