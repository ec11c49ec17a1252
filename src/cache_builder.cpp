#include "deformer/cache_builder.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <deque>
#include <stdexcept>
#include <unordered_set>

#include "deformer/engine.h"
#include "deformer/layout.h"
#include "deformer/retrieval.h"
#include "document.h"
#include "tensors.h"

namespace deformer {

std::string tokenizer_hash(const Model& model) {
  const auto& c = model.config();
  // SentencePiece revision 2 is transformers 5's pipeline (src/tokenizer/xlnet.cpp) in place of libsentencepiece's
  // encoder: the same vocabulary tokenizes differently, so caches made before it are refused.
  const std::string revision = c.tokenizer_type == "sentencepiece" ? "revision 2\n" : "";
  const uint64_t h =
      cache::fnv1a64(c.tokenizer_type + (c.do_lower_case ? "\nlower\n" : "\ncased\n") + revision + model.vocabulary());
  char hex[32];
  std::snprintf(hex, sizeof hex, "fnv1a64:%016" PRIx64, h);
  return hex;
}

cache::CacheMetadata expected_cache_metadata(const Model& model, int k) {
  const auto& c = model.config();
  cache::CacheMetadata m;
  m.model_hash = model.content_hash();
  m.model_type = c.model_type;
  m.joint_order = convention_of(c) == Convention::kXLNet ? "document,question" : "question,document";
  m.k = resolve_split(model.config(), k);
  m.hidden_size = c.hidden_size;
  m.question_block = c.question_block;
  m.document_block = c.document_block;
  m.window_stride = c.window_stride;
  m.tokenizer_hash = tokenizer_hash(model);
  return m;
}

struct CacheBuilder::Impl {
  std::shared_ptr<const Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  CacheBuildOptions options;
  int k = 0;
  std::unique_ptr<cache::CacheWriter> writer;
  std::unique_ptr<retrieval::TextIndexWriter> text_index;  // null when CacheBuildOptions::text_index is off
  std::unordered_set<std::string> ids;
  // Documents waiting for their states; a deque keeps PreparedDocument::source pointers valid.
  std::deque<Document> queued_sources;
  std::vector<PreparedDocument> queued;
  std::vector<std::vector<TokenSpan>> queued_windows;
  int64_t pending_windows = 0, documents = 0, windows = 0;

  void stop_if_requested() const {
    if (options.stop_requested && options.stop_requested()) throw BuildInterrupted();
  }

  void flush() {
    if (queued.empty()) return;
    const auto& c = model->config();
    const auto& special = tokenizer->special_tokens();
    std::vector<std::vector<int64_t>> rows;
    for (size_t d = 0; d < queued.size(); ++d)
      for (const auto& w : queued_windows[d]) {
        std::vector<int64_t> tokens(queued[d].ids.begin() + w.begin, queued[d].ids.begin() + w.end);
        rows.push_back(document_block(tokens, c.document_block, special, convention_of(c)).input_ids);
      }
    c10::InferenceMode inference;
    auto ids = rows_to_tensor(rows, device_of(*model));
    std::vector<at::Tensor> parts;
    // Each batch is cut after its longest real row (window tokens and [SEP]); only real rows are stored.
    std::vector<int64_t> real_rows;
    for (size_t d = 0; d < queued.size(); ++d)
      for (const auto& w : queued_windows[d]) real_rows.push_back(w.end - w.begin + 1);
    for (int64_t first = 0; first < ids.size(0); first += options.batch_size) {
      stop_if_requested();
      const int64_t last = std::min<int64_t>(first + options.batch_size, ids.size(0));
      const int64_t longest = *std::max_element(real_rows.begin() + first, real_rows.begin() + last);
      auto states = engine::encode_documents(*model, ids.slice(0, first, last).slice(1, 0, longest), k);
      parts.push_back(at::constant_pad_nd(states, {0, 0, 0, c.document_block - longest}));
    }
    stop_if_requested();
    auto states = at::cat(parts).to(at::kCPU).to(at::kFloat).contiguous();
    const float* data = states.data_ptr<float>();
    const int64_t window_floats = int64_t(c.document_block) * c.hidden_size;
    int64_t row = 0;
    for (size_t d = 0; d < queued.size(); ++d) {
      std::vector<cache::WindowStates> ws;
      for (const auto& w : queued_windows[d]) ws.push_back({w, w.end - w.begin + 1, data + window_floats * row++});
      std::vector<cache::CharSpan> offsets;
      for (const auto& [b, e] : queued[d].tokens.offsets) offsets.push_back({b, e});
      const auto& words = queued[d].tokens.word_of_token;
      writer->add_document(queued[d].source->id, queued[d].source->text, offsets, ws,
                           std::vector<int32_t>(words.begin(), words.end()));
      if (text_index) text_index->add(queued[d].source->id, queued[d].source->title, queued[d].source->text);
      ++documents;
      windows += ws.size();
    }
    queued.clear();
    queued_windows.clear();
    queued_sources.clear();
    pending_windows = 0;
  }
};

cache::CacheMetadata build_metadata(const Model& model, const CacheBuildOptions& options) {
  const auto& c = model.config();
  auto metadata = expected_cache_metadata(model, options.k);
  engine::check_split(model, metadata.k);
  metadata.window_stride = options.window_stride == 0 ? c.window_stride : options.window_stride;
  document_windows(1, c.document_block - 1, metadata.window_stride);  // validates the stride up front
  metadata.state_dtype = options.dtype;
  return metadata;
}

CacheBuilder::CacheBuilder(std::shared_ptr<const Model> model, const std::string& path, CacheBuildOptions options)
    : impl_(std::make_unique<Impl>()) {
  if (!model) throw std::invalid_argument("CacheBuilder needs a model");
  if (options.batch_size < 1) throw std::invalid_argument("batch_size must be at least 1");
  const auto metadata = build_metadata(*model, options);
  impl_->k = metadata.k;
  options.window_stride = metadata.window_stride;
  impl_->tokenizer = make_tokenizer(*model);
  impl_->model = std::move(model);
  impl_->options = options;
  impl_->writer = cache::CacheWriter::create(path, metadata, options.writer);
  if (options.text_index) impl_->text_index = retrieval::TextIndexWriter::create(retrieval::index_path(path));
}

CacheBuilder::~CacheBuilder() = default;

void CacheBuilder::add(const Document& document) {
  impl_->stop_if_requested();
  if (!impl_->ids.insert(document.id).second) throw std::invalid_argument("duplicate document id '" + document.id + "'");
  impl_->queued_sources.push_back(document);
  try {
    impl_->queued.push_back(prepare_document(impl_->queued_sources.back(), *impl_->tokenizer, impl_->options.max_document_tokens));
  } catch (...) {
    impl_->queued_sources.pop_back();
    impl_->ids.erase(document.id);
    throw;
  }
  const auto& c = impl_->model->config();
  impl_->queued_windows.push_back(document_windows(impl_->queued.back().ids.size(), c.document_block - 1, impl_->options.window_stride));
  impl_->pending_windows += impl_->queued_windows.back().size();
  if (impl_->pending_windows >= impl_->options.batch_size) impl_->flush();
}

void CacheBuilder::flush() { impl_->flush(); }

void CacheBuilder::commit() {
  impl_->flush();
  impl_->stop_if_requested();
  // The cache first: it holds the expensive work. An index left stale by a crash between the two renames is
  // refused when opened against the cache (its documents' fingerprint differs).
  impl_->writer->commit();
  if (impl_->text_index) impl_->text_index->commit();
}

int64_t CacheBuilder::documents() const { return impl_->documents; }
int64_t CacheBuilder::windows() const { return impl_->windows; }
int CacheBuilder::split_layer() const { return impl_->k; }

namespace {
// Why the complete cache does not hold `shard`'s documents of `documents` ("" when it holds the same ids with the same
// texts, in the same order): documents added, removed, reordered or edited since it was built.
std::string documents_differ(const cache::CacheReader& cache, const DocumentSource& documents,
                             const cache::ShardSpec& shard) {
  int64_t next = 0;
  std::string why;
  documents([&](Document&& doc) {
    if (!why.empty() || cache::shard_of(doc.id, shard.count) != shard.index) return;
    if (next == cache.num_documents())
      why = "document '" + doc.id + "' is not in it";
    else if (cache.document(next).id != doc.id)
      why = "its document " + std::to_string(next) + " is '" + cache.document(next).id + "', the input's '" + doc.id + "'";
    else if (cache.document_text(next) != doc.text)
      why = "the text of document '" + doc.id + "' changed";
    ++next;
  });
  if (why.empty() && next < cache.num_documents())
    why = "it has " + std::to_string(cache.num_documents()) + " documents, the input " + std::to_string(next);
  return why;
}
}  // namespace

std::string built_otherwise(const std::string& path, const Model& model, const CacheBuildOptions& options,
                            const DocumentSource& documents, const cache::ShardSpec& shard) {
  try {
    const auto want = build_metadata(model, options);
    const auto cache = cache::CacheReader::open(path, want);  // refuses another model, k or tokenizer
    const auto& have = cache->metadata();
    if (options.text_index) retrieval::TextIndex::open(retrieval::index_path(path), *cache);
    if (have.window_stride != want.window_stride)
      return "window stride " + std::to_string(have.window_stride) + ", expected " + std::to_string(want.window_stride);
    if (have.state_dtype != want.state_dtype)
      return std::string("state dtype ") + cache::to_string(have.state_dtype) + ", expected " +
             cache::to_string(want.state_dtype);
    return documents_differ(*cache, documents, shard);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
}

}  // namespace deformer
