#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "deformer/shards.h"

namespace deformer {
namespace cache {

uint64_t fnv1a64(const std::string& bytes) {
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

int shard_of(const std::string& document_id, int num_shards) {
  if (num_shards <= 0) throw std::invalid_argument("num_shards must be positive, got " + std::to_string(num_shards));
  return static_cast<int>(fnv1a64(document_id) % static_cast<uint64_t>(num_shards));
}

namespace {
bool env_int(const char* name, int64_t& value) {
  const char* text = std::getenv(name);
  if (!text || !*text) return false;
  char* end = nullptr;
  errno = 0;
  const long long parsed = std::strtoll(text, &end, 10);
  if (errno || *end) throw std::runtime_error(std::string(name) + "='" + text + "' is not an integer");
  value = parsed;
  return true;
}
}  // namespace

ShardSpec shard_from_environment() {
  int64_t id = 0, count = 0, minimum = 0, step = 1;
  const bool has_id = env_int("SLURM_ARRAY_TASK_ID", id);
  const bool has_count = env_int("SLURM_ARRAY_TASK_COUNT", count);
  if (!has_id && !has_count) return {};
  if (!has_id || !has_count)
    throw std::runtime_error("SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT must be set together");
  env_int("SLURM_ARRAY_TASK_MIN", minimum);
  env_int("SLURM_ARRAY_TASK_STEP", step);
  if (step <= 0) throw std::runtime_error("SLURM_ARRAY_TASK_STEP=" + std::to_string(step) + " is not positive");
  const int64_t index = (id - minimum) / step;
  if (count <= 0 || index < 0 || index >= count || (id - minimum) % step)
    throw std::runtime_error("Slurm array task " + std::to_string(id) + " (min " + std::to_string(minimum) +
                             ", step " + std::to_string(step) + ") is not one of " + std::to_string(count) +
                             " shards");
  return {static_cast<int>(index), static_cast<int>(count)};
}

ShardSpec shard_of_job(int index, int count) {
  const ShardSpec shard = count > 0 ? ShardSpec{index < 0 ? 0 : index, count} : shard_from_environment();
  if (shard.index < 0 || shard.index >= shard.count)
    throw std::invalid_argument("shard index " + std::to_string(shard.index) + " is outside 0.." +
                                std::to_string(shard.count - 1));
  return shard;
}

std::string shard_path(const std::string& path, const ShardSpec& shard) {
  if (shard.count <= 0 || shard.index < 0 || shard.index >= shard.count)
    throw std::invalid_argument("shard " + std::to_string(shard.index) + " of " + std::to_string(shard.count) +
                                " is out of range");
  const std::filesystem::path p(path);
  char suffix[64];
  std::snprintf(suffix, sizeof suffix, "-%05d-of-%05d", shard.index, shard.count);
  return (p.parent_path() / (p.stem().string() + suffix + p.extension().string())).string();
}

}  // namespace cache
}  // namespace deformer
