#include "document.h"

#include <stdexcept>
#include <string>

namespace deformer {

// WordPiece continuation pieces ("##ing") belong to the word before them; every other token starts a word,
// which reproduces the pre-tokenizer words Hugging Face aligns answers to. SentencePiece marks the opposite way:
// a piece starting with U+2581 ("\xe2\x96\x81") starts a word, any other piece continues one.
PreparedDocument prepare_document(const Document& doc, const Tokenizer& tokenizer, int64_t max_tokens) {
  if (doc.text.empty()) throw std::invalid_argument("document '" + doc.id + "' is empty");
  PreparedDocument p;
  p.source = &doc;
  Encoding enc;
  try {
    enc = tokenizer.encode(doc.text);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("document '" + doc.id + "': " + e.what());
  }
  if (enc.ids.empty()) throw std::invalid_argument("document '" + doc.id + "' has no tokens (only whitespace or control characters)");
  // Every window's states of a document are held at once: the limit bounds that memory.
  if (max_tokens > 0 && static_cast<int64_t>(enc.ids.size()) > max_tokens)
    throw std::invalid_argument("document '" + doc.id + "' has " + std::to_string(enc.ids.size()) +
                                " tokens, more than the limit of " + std::to_string(max_tokens) +
                                " (max_document_tokens, --max-document-tokens): split it, or raise the limit");
  p.ids.assign(enc.ids.begin(), enc.ids.end());
  int64_t word = -1;
  const bool sentencepiece = std::string(tokenizer.type()) == "sentencepiece";
  for (size_t i = 0; i < enc.ids.size(); ++i) {
    const std::string& piece = tokenizer.id_to_token(enc.ids[i]);
    const bool starts_word = sentencepiece ? piece.rfind("\xe2\x96\x81", 0) == 0 : piece.rfind("##", 0) != 0;
    if (starts_word || word < 0) ++word;
    p.tokens.word_of_token.push_back(word);
    p.tokens.offsets.emplace_back(enc.offsets[i].begin, enc.offsets[i].end);
  }
  return p;
}

PreparedDocument prepare_cached_document(const Document& doc, const cache::CacheReader& cache, const Tokenizer& tokenizer) {
  const int64_t index = cache.find(doc.id);
  const auto offsets = cache.token_offsets(index);
  const auto words = cache.token_words(index);
  PreparedDocument p;
  if (words.empty()) {
    p = prepare_document(doc, tokenizer);
    bool same = offsets.size() == p.tokens.offsets.size();
    for (size_t t = 0; same && t < offsets.size(); ++t)
      same = offsets[t].begin == p.tokens.offsets[t].first && offsets[t].end == p.tokens.offsets[t].second;
    if (!same) throw std::runtime_error("document '" + doc.id + "': the cache's tokens differ from this model's tokenizer");
    return p;
  }
  p.source = &doc;
  p.tokens.word_of_token.assign(words.begin(), words.end());
  p.tokens.offsets.reserve(offsets.size());
  for (const auto& o : offsets) p.tokens.offsets.emplace_back(o.begin, o.end);
  return p;
}

}  // namespace deformer
