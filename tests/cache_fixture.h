#pragma once
// Shared by the cache's tests (cache_test.cpp, cache_shards_test.cpp, cache_engine_test.cpp): a fixture with its own
// directory, the same-reads comparison, and the message of a throwing call.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "deformer/cache.h"
#include "test_data.h"

namespace deformer {
namespace cache_testing {

namespace fs = std::filesystem;
using namespace cache;

inline ReadOptions through_hdf5() {
  ReadOptions options;
  options.direct_reads = false;
  return options;
}

// Every read of `a` and `b` compared byte for byte: texts, offsets, and all windows twice in a shuffled
// request (request order is not file order, and repeats) padded, short, and 16-bit as stored. The two outputs
// start from different bytes, so a byte one read leaves unwritten shows.
inline void expect_same_reads(const CacheReader& a, const CacheReader& b, const std::string& what) {
  ASSERT_EQ(a.num_documents(), b.num_documents()) << what;
  ASSERT_EQ(a.num_windows(), b.num_windows()) << what;
  for (int64_t d = 0; d < a.num_documents(); ++d) {
    ASSERT_EQ(a.document_text(d), b.document_text(d)) << what << " document " << d;
    const auto x = a.token_offsets(d), y = b.token_offsets(d);
    ASSERT_EQ(x.size(), y.size()) << what;
    for (size_t t = 0; t < x.size(); ++t)
      ASSERT_TRUE(x[t].begin == y[t].begin && x[t].end == y[t].end) << what << " document " << d << " token " << t;
  }
  std::vector<int64_t> request(2 * a.num_windows());
  for (size_t i = 0; i < request.size(); ++i) request[i] = static_cast<int64_t>(i) % a.num_windows();
  std::shuffle(request.begin(), request.end(), std::mt19937(7));
  int64_t longest = 0;
  for (int64_t w = 0; w < a.num_windows(); ++w) longest = std::max(longest, a.window(w).rows);
  const size_t n = request.size(), hidden = a.metadata().hidden_size;
  auto same = [&](const char* read, size_t bytes, const std::function<void(const CacheReader&, uint8_t*)>& call) {
    std::vector<uint8_t> x(bytes, 0xa5), y(bytes, 0x5a);
    call(a, x.data());
    call(b, y.data());
    EXPECT_TRUE(x == y) << what << ": " << read;
  };
  same("read_windows", n * a.window_floats() * 4,
       [&](const CacheReader& r, uint8_t* out) { r.read_windows(request, reinterpret_cast<float*>(out)); });
  same("short read_windows", n * longest * hidden * 4,
       [&](const CacheReader& r, uint8_t* out) { r.read_windows(request, longest, reinterpret_cast<float*>(out)); });
  const StateDType dtype = a.metadata().state_dtype;
  if (dtype == StateDType::kFloat16 || dtype == StateDType::kBFloat16)
    same("read_windows_16bit", n * longest * hidden * 2, [&](const CacheReader& r, uint8_t* out) {
      r.read_windows_16bit(request, longest, reinterpret_cast<uint16_t*>(out));
    });
}

inline std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no exception>";
}

class CacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("deformer-cache-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    deformer::testing::remove_tree(dir_.string());
    fs::create_directories(dir_);
  }
  void TearDown() override { deformer::testing::remove_tree(dir_.string()); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> files() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  fs::path dir_;
};

}  // namespace cache_testing
}  // namespace deformer
