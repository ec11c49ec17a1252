#pragma once
// Sharding a corpus's cache (docs/design.md, 'Sharding and merging'): which shard a document belongs to, and which
// shard a job writes under what name. deformer/cache.h includes this; cache::merge_shards joins the shards' files.
// No state: every function may be called from any thread.

#include <cstdint>
#include <string>

namespace deformer {
namespace cache {

// A document belongs to shard FNV-1a-64(id) mod num_shards: stable across runs, machines and compilers, unlike
// std::hash.
uint64_t fnv1a64(const std::string& bytes);
int shard_of(const std::string& document_id, int num_shards);

struct ShardSpec {
  int index = 0;  // this job's shard, 0-based
  int count = 1;  // number of shards
};
// SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT when set (rebased on SLURM_ARRAY_TASK_MIN and
// SLURM_ARRAY_TASK_STEP, so --array=1-8 and 0-14:2 give 0-based contiguous indices), else {0, 1}.
// Throws std::runtime_error for values that do not parse or an index outside the count.
ShardSpec shard_from_environment();
// The shard a build job writes: {index (0 when negative), count} when count > 0, else shard_from_environment().
// Throws std::invalid_argument for an index outside 0..count-1.
ShardSpec shard_of_job(int index, int count);
// "<stem>-00003-of-00016.h5" for stem "<stem>.h5": the file name a shard job writes.
std::string shard_path(const std::string& path, const ShardSpec& shard);

}  // namespace cache
}  // namespace deformer
