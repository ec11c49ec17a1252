#pragma once
// Synthetic caches for the cache tests: documents with texts, offsets, windows and random states, written through
// the public writer, and everything a reader returns in one comparable form.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "deformer/cache.h"
#include "deformer/layout.h"

namespace deformer::testing {
using namespace deformer::cache;

// A synthetic document: text, offsets, windows and their states, as a tokenizer and the engine would give.
struct Doc {
  std::string id, text;
  std::vector<CharSpan> offsets;
  std::vector<TokenSpan> spans;
  std::vector<std::vector<float>> states;  // per window, rows x hidden
  std::vector<WindowStates> windows() const {
    std::vector<WindowStates> out;
    for (size_t i = 0; i < spans.size(); ++i)
      out.push_back({spans[i], static_cast<int64_t>(states[i].size()) / hidden, states[i].data()});
    return out;
  }
  int64_t hidden = 0;
};

inline CacheMetadata small_metadata(StateDType dtype = StateDType::kFloat32) {
  CacheMetadata m;
  m.model_hash = "sha256:0123abcd";
  m.model_type = "bert";
  m.k = 2;
  m.hidden_size = 16;
  m.question_block = 6;
  m.document_block = 12;
  m.window_stride = 5;
  m.state_dtype = dtype;
  m.tokenizer_hash = "sha256:tok";
  return m;
}

// Token t is the word "wt" (plus a non-ASCII word now and then, so offsets count code points, not bytes).
inline Doc make_doc(const std::string& id, int num_tokens, const CacheMetadata& m, uint32_t seed) {
  Doc doc;
  doc.id = id;
  doc.hidden = m.hidden_size;
  int64_t position = 0;
  for (int t = 0; t < num_tokens; ++t) {
    const std::string word = t % 7 == 3 ? "caf\xc3\xa9" : "w" + std::to_string(t);
    const int64_t length = t % 7 == 3 ? 4 : static_cast<int64_t>(word.size());
    if (t) {
      doc.text += ' ';
      ++position;
    }
    doc.text += word;
    doc.offsets.push_back({position, position + length});
    position += length;
  }
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (const TokenSpan& span : document_windows(num_tokens, m.document_block - 1, m.window_stride)) {
    doc.spans.push_back(span);
    const int64_t rows = span.end - span.begin + 1;  // + [SEP]
    std::vector<float> states(rows * m.hidden_size);
    for (auto& v : states) v = normal(rng);
    states[rng() % states.size()] *= 8;  // an outlier per window, the case per-row int8 scales must survive
    doc.states.push_back(std::move(states));
  }
  return doc;
}

inline std::vector<Doc> make_docs(const CacheMetadata& m, int count, uint32_t seed = 1, const std::string& prefix = "doc-") {
  std::vector<Doc> docs;
  for (int i = 0; i < count; ++i) docs.push_back(make_doc(prefix + std::to_string(i), 3 + (i * 13) % 40, m, seed + i));
  return docs;
}

inline void write_cache(const std::string& path, const CacheMetadata& m, const std::vector<Doc>& docs,
                 const WriterOptions& options = {}) {
  auto writer = CacheWriter::create(path, m, options);
  for (const auto& d : docs) writer->add_document(d.id, d.text, d.offsets, d.windows());
  writer->commit();
}

// All of a reader's content in one comparable form: id -> (text, offsets, windows, dequantised states).
struct Snapshot {
  std::map<std::string, std::tuple<std::string, std::vector<int64_t>, std::vector<int64_t>, std::vector<float>>> docs;
  bool operator==(const Snapshot& o) const { return docs == o.docs; }
};
inline Snapshot snapshot(const CacheReader& reader) {
  Snapshot s;
  for (int64_t d = 0; d < reader.num_documents(); ++d) {
    const auto& info = reader.document(d);
    std::vector<int64_t> offsets, spans;
    for (const auto& o : reader.token_offsets(d)) offsets.insert(offsets.end(), {o.begin, o.end});
    std::vector<int64_t> windows;
    for (int64_t w = 0; w < info.num_windows; ++w) {
      const auto& wi = reader.window(info.first_window + w);
      EXPECT_EQ(wi.document, d);
      spans.insert(spans.end(), {wi.tokens.begin, wi.tokens.end, wi.rows});
      windows.push_back(info.first_window + w);
    }
    std::vector<float> states(windows.size() * reader.window_floats());
    reader.read_windows(windows, states.data());
    s.docs[info.id] = {reader.document_text(d), offsets, spans, states};
  }
  return s;
}

}  // namespace deformer::testing
