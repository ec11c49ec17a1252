#pragma once
// Private: a cache file's metadata as root attributes, its checks, and what tells two caches apart.

#include <hdf5.h>

#include <string>
#include <vector>

#include "deformer/cache.h"

namespace deformer {
namespace cache {
namespace detail {

void write_metadata(hid_t file, const CacheMetadata& metadata);
// std::runtime_error naming `path` for another format, an unknown version or a missing attribute.
CacheMetadata read_metadata(hid_t file, const std::string& path);
// std::invalid_argument for metadata a writer must not write.
void validate_metadata(const CacheMetadata& metadata);
// Every field that decides whether states fit a model, with both values where they differ; `all_fields` adds the
// window stride and the storage dtype (shards of one cache agree on those too).
std::vector<std::string> differences(const CacheMetadata& have, const CacheMetadata& want, bool all_fields);
std::string join(const std::vector<std::string>& parts, const char* separator);
// A cache (shard or index) must be a regular file: HDF5 and the index reader would wait forever on a FIFO, and
// read nothing useful from a device. std::runtime_error otherwise.
void require_cache_file(const std::string& path);

}  // namespace detail
}  // namespace cache
}  // namespace deformer
