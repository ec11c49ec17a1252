// The HDF5 document cache: storage round trips, refusals, reads of every kind, and the dtype codecs. Sharding is in
// cache_shards_test.cpp, invariant 4 with the engine in cache_engine_test.cpp.
#include "deformer/cache.h"

#include <gtest/gtest.h>
#include <hdf5.h>
#include <torch/script.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <numeric>
#include <random>
#include <thread>

#include "deformer/engine.h"
#include "deformer/layout.h"
#include "deformer/tokenizer.h"
#include "deformer/model.h"
#include "cache/codec.h"
#include "synthetic_cache.h"
#include "test_data.h"
#include "cache_fixture.h"

namespace deformer {
namespace {

namespace fs = std::filesystem;
using namespace cache;
using namespace cache_testing;
using namespace deformer::testing;

TEST_F(CacheTest, Fp32RoundTripIsExact) {
  const auto m = small_metadata();
  const auto docs = make_docs(m, 20);
  write_cache(path("c.h5"), m, docs);
  auto reader = CacheReader::open(path("c.h5"), m);
  EXPECT_EQ(files(), std::vector<std::string>{"c.h5"}) << "no temporary left behind";
  EXPECT_EQ(reader->metadata().model_hash, m.model_hash);
  EXPECT_EQ(reader->metadata().library_version, std::string(version()));
  EXPECT_EQ(reader->metadata().window_stride, m.window_stride);
  ASSERT_EQ(reader->num_documents(), 20);
  std::vector<std::string> ids;
  for (const auto& d : docs) ids.push_back(d.id);
  EXPECT_EQ(reader->document_ids(), ids);
  int64_t windows = 0;
  for (const auto& doc : docs) {
    const int64_t d = reader->find(doc.id);
    EXPECT_EQ(reader->document_text(d), doc.text);
    const auto offsets = reader->token_offsets(d);
    ASSERT_EQ(offsets.size(), doc.offsets.size());
    for (size_t t = 0; t < offsets.size(); ++t) {
      EXPECT_EQ(offsets[t].begin, doc.offsets[t].begin);
      EXPECT_EQ(offsets[t].end, doc.offsets[t].end);
    }
    const auto& info = reader->document(d);
    ASSERT_EQ(info.num_windows, static_cast<int64_t>(doc.spans.size()));
    EXPECT_EQ(info.num_tokens, static_cast<int64_t>(doc.offsets.size()));
    for (int64_t w = 0; w < info.num_windows; ++w) {
      const auto& wi = reader->window(info.first_window + w);
      EXPECT_EQ(wi.tokens.begin, doc.spans[w].begin);
      EXPECT_EQ(wi.tokens.end, doc.spans[w].end);
      const int64_t rows = static_cast<int64_t>(doc.states[w].size()) / m.hidden_size;
      EXPECT_EQ(wi.rows, rows);
      std::vector<float> out(reader->window_floats(), -1.0f);
      reader->read_windows({info.first_window + w}, out.data());
      EXPECT_EQ(std::memcmp(out.data(), doc.states[w].data(), doc.states[w].size() * 4), 0) << doc.id << " w" << w;
      for (size_t i = doc.states[w].size(); i < out.size(); ++i) ASSERT_EQ(out[i], 0.0f) << "padding must be zeros";
      ++windows;
    }
  }
  EXPECT_EQ(reader->num_windows(), windows);
  EXPECT_TRUE(is_complete(path("c.h5")));
}

// Analytic bounds: fp16 keeps 11 significant bits (|e| <= 2^-11 |x| in the normal range, 2^-25 below it),
// bf16 keeps 8 (|e| <= 2^-8 |x|), int8 with a per-row absmax scale s = absmax/127 rounds to
// the nearest multiple of s (|e| <= s / 2).
TEST_F(CacheTest, LossyDtypesStayWithinTheirAnalyticBounds) {
  for (StateDType dtype : {StateDType::kFloat16, StateDType::kBFloat16, StateDType::kInt8}) {
    const auto m = small_metadata(dtype);
    auto docs = make_docs(m, 12);
    // Extremes: the largest half, half subnormals, exact zeros and ties.
    docs[0].states[0][0] = dtype == StateDType::kFloat16 ? 65504.0f : 1e30f;
    docs[0].states[0][1] = 3e-6f;
    docs[0].states[0][2] = 0.0f;
    docs[0].states[0][3] = -1.0f - 1.0f / 2048;  // a tie for fp16
    write_cache(path("c.h5"), m, docs);
    auto reader = CacheReader::open(path("c.h5"), m);
    EXPECT_EQ(reader->metadata().state_dtype, dtype);
    double max_abs = 0, max_rel = 0, max_ratio = 0;  // ratio = error / bound
    for (const auto& doc : docs) {
      const auto& info = reader->document(reader->find(doc.id));
      std::vector<int64_t> windows;
      for (int64_t w = 0; w < info.num_windows; ++w) windows.push_back(info.first_window + w);
      std::vector<float> out(windows.size() * reader->window_floats());
      reader->read_windows(windows, out.data());
      for (size_t w = 0; w < windows.size(); ++w) {
        const auto& x = doc.states[w];
        const float* y = out.data() + w * reader->window_floats();
        for (size_t r = 0; r < x.size() / m.hidden_size; ++r) {
          float absmax = 0;
          for (int c = 0; c < m.hidden_size; ++c) absmax = std::max(absmax, std::fabs(x[r * m.hidden_size + c]));
          for (int c = 0; c < m.hidden_size; ++c) {
            const size_t i = r * m.hidden_size + c;
            const double e = std::fabs(double(x[i]) - double(y[i])), a = std::fabs(double(x[i]));
            double bound = 0;
            if (dtype == StateDType::kFloat16) bound = std::max(a * std::ldexp(1.0, -11), std::ldexp(1.0, -25));
            if (dtype == StateDType::kBFloat16) bound = a * std::ldexp(1.0, -8);
            if (dtype == StateDType::kInt8) bound = absmax / 127.0 / 2 * (1 + 1e-6) + 1e-30;
            ASSERT_LE(e, bound) << to_string(dtype) << " x=" << x[i] << " y=" << y[i];
            max_ratio = std::max(max_ratio, e / bound);
            if (&doc == &docs[0] && w == 0 && r == 0) continue;  // the extremes row stays out of the statistics
            max_abs = std::max(max_abs, e);
            // Relative to the value for the floats, to the row's absmax for int8 (what its scale tracks).
            const double reference = dtype == StateDType::kInt8 ? absmax : a;
            if (reference > 1e-3) max_rel = std::max(max_rel, e / reference);
          }
        }
      }
    }
    std::cout << "[ measured ] " << to_string(dtype) << " on N(0, 2) states: max |error| " << max_abs << ", max relative error "
              << max_rel << ", max error/bound " << max_ratio << "\n";
    // The bound is tight: a codec that rounded badly or stored too much precision would show here.
    EXPECT_GT(max_ratio, 0.9) << to_string(dtype);
    EXPECT_GT(max_abs, 0) << to_string(dtype) << " must actually be lossy";
  }
}

TEST_F(CacheTest, Fp16RefusesValuesPastItsRange) {
  const auto m = small_metadata(StateDType::kFloat16);
  auto docs = make_docs(m, 1);
  docs[0].states[0][5] = 70000.0f;
  auto writer = CacheWriter::create(path("c.h5"), m);
  EXPECT_THROW(writer->add_document(docs[0].id, docs[0].text, docs[0].offsets, docs[0].windows()),
               std::invalid_argument);
  docs[0].states[0][5] = NAN;
  const auto metadata32 = small_metadata();
  auto writer32 = CacheWriter::create(path("d.h5"), metadata32);
  EXPECT_THROW(writer32->add_document(docs[0].id, docs[0].text, docs[0].offsets, docs[0].windows()),
               std::invalid_argument);
}

// Word indices round-trip (also through direct reads and H5Dread), are absent when not given, and must be a
// non-decreasing numbering from 0 with one entry per token.
TEST_F(CacheTest, WordIndicesRoundTripAndAreChecked) {
  const auto m = small_metadata();
  auto docs = make_docs(m, 2);
  std::vector<int32_t> words(docs[1].offsets.size());
  for (size_t t = 0; t < words.size(); ++t) words[t] = static_cast<int32_t>(t / 2);
  {
    auto writer = CacheWriter::create(path("w.h5"), m);
    writer->add_document(docs[1].id, docs[1].text, docs[1].offsets, docs[1].windows(), words);
    writer->add_document(docs[0].id, docs[0].text, docs[0].offsets, docs[0].windows());
    writer->commit();
  }
  for (const auto& options : {ReadOptions(), through_hdf5()}) {
    auto reader = CacheReader::open(path("w.h5"), options);
    EXPECT_EQ(reader->token_words(reader->find(docs[1].id)), words);
    EXPECT_TRUE(reader->token_words(reader->find(docs[0].id)).empty());
  }
  auto writer = CacheWriter::create(path("bad.h5"), m);
  auto bad = [&](std::vector<int32_t> w) {
    EXPECT_THROW(writer->add_document(docs[1].id, docs[1].text, docs[1].offsets, docs[1].windows(), w), std::invalid_argument);
  };
  bad(std::vector<int32_t>(words.begin(), words.end() - 1));  // one short
  auto decreasing = words;  // 16 tokens: ..., 7, 7 -> ..., 7, 6
  decreasing.back() = decreasing[decreasing.size() - 2] - 1;
  bad(decreasing);
  auto from_one = words;
  for (auto& w : from_one) ++w;
  bad(from_one);
}

// fp16 and bf16 are declared as HDF5 float types, so HDF5's own conversion (what h5py and h5dump use)
// decodes them to the same floats as the reader.
TEST_F(CacheTest, TwoByteFloatsDecodeWithHdf5sOwnConversion) {
  for (StateDType dtype : {StateDType::kFloat16, StateDType::kBFloat16}) {
    const auto m = small_metadata(dtype);
    write_cache(path("c.h5"), m, make_docs(m, 3));
    auto reader = CacheReader::open(path("c.h5"), m);
    const auto& w = reader->window(0);
    std::vector<float> ours(reader->window_floats());
    reader->read_windows({0}, ours.data());
    hid_t file = H5Fopen(path("c.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t set = H5Dopen2(file, "/states/values", H5P_DEFAULT);
    hid_t type = H5Dget_type(set);
    EXPECT_EQ(H5Tget_class(type), H5T_FLOAT);
    EXPECT_EQ(H5Tget_size(type), 2u);
    hid_t space = H5Dget_space(set);
    hsize_t start[2] = {0, 0}, count[2] = {static_cast<hsize_t>(w.rows), static_cast<hsize_t>(m.hidden_size)};
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
    hid_t memory = H5Screate_simple(2, count, nullptr);
    std::vector<float> theirs(w.rows * m.hidden_size);
    EXPECT_GE(H5Dread(set, H5T_NATIVE_FLOAT, memory, space, H5P_DEFAULT, theirs.data()), 0);
    for (hid_t id : {memory, space}) H5Sclose(id);
    H5Tclose(type);
    H5Dclose(set);
    H5Fclose(file);
    EXPECT_EQ(std::memcmp(theirs.data(), ours.data(), theirs.size() * 4), 0) << to_string(dtype);
  }
}

TEST_F(CacheTest, MismatchNamesTheFieldAndBothValues) {
  const auto m = small_metadata();
  write_cache(path("c.h5"), m, make_docs(m, 2));
  auto wrong_hash = m;
  wrong_hash.model_hash = "sha256:ffff";
  auto text = message_of([&] { CacheReader::open(path("c.h5"), wrong_hash); });
  EXPECT_NE(text.find("model hash is 'sha256:0123abcd' in the cache, expected 'sha256:ffff'"), std::string::npos)
      << text;
  EXPECT_EQ(text.find(" k "), std::string::npos) << "only differing fields are named: " << text;
  auto wrong_k = m;
  wrong_k.k = 3;
  text = message_of([&] { CacheReader::open(path("c.h5"), wrong_k); });
  EXPECT_NE(text.find("k is '2' in the cache, expected '3'"), std::string::npos) << text;
  auto wrong_tokenizer = m;
  wrong_tokenizer.tokenizer_hash = "other";
  text = message_of([&] { CacheReader::open(path("c.h5"), wrong_tokenizer); });
  EXPECT_NE(text.find("tokenizer hash"), std::string::npos) << text;
  auto wrong_block = m;
  wrong_block.document_block = 13;
  text = message_of([&] { CacheReader::open(path("c.h5"), wrong_block); });
  EXPECT_NE(text.find("document block is '12' in the cache, expected '13'"), std::string::npos) << text;
  EXPECT_THROW(CacheReader::open(path("c.h5"), wrong_k), std::runtime_error);
  // Stride and dtype are the cache's own business: a reader for the same model accepts them.
  auto other_stride = m;
  other_stride.window_stride = 3;
  other_stride.state_dtype = StateDType::kInt8;
  EXPECT_NO_THROW(CacheReader::open(path("c.h5"), other_stride));
}

TEST_F(CacheTest, RefusesFilesThatAreNotCaches) {
  EXPECT_NE(message_of([&] { CacheReader::open(path("missing.h5")); }).find("does not exist"), std::string::npos);
  std::ofstream(path("text.h5")) << "just some text, not HDF5\n";
  auto text = message_of([&] { CacheReader::open(path("text.h5")); });
  EXPECT_NE(text.find("is not an HDF5 file"), std::string::npos) << text;
  std::ofstream(path("brace.h5")) << "{\"not\": \"an index\"}";
  text = message_of([&] { CacheReader::open(path("brace.h5")); });
  EXPECT_NE(text.find("is not an HDF5 file"), std::string::npos) << text;
  EXPECT_FALSE(is_complete(path("text.h5")));
  EXPECT_FALSE(is_complete(path("missing.h5")));
  // An HDF5 file from someone else.
  hid_t other = H5Fcreate(path("other.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(other, 0);
  H5Fclose(other);
  text = message_of([&] { CacheReader::open(path("other.h5")); });
  EXPECT_NE(text.find("format_name"), std::string::npos) << text;
}

TEST_F(CacheTest, RefusesATruncatedFile) {
  const auto m = small_metadata();
  write_cache(path("c.h5"), m, make_docs(m, 30));
  fs::copy_file(path("c.h5"), path("half.h5"));
  fs::resize_file(path("half.h5"), fs::file_size(path("c.h5")) / 2);
  auto text = message_of([&] { CacheReader::open(path("half.h5"), m); });
  EXPECT_NE(text.find("truncated"), std::string::npos) << text;
  EXPECT_THROW(CacheReader::open(path("half.h5")), std::runtime_error);
  EXPECT_FALSE(is_complete(path("half.h5")));
}

// Edits a copy of a good cache through the HDF5 API, to make the files a crash or a future version leaves.
void edit_root(const std::string& file, const std::function<void(hid_t)>& edit) {
  hid_t id = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(id, 0);
  edit(id);
  H5Fclose(id);
}

TEST_F(CacheTest, RefusesIncompleteAndFutureFiles) {
  const auto m = small_metadata();
  write_cache(path("c.h5"), m, make_docs(m, 3));
  fs::copy_file(path("c.h5"), path("incomplete.h5"));
  edit_root(path("incomplete.h5"), [](hid_t f) { H5Adelete(f, "complete"); });
  auto text = message_of([&] { CacheReader::open(path("incomplete.h5")); });
  EXPECT_NE(text.find("incomplete"), std::string::npos) << text;
  EXPECT_FALSE(is_complete(path("incomplete.h5")));

  fs::copy_file(path("c.h5"), path("future.h5"));
  edit_root(path("future.h5"), [](hid_t f) {
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    const int64_t v = 99;
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
  });
  text = message_of([&] { CacheReader::open(path("future.h5")); });
  EXPECT_NE(text.find("format version 99"), std::string::npos) << text;
}

TEST_F(CacheTest, InterruptedBuildLeavesNoFileAndKeepsThePreviousOne) {
  const auto m = small_metadata();
  const auto old_docs = make_docs(m, 2, 1, "old-");
  {
    auto writer = CacheWriter::create(path("c.h5"), m);
    writer->add_document(old_docs[0].id, old_docs[0].text, old_docs[0].offsets, old_docs[0].windows());
    EXPECT_TRUE(fs::exists(writer->temporary_path()));
    EXPECT_FALSE(fs::exists(path("c.h5")));
  }  // destroyed without commit
  EXPECT_TRUE(files().empty()) << "an interrupted build leaves nothing";

  write_cache(path("c.h5"), m, old_docs);
  const auto before = snapshot(*CacheReader::open(path("c.h5"), m));
  {
    auto writer = CacheWriter::create(path("c.h5"), m);
    for (const auto& d : make_docs(m, 5, 9, "new-")) writer->add_document(d.id, d.text, d.offsets, d.windows());
  }
  EXPECT_EQ(files(), std::vector<std::string>{"c.h5"});
  auto reader = CacheReader::open(path("c.h5"), m);
  EXPECT_EQ(reader->document_ids(), (std::vector<std::string>{"old-0", "old-1"}));
  EXPECT_TRUE(snapshot(*reader) == before);

  // A committed rebuild replaces it.
  write_cache(path("c.h5"), m, make_docs(m, 5, 9, "new-"));
  EXPECT_EQ(CacheReader::open(path("c.h5"), m)->num_documents(), 5);
}

TEST_F(CacheTest, CallerErrorsAreInvalidArguments) {
  const auto m = small_metadata();
  auto docs = make_docs(m, 2);
  auto writer = CacheWriter::create(path("c.h5"), m);
  writer->add_document(docs[0].id, docs[0].text, docs[0].offsets, docs[0].windows());
  auto text = message_of([&] { writer->add_document(docs[0].id, docs[1].text, docs[1].offsets, docs[1].windows()); });
  EXPECT_NE(text.find("'doc-0': duplicate document id"), std::string::npos) << text;
  EXPECT_THROW(writer->add_document(docs[0].id, docs[1].text, docs[1].offsets, docs[1].windows()),
               std::invalid_argument);
  EXPECT_THROW(writer->add_document("empty", "", {}, {}), std::invalid_argument);
  EXPECT_THROW(writer->add_document("", docs[1].text, docs[1].offsets, docs[1].windows()), std::invalid_argument);
  auto bad_rows = docs[1].windows();
  bad_rows[0].rows = m.document_block + 1;
  EXPECT_THROW(writer->add_document("rows", docs[1].text, docs[1].offsets, bad_rows), std::invalid_argument);
  auto bad_offsets = docs[1].offsets;
  bad_offsets.back().end = 100000;
  EXPECT_THROW(writer->add_document("offsets", docs[1].text, bad_offsets, docs[1].windows()), std::invalid_argument);
  auto bad_span = docs[1].windows();
  bad_span[0].tokens.end = static_cast<int64_t>(docs[1].offsets.size()) + 1;
  EXPECT_THROW(writer->add_document("span", docs[1].text, docs[1].offsets, bad_span), std::invalid_argument);
  writer->commit();
  EXPECT_THROW(writer->commit(), std::invalid_argument);
  EXPECT_THROW(writer->add_document("late", docs[1].text, docs[1].offsets, docs[1].windows()), std::invalid_argument);
  auto reader = CacheReader::open(path("c.h5"), m);
  EXPECT_EQ(reader->num_documents(), 1) << "rejected documents leave no trace";
  text = message_of([&] { reader->find("nope"); });
  EXPECT_NE(text.find("'nope'"), std::string::npos) << text;
  EXPECT_THROW(reader->find("nope"), std::invalid_argument);
  EXPECT_THROW(reader->window(reader->num_windows()), std::out_of_range);
  EXPECT_THROW(reader->read_windows({-1}, nullptr), std::out_of_range);
  ReadOptions negative;
  negative.read_threads = -1;
  EXPECT_THROW(CacheReader::open(path("c.h5"), negative), std::invalid_argument);

  auto bad_stride = m;
  bad_stride.window_stride = m.document_block - 1;
  EXPECT_THROW(CacheWriter::create(path("s.h5"), bad_stride), std::invalid_argument);
  EXPECT_THROW(parse_state_dtype("fp8"), std::invalid_argument);
  EXPECT_EQ(parse_state_dtype("bf16"), StateDType::kBFloat16);
}

TEST_F(CacheTest, BatchedReadEqualsIndividualReads) {
  for (StateDType dtype : {StateDType::kFloat32, StateDType::kFloat16, StateDType::kInt8}) {
    const auto m = small_metadata(dtype);
    write_cache(path("c.h5"), m, make_docs(m, 25), {4, 0, true});  // tiny chunks: windows straddle them
    auto reader = CacheReader::open(path("c.h5"), m);
    std::mt19937 rng(5);
    std::vector<int64_t> request;
    for (int i = 0; i < 40; ++i) request.push_back(rng() % reader->num_windows());
    request.push_back(request.front());  // a repeat
    const int64_t floats = reader->window_floats();
    std::vector<float> batch(request.size() * floats, -7.0f);
    reader->read_windows(request, batch.data());
    for (size_t i = 0; i < request.size(); ++i) {
      std::vector<float> one(floats, -7.0f);
      reader->read_windows({request[i]}, one.data());
      ASSERT_EQ(std::memcmp(one.data(), batch.data() + i * floats, floats * 4), 0) << to_string(dtype) << " " << i;
    }
  }
}

// Reading only the first rows of each window (a batch's longest) gives the padded read's first rows; fp16/bf16
// read as stored widen (by torch's own conversion) to exactly the floats the converting read gives; a window
// with more real rows than asked for, and a 16-bit read of an fp32 cache, are caller errors.
TEST_F(CacheTest, ShortAndAsStoredReadsEqualThePaddedRead) {
  for (StateDType dtype : {StateDType::kFloat32, StateDType::kFloat16, StateDType::kBFloat16, StateDType::kInt8}) {
    const auto m = small_metadata(dtype);
    write_cache(path("c.h5"), m, make_docs(m, 6));
    auto reader = CacheReader::open(path("c.h5"), m);
    std::vector<int64_t> request;
    int64_t longest = 0;
    for (int64_t w = reader->num_windows() - 1; w >= 0; w -= 2) {
      request.push_back(w);
      longest = std::max(longest, reader->window(w).rows);
    }
    const int64_t hidden = m.hidden_size, block = m.document_block;
    std::vector<float> padded(request.size() * reader->window_floats()), short_read(request.size() * longest * hidden, -7.0f);
    reader->read_windows(request, padded.data());
    reader->read_windows(request, longest, short_read.data());
    for (size_t i = 0; i < request.size(); ++i)
      ASSERT_EQ(std::memcmp(padded.data() + i * block * hidden, short_read.data() + i * longest * hidden, longest * hidden * 4), 0)
          << to_string(dtype) << " window " << request[i];
    if (longest > 1) EXPECT_THROW(reader->read_windows(request, longest - 1, short_read.data()), std::invalid_argument);
    if (dtype == StateDType::kFloat16 || dtype == StateDType::kBFloat16) {
      auto stored = torch::empty({int64_t(request.size()), longest, hidden}, dtype == StateDType::kFloat16 ? torch::kHalf : torch::kBFloat16);
      reader->read_windows_16bit(request, longest, static_cast<uint16_t*>(stored.data_ptr()));
      auto widened = stored.to(torch::kFloat).contiguous();
      EXPECT_EQ(std::memcmp(widened.data_ptr<float>(), short_read.data(), short_read.size() * 4), 0) << to_string(dtype);
    } else {
      std::vector<uint16_t> out(request.size() * longest * hidden);
      EXPECT_THROW(reader->read_windows_16bit(request, longest, out.data()), std::invalid_argument);
    }
  }
}

// Compressed states cannot be read around HDF5: they fall back to H5Dread, with the same results.
TEST_F(CacheTest, CompressedCachesReadTheSame) {
  const auto m = small_metadata(StateDType::kFloat16);
  const auto docs = make_docs(m, 10);
  write_cache(path("raw.h5"), m, docs);
  write_cache(path("gz.h5"), m, docs, {0, 4, true});
  auto raw = CacheReader::open(path("raw.h5")), gz = CacheReader::open(path("gz.h5"));
  EXPECT_TRUE(raw->direct_reads());
  EXPECT_FALSE(gz->direct_reads());
  EXPECT_TRUE(snapshot(*raw) == snapshot(*gz));
  expect_same_reads(*raw, *gz, "raw against gzip");
}

// Direct reads (pread at chunk addresses located at open) give HDF5's bytes exactly: every dtype, chunks of
// the document block (a window straddles at most two) and of 5 rows (up to three), and int8 scales.
TEST_F(CacheTest, DirectReadsEqualHdf5Reads) {
  for (StateDType dtype : {StateDType::kFloat32, StateDType::kFloat16, StateDType::kBFloat16, StateDType::kInt8}) {
    for (int chunk_rows : {0, 5}) {
      const auto m = small_metadata(dtype);
      const std::string what = std::string(to_string(dtype)) + " chunk_rows " + std::to_string(chunk_rows);
      write_cache(path("c.h5"), m, make_docs(m, 25), {chunk_rows, 0, true});
      auto direct = CacheReader::open(path("c.h5"), m);
      auto hdf5 = CacheReader::open(path("c.h5"), m, through_hdf5());
      EXPECT_TRUE(direct->direct_reads()) << what;
      EXPECT_FALSE(hdf5->direct_reads()) << what;
      expect_same_reads(*direct, *hdf5, what);
    }
  }
}

// Requests of a few MiB, which read_threads 4 splits over four threads, read what one thread reads.
TEST_F(CacheTest, ThreadedReadsEqualOneThread) {
  for (StateDType dtype : {StateDType::kFloat32, StateDType::kFloat16, StateDType::kInt8}) {
    auto m = small_metadata(dtype);
    m.hidden_size = 1024;
    m.document_block = 64;
    m.window_stride = 20;
    write_cache(path("c.h5"), m, make_docs(m, 60));
    ReadOptions one, four;
    one.read_threads = 1;
    four.read_threads = 4;
    auto serial = CacheReader::open(path("c.h5"), m, one);
    auto parallel = CacheReader::open(path("c.h5"), m, four);
    expect_same_reads(*serial, *parallel, to_string(dtype));
  }
}

// An open reader keeps the file it opened: a rebuild renamed over it changes nothing, while a file changed in
// place (truncated, or rewritten) is refused by the next read, through either read path, instead of being read as
// garbage or past its end.
TEST_F(CacheTest, FileChangedUnderTheReader) {
  const auto m = small_metadata(StateDType::kFloat16);
  write_cache(path("c.h5"), m, make_docs(m, 10));
  auto kept = CacheReader::open(path("c.h5"), m);
  const auto before = snapshot(*kept);
  write_cache(path("new.h5"), m, make_docs(m, 10, 99));
  fs::rename(path("new.h5"), path("c.h5"));
  EXPECT_TRUE(snapshot(*kept) == before) << "a file renamed over the cache is not the one being read";

  auto expect_refused = [&](const CacheReader& reader, const std::string& what) {
    std::vector<float> out(reader.window_floats());
    auto text = message_of([&] { reader.read_windows({0}, out.data()); });
    EXPECT_NE(text.find("changed on disk after it was opened"), std::string::npos) << what << ": " << text;
    EXPECT_THROW(reader.read_windows({reader.num_windows() - 1}, out.data()), std::runtime_error) << what;
    EXPECT_THROW(reader.document_text(0), std::runtime_error) << what;
    EXPECT_THROW(reader.token_offsets(0), std::runtime_error) << what;
  };
  const auto size = fs::file_size(path("c.h5"));
  for (const auto& options : {ReadOptions(), through_hdf5()}) {
    const std::string what = options.direct_reads ? "direct" : "hdf5";
    fs::copy_file(path("c.h5"), path("cut.h5"), fs::copy_options::overwrite_existing);
    auto cut = CacheReader::open(path("cut.h5"), m, options);
    fs::resize_file(path("cut.h5"), size / 2);
    expect_refused(*cut, what + ", truncated");

    // Rewritten in place at the same size; the modification time is set explicitly, since a rewrite within the
    // same clock tick as the copy would keep it.
    fs::copy_file(path("c.h5"), path("edit.h5"), fs::copy_options::overwrite_existing);
    auto edited = CacheReader::open(path("edit.h5"), m, options);
    const auto modified = fs::last_write_time(path("edit.h5"));
    {
      std::fstream f(path("edit.h5"), std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(size - 64));
      f.write(std::string(64, '\x7f').data(), 64);
    }
    fs::last_write_time(path("edit.h5"), modified + std::chrono::seconds(1));
    expect_refused(*edited, what + ", rewritten");
  }
}

// A file cut short whose superblock was patched to the new size (as a damaged copy may be): HDF5 opens it, and
// direct reads must not be set up on chunk addresses past its end.
TEST_F(CacheTest, RefusesChunksPastTheEndOfTheFile) {
  const auto m = small_metadata();
  write_cache(path("c.h5"), m, make_docs(m, 10));
  const uint64_t size = fs::file_size(path("c.h5")), cut = size - 100;
  fs::resize_file(path("c.h5"), cut);
  {
    std::fstream f(path("c.h5"), std::ios::in | std::ios::out | std::ios::binary);
    char version = -1;
    f.seekg(8);
    f.get(version);
    if (version != 0) GTEST_SKIP() << "superblock version " << int(version) << "; the patch below is for version 0";
    f.seekp(40);  // version 0: the end-of-file address, little-endian
    for (int i = 0; i < 8; ++i) f.put(static_cast<char>((cut >> (8 * i)) & 0xff));
  }
  // The writer allocates state chunks as it appends, so the last one ended the file.
  auto text = message_of([&] { CacheReader::open(path("c.h5"), m); });
  EXPECT_NE(text.find("past the end of the file"), std::string::npos) << text;
  EXPECT_THROW(CacheReader::open(path("c.h5"), m), std::runtime_error);
  // Through HDF5 the open succeeds, and reading the missing chunk fails.
  auto reader = CacheReader::open(path("c.h5"), m, through_hdf5());
  std::vector<float> out(reader->window_floats());
  EXPECT_THROW(reader->read_windows({reader->num_windows() - 1}, out.data()), std::runtime_error);
}

// The header's contract: const reader members from several threads at once, two readers at once, and a
// writer in a third thread (every HDF5 call serialised inside the library).
TEST_F(CacheTest, ConcurrentReadersAndAWriter) {
  const auto m = small_metadata(StateDType::kFloat16);
  write_cache(path("c.h5"), m, make_docs(m, 20));
  auto shared = CacheReader::open(path("c.h5"), m);
  auto second = CacheReader::open(path("c.h5"), m);
  std::vector<int64_t> all(shared->num_windows());
  std::iota(all.begin(), all.end(), 0);
  std::vector<float> expected(all.size() * shared->window_floats());
  shared->read_windows(all, expected.data());
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      const CacheReader& reader = t % 2 ? *second : *shared;
      std::vector<float> out(expected.size());
      for (int i = 0; i < 20; ++i) {
        reader.read_windows(all, out.data());
        if (out != expected) ++mismatches;
        if (reader.document_text(reader.find("doc-3")).empty()) ++mismatches;
      }
    });
  threads.emplace_back([&] { write_cache(path("w.h5"), m, make_docs(m, 20, 4)); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(CacheReader::open(path("w.h5"), m)->num_documents(), 20);
}


TEST(CacheCodec, ScalarFp16MatchesHardware) {
  if (!detail::have_f16c()) GTEST_SKIP() << "no F16C on this CPU";
  std::vector<uint8_t> halves(2 * 65536);
  for (uint32_t h = 0; h < 65536; ++h) std::memcpy(&halves[2 * h], &h, 2);
  std::vector<float> simd(65536), scalar(65536);
  detail::halves_to_floats(halves.data(), 65536, simd.data(), true);
  detail::halves_to_floats(halves.data(), 65536, scalar.data(), false);
  for (uint32_t h = 0; h < 65536; ++h)
    ASSERT_EQ(std::memcmp(&simd[h], &scalar[h], 4), 0) << "half 0x" << std::hex << h << ": " << simd[h] << " vs " << scalar[h];

  std::vector<float> floats;
  std::mt19937 rng(11);
  for (int i = 0; i < 2000000; ++i) {
    const uint32_t bits = rng();
    float f;
    std::memcpy(&f, &bits, 4);
    if (std::isfinite(f)) floats.push_back(f);
  }
  std::uniform_real_distribution<float> exponent(-30.0f, 17.0f);
  for (int i = 0; i < 1000000; ++i) floats.push_back(std::ldexp(1.0f + (rng() % 1024) / 1024.0f + (rng() % 8192) / 8388608.0f, static_cast<int>(exponent(rng))));
  for (float f : {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f, 6.1035156e-5f,
                  6.1035152e-5f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, INFINITY, -INFINITY})
    floats.push_back(f);
  std::vector<uint8_t> a(2 * floats.size()), b(2 * floats.size());
  detail::floats_to_halves(floats.data(), floats.size(), a.data(), true);
  detail::floats_to_halves(floats.data(), floats.size(), b.data(), false);
  for (size_t i = 0; i < floats.size(); ++i)
    ASSERT_EQ(std::memcmp(&a[2 * i], &b[2 * i], 2), 0) << "float " << floats[i] << " (index " << i << ")";

  EXPECT_EQ(detail::float_to_bfloat16(1.0f + 1.0f / 256), 0x3f80);  // tie to even
  EXPECT_EQ(detail::float_to_bfloat16(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_EQ(detail::bfloat16_to_float(0x3f80), 1.0f);
}


}  // namespace
}  // namespace deformer
