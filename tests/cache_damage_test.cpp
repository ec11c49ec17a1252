// Damaged caches (issue 24): a flipped bit anywhere in a cache file is refused, or changes nothing that a reader
// returns; a damaged part is named; offsets and word indices out of range are refused even without checksums.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "deformer/cache.h"
#include "synthetic_cache.h"
#include "test_data.h"

namespace deformer {
namespace {

namespace fs = std::filesystem;
using namespace cache;
using deformer::testing::make_docs;
using deformer::testing::small_metadata;
using deformer::testing::Snapshot;

// Everything a reader returns that an answer depends on: the snapshot (texts, offsets, window spans, states),
// the word indices, and the metadata that decides whether the states fit a model.
struct Contents {
  Snapshot snapshot;
  std::vector<std::vector<int32_t>> words;
  std::string metadata;
  bool operator==(const Contents& o) const {
    return snapshot == o.snapshot && words == o.words && metadata == o.metadata;
  }
};

Contents contents(const std::string& path, const CacheMetadata& expected, const ReadOptions& options = {}) {
  const auto reader = CacheReader::open(path, expected, options);
  Contents c;
  c.snapshot = deformer::testing::snapshot(*reader);
  for (int64_t d = 0; d < reader->num_documents(); ++d) c.words.push_back(reader->token_words(d));
  const CacheMetadata& m = reader->metadata();
  c.metadata = m.model_hash + "|" + m.model_type + "|" + m.joint_order + "|" + m.tokenizer_hash + "|" +
               std::to_string(m.k) + "|" + std::to_string(m.hidden_size) + "|" + std::to_string(m.question_block) +
               "|" + std::to_string(m.document_block) + "|" + std::to_string(m.window_stride) + "|" +
               to_string(m.state_dtype);
  return c;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

class CacheDamageTest : public ::testing::TestWithParam<StateDType> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("deformer-cache-damage-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { deformer::testing::remove_tree(dir_.string()); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A cache of `count` documents with word indices, as deformer-cache builds them.
  std::string write_original(const CacheMetadata& m, int count = 8) {
    const std::string original = path("original.h5");
    auto writer = CacheWriter::create(original, m);
    for (const auto& d : make_docs(m, count)) {
      std::vector<int32_t> words(d.offsets.size());
      for (size_t t = 0; t < words.size(); ++t) words[t] = static_cast<int32_t>(t / 2);  // two tokens a word
      writer->add_document(d.id, d.text, d.offsets, d.windows(), words);
    }
    writer->commit();
    return original;
  }
  fs::path dir_;
};

// The acceptance test of issue 24: 1,000 random single-bit flips, each in a fresh copy of the file. Every flip is
// refused by open or by a read, or leaves everything a reader returns unchanged (HDF5's free space, padding, the
// informational library version): none may change an answer silently. The same flips read without verification
// show that the test can fail: there, many change what is read.
TEST_P(CacheDamageTest, EveryBitFlipIsRefusedOrChangesNothing) {
  CacheMetadata m = small_metadata(GetParam());
  m.hidden_size = 48;  // so that states, not HDF5's preallocated table chunks, fill most of the file
  const std::string original = write_original(m, 120);
  const Contents want = contents(original, m);
  const std::string bytes = read_bytes(original);
  std::mt19937_64 rng(20261203);
  int refused = 0, harmless = 0, changed_unverified = 0;
  std::vector<std::string> silent;
  ReadOptions unverified;
  unverified.verify_checksums = false;
  const std::string damaged = path("damaged.h5");
  for (int flip = 0; flip < 1000; ++flip) {
    const size_t offset = rng() % bytes.size();
    const int bit = static_cast<int>(rng() % 8);
    std::string copy = bytes;
    copy[offset] = static_cast<char>(copy[offset] ^ (1 << bit));
    write_bytes(damaged, copy);
    try {
      if (contents(damaged, m) == want)
        ++harmless;
      else
        silent.push_back("byte " + std::to_string(offset) + " bit " + std::to_string(bit));
    } catch (const std::exception&) {
      ++refused;
    }
    try {
      changed_unverified += !(contents(damaged, m, unverified) == want);
    } catch (const std::exception&) {
    }
  }
  std::printf("%s cache of %zu bytes, 1000 bit flips: %d refused, %d harmless, %zu silent (unverified: %d changed)\n",
              to_string(GetParam()), bytes.size(), refused, harmless, silent.size(), changed_unverified);
  EXPECT_TRUE(silent.empty()) << silent.size() << " flips changed what the reader returns, first at "
                              << (silent.empty() ? "" : silent.front());
  EXPECT_GT(changed_unverified, 100) << "the flips should mostly land in states";
}

// fp32 only: its states are stored as given, so that a test can find a window's bytes in the file.
class Fp32CacheDamageTest : public CacheDamageTest {};

// A damaged window is named: the cache, the document and the window; verification off reads it unchecked.
TEST_P(Fp32CacheDamageTest, DamagedStatesNameTheDocumentAndWindow) {
  const CacheMetadata m = small_metadata(GetParam());
  const std::string original = write_original(m);
  const auto docs = make_docs(m, 8);
  const auto& states = docs.back().states.back();
  const std::string needle(reinterpret_cast<const char*>(states.data()), states.size() * sizeof(float));
  std::string bytes = read_bytes(original);
  const size_t at = bytes.find(needle);
  ASSERT_NE(at, std::string::npos) << "the last window's states are not in the file as written";
  bytes[at + needle.size() / 2] ^= 0x10;
  write_bytes(path("damaged.h5"), bytes);
  const auto reader = CacheReader::open(path("damaged.h5"), m);
  const int64_t d = reader->find(docs.back().id);
  const auto& info = reader->document(d);
  const int64_t window = info.first_window + info.num_windows - 1;
  std::vector<float> out(reader->window_floats());
  try {
    reader->read_windows({window}, out.data());
    ADD_FAILURE() << "a damaged window was read";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("damaged.h5' is damaged"), std::string::npos) << message;
    EXPECT_NE(message.find("window " + std::to_string(info.num_windows - 1) + ":"), std::string::npos) << message;
    EXPECT_NE(message.find("document '" + info.id + "'"), std::string::npos) << message;
  }
  EXPECT_NO_THROW(reader->read_windows({info.first_window}, out.data())) << "an intact window of the same document";
  ReadOptions trusting;
  trusting.verify_checksums = false;
  EXPECT_NO_THROW(CacheReader::open(path("damaged.h5"), trusting)->read_windows({window}, out.data()));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CacheDamageTest,
                         ::testing::Values(StateDType::kFloat32, StateDType::kFloat16, StateDType::kInt8),
                         [](const ::testing::TestParamInfo<StateDType>& p) { return std::string(to_string(p.param)); });
INSTANTIATE_TEST_SUITE_P(Fp32, Fp32CacheDamageTest, ::testing::Values(StateDType::kFloat32),
                         [](const ::testing::TestParamInfo<StateDType>& p) { return std::string(to_string(p.param)); });

}  // namespace
}  // namespace deformer
