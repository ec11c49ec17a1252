// Sharding a cache: stable assignment of documents to shards, Slurm's array variables, and merged shards read like
// one file.
#include "deformer/cache.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cache_fixture.h"
#include "synthetic_cache.h"
#include "test_data.h"

namespace deformer {
namespace {

namespace fs = std::filesystem;
using namespace cache;
using namespace cache_testing;
using namespace deformer::testing;

TEST(CacheSharding, AssignmentIsStableAndBalanced) {
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);  // FNV-1a 64 test vectors
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ull);
  const int shards = 8, n = 20000;
  std::vector<int> counts(shards);
  for (int i = 0; i < n; ++i) {
    const std::string id = "56be4db0acb8001400a502e" + std::to_string(i);
    const int s = shard_of(id, shards);
    ASSERT_EQ(s, shard_of(id, shards));
    ++counts[s];
  }
  // Binomial sd for 2,500 expected is ~47; 5 sd either way.
  for (int c : counts) EXPECT_NEAR(c, n / shards, 240) << "unbalanced";
  EXPECT_EQ(shard_of("anything", 1), 0);
  EXPECT_THROW(shard_of("x", 0), std::invalid_argument);
  EXPECT_EQ(shard_path("/data/squad.h5", {3, 16}), "/data/squad-00003-of-00016.h5");
  EXPECT_THROW(shard_path("a.h5", {2, 2}), std::invalid_argument);
}

TEST(CacheSharding, DefaultsFromSlurm) {
  for (const char* v : {"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP"})
    unsetenv(v);
  EXPECT_EQ(shard_from_environment().index, 0);
  EXPECT_EQ(shard_from_environment().count, 1);
  setenv("SLURM_ARRAY_TASK_ID", "5", 1);
  setenv("SLURM_ARRAY_TASK_COUNT", "8", 1);
  EXPECT_EQ(shard_from_environment().index, 5);
  EXPECT_EQ(shard_from_environment().count, 8);
  setenv("SLURM_ARRAY_TASK_MIN", "1", 1);  // --array=1-8
  EXPECT_EQ(shard_from_environment().index, 4);
  setenv("SLURM_ARRAY_TASK_ID", "9", 1);
  EXPECT_THROW(shard_from_environment(), std::runtime_error);
  setenv("SLURM_ARRAY_TASK_ID", "x", 1);
  EXPECT_THROW(shard_from_environment(), std::runtime_error);
  for (const char* v : {"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"}) unsetenv(v);
}

TEST_F(CacheTest, MergedShardsReadLikeOneFile) {
  const auto m = small_metadata(StateDType::kInt8);
  const auto docs = make_docs(m, 30);
  write_cache(path("all.h5"), m, docs);
  std::vector<std::string> shard_files;
  for (int s = 0; s < 2; ++s) {
    std::vector<Doc> mine;
    for (const auto& d : docs)
      if (shard_of(d.id, 2) == s) mine.push_back(d);
    ASSERT_FALSE(mine.empty());
    shard_files.push_back(shard_path(path("corpus.h5"), {s, 2}));
    write_cache(shard_files.back(), m, mine);
    EXPECT_TRUE(is_complete(shard_files.back()));
  }
  merge_shards(path("corpus.json"), shard_files);
  EXPECT_TRUE(is_complete(path("corpus.json")));
  auto merged = CacheReader::open(path("corpus.json"), m);
  auto single = CacheReader::open(path("all.h5"), m);
  EXPECT_EQ(merged->num_shards(), 2);
  EXPECT_EQ(merged->num_documents(), single->num_documents());
  EXPECT_EQ(merged->num_windows(), single->num_windows());
  EXPECT_TRUE(snapshot(*merged) == snapshot(*single));
  EXPECT_TRUE(merged->direct_reads());
  expect_same_reads(*merged, *CacheReader::open(path("corpus.json"), m, through_hdf5()), "merged, direct against hdf5");
  // A batch spanning both shards, in request order.
  std::vector<int64_t> request{merged->num_windows() - 1, 0, merged->num_windows() / 2};
  std::vector<float> a(request.size() * merged->window_floats()), b(a.size());
  merged->read_windows(request, a.data());
  std::vector<int64_t> same;
  for (int64_t w : request) {
    const auto& info = merged->document(merged->window(w).document);
    const auto& other = single->document(single->find(info.id));
    same.push_back(other.first_window + (w - info.first_window));
  }
  single->read_windows(same, b.data());
  EXPECT_EQ(a, b);
  // The index moves with its shards (relative paths).
  fs::create_directories(dir_ / "moved");
  for (const auto& f : {std::string("corpus.json"), fs::path(shard_files[0]).filename().string(),
                        fs::path(shard_files[1]).filename().string()})
    fs::copy_file(dir_ / f, dir_ / "moved" / f);
  EXPECT_EQ(CacheReader::open((dir_ / "moved" / "corpus.json").string())->num_documents(), 30);

  // One compressed shard: that shard's reads go through HDF5, the other's stay direct.
  write_cache(shard_files[1], m, [&] {
    std::vector<Doc> mine;
    for (const auto& d : docs)
      if (shard_of(d.id, 2) == 1) mine.push_back(d);
    return mine;
  }(), {0, 4, true});
  auto mixed = CacheReader::open(path("corpus.json"), m);
  EXPECT_FALSE(mixed->direct_reads());
  EXPECT_TRUE(snapshot(*mixed) == snapshot(*single));

  // Shards that do not belong together are refused.
  auto other = m;
  other.k = 3;
  write_cache(path("other.h5"), other, make_docs(other, 2, 3, "other-"));
  auto text = message_of([&] { merge_shards(path("bad.json"), {shard_files[0], path("other.h5")}); });
  EXPECT_NE(text.find("k is '3' in the cache, expected '2'"), std::string::npos) << text;
  text = message_of([&] { merge_shards(path("dup.json"), {shard_files[0], path("all.h5")}); });
  EXPECT_NE(text.find("appears twice"), std::string::npos) << text;
  EXPECT_FALSE(fs::exists(path("bad.json")));
  EXPECT_FALSE(fs::exists(path("dup.json")));
  // An index written over one of its shards would destroy that shard's states: refused, the shard intact.
  const auto before = fs::file_size(shard_files[0]);
  text = message_of([&] { merge_shards(shard_files[0], shard_files); });
  EXPECT_NE(text.find("is the shard"), std::string::npos) << text;
  EXPECT_EQ(fs::file_size(shard_files[0]), before);
  EXPECT_TRUE(is_complete(shard_files[0]));
}

// Invariant 4 with the real engine: upper(lower(q), load(store(lower(d)))) == in-memory forward.

}  // namespace
}  // namespace deformer
