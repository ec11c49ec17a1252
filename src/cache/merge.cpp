// The cache index (a JSON list of shard files) and the completion check a shard job skips finished work by.
#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "cache/hdf5.h"
#include "cache/merge.h"
#include "cache/metadata.h"
#include "deformer/cache.h"
#include "temporary_file.h"

namespace fs = std::filesystem;

namespace deformer {
namespace cache {
namespace detail {

bool looks_like_index(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char c = 0;
  while (in.get(c))
    if (!std::isspace(static_cast<unsigned char>(c))) return c == '{';
  return false;
}

std::vector<std::string> read_index(const std::string& path) {
  nlohmann::json index;
  try {
    std::ifstream in(path);
    index = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw std::runtime_error("'" + path + "' is neither an HDF5 file nor a readable cache index: " + e.what());
  }
  if (!index.is_object() || index.value("format", "") != kIndexFormatName)
    throw std::runtime_error("'" + path + "' is not an HDF5 file (nor a libdeformer cache index)");
  if (index.value("version", 0) != 1)
    throw std::runtime_error("'" + path + "' has cache index version " + index.value("version", nlohmann::json()).dump() +
                             "; this libdeformer reads version 1");
  std::vector<std::string> shards;
  const fs::path directory = fs::path(path).parent_path();
  for (const auto& entry : index.at("shards")) {
    const fs::path shard(entry.get<std::string>());
    shards.push_back((shard.is_absolute() ? shard : directory / shard).string());
  }
  if (shards.empty()) throw std::runtime_error("cache index '" + path + "' lists no shards");
  return shards;
}

}  // namespace detail

using namespace detail;

bool is_complete(const std::string& path) {
  try {
    if (!fs::exists(path)) return false;
    if (looks_like_index(path)) {
      CacheReader::open(path);
      return true;
    }
    Lock lock(h5_mutex());
    silence_hdf5();
    const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
    H5Eclear2(H5E_DEFAULT);
    if (is_hdf5 <= 0) return false;
    Hid fapl = file_access();
    const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
    if (id < 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
    Hid file(id, H5Fclose);
    read_metadata(file.get(), path);
    return has_attribute(file.get(), "complete") && read_int_attribute(file.get(), "complete", path) == 1;
  } catch (const std::exception&) {
    return false;
  }
}

void remove_stale_temporaries(const std::string& path) { deformer::detail::remove_stale_temporaries(path); }

void merge_shards(const std::string& index_path, const std::vector<std::string>& shard_paths) {
  if (shard_paths.empty()) throw std::invalid_argument("merge_shards: no shard files");
  const fs::path directory = fs::absolute(index_path).parent_path();
  nlohmann::json index;
  index["format"] = kIndexFormatName;
  index["version"] = 1;
  index["library_version"] = version();
  index["shards"] = nlohmann::json::array();
  for (const auto& shard : shard_paths) {
    std::error_code error;
    if (fs::equivalent(index_path, shard, error))  // the rename would replace that shard's states by the index
      throw std::invalid_argument("merge_shards: the index path '" + index_path + "' is the shard '" + shard + "'");
    if (looks_like_index(shard)) throw std::invalid_argument("'" + shard + "' is an index, not a shard file");
    index["shards"].push_back(fs::absolute(shard).lexically_relative(directory).string());
  }
  deformer::detail::remove_stale_temporaries(index_path);
  const std::string temporary = deformer::detail::temporary_name(index_path);
  {
    std::ofstream out(temporary);
    out << index.dump(2) << "\n";
    if (!out) throw std::runtime_error("cannot write '" + temporary + "'");
  }
  try {
    CacheReader::open(temporary);  // every shard complete, consistent, and no id twice
  } catch (...) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    throw;
  }
  std::error_code error;
  fs::rename(temporary, index_path, error);
  if (error) {
    fs::remove(temporary, error);
    throw std::runtime_error("cannot rename '" + temporary + "' to '" + index_path + "'");
  }
}

}  // namespace cache
}  // namespace deformer
