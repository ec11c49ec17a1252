#pragma once
// deformer::Tokenizer: text to token ids with character offsets into the caller's original text.
//
// Offsets are [begin, end) in Unicode code points of the input (Python string indices, the unit of SQuAD's
// answer_start), never bytes: answers are cut out of the user's text with them.
//
// Thread safety: a Tokenizer is immutable after construction. Share one instance (for example through
// std::shared_ptr<const Tokenizer>) between threads; every member function is const and may be called
// concurrently. No torch types here: tokenization does not need LibTorch.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "deformer/types.h"

namespace deformer {

class Model;

// A token's [begin, end) in code points of the original text.
using TokenOffset = CharSpan;

struct Encoding {
  std::vector<int32_t> ids;
  std::vector<TokenOffset> offsets;  // offsets[i] belongs to ids[i]
};

// Ids of the tokens the input layouts need (docs/design.md, 'Layouts'). mask is -1 when the vocabulary has none.
struct SpecialTokens {
  int32_t pad = -1;
  int32_t unk = -1;
  int32_t cls = -1;
  int32_t sep = -1;
  int32_t mask = -1;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Tokenizes `utf8` without adding special tokens (the layout code places [CLS]/[SEP]). Special-token
  // strings that occur literally in the text ("[SEP]") become those tokens, as in Hugging Face.
  // Throws std::invalid_argument naming the byte offset when `utf8` is not valid UTF-8.
  virtual Encoding encode(std::string_view utf8) const = 0;

  virtual const SpecialTokens& special_tokens() const = 0;
  virtual size_t vocab_size() const = 0;
  // Throws std::out_of_range for an id outside [0, vocab_size()).
  virtual const std::string& id_to_token(int32_t id) const = 0;
  // -1 when the vocabulary lacks `token`.
  virtual int32_t token_to_id(std::string_view token) const = 0;
  // "wordpiece" or "sentencepiece"
  virtual const char* type() const = 0;
};

// BERT WordPiece, equal to Hugging Face BertTokenizerFast (ids and offsets). `vocab_text` is the contents
// of vocab.txt (one token per line, the line number is the id). `do_lower_case` selects the uncased
// normalization (lower-casing and accent stripping) used with uncased vocabularies.
// Throws std::invalid_argument when the vocabulary is empty or lacks [UNK], [CLS], [SEP] or [PAD].
std::unique_ptr<Tokenizer> make_wordpiece(std::string vocab_text, bool do_lower_case);

// SentencePiece from a serialized model (spiece.model contents). Plain SentencePiece encoding with the model's own
// normalizer; offsets map through it into the original text. Special-token ids follow XLNet's names (<pad>, <unk>,
// <cls>, <sep>, <mask>; -1 when absent). Hugging Face's XLNet tokenizer is make_xlnet_tokenizer, not this. Needs
// libdeformer_spm.so at run time (std::runtime_error when it cannot be loaded); std::invalid_argument for a model
// SentencePiece rejects.
std::unique_ptr<Tokenizer> make_sentencepiece(std::string model_proto);

// XLNet's tokenizer as transformers 5 gives it (the fast XLNetTokenizer on the `tokenizers` backend, built from
// spiece.model; keep_accents false, no lower-casing), ids and offsets alike: the unknown, control and user-defined
// pieces (<sep>, <cls>, ..., and in xlnet-base-cased . ( ) " - and a few more) cut out of the raw text as added
// tokens; `` and '' to "; NFKD; marks dropped; the model's precompiled charsmap; "\u2581" before every word; the
// Unigram model's best segmentation. docs/xlnet.md has the details. Reads the model itself (no libdeformer_spm.so);
// std::invalid_argument for bytes that are not a SentencePiece model.
std::unique_ptr<Tokenizer> make_xlnet_tokenizer(std::string model_proto);

// The tokenizer a model file declares, built from the vocabulary embedded in it (XLNet models: make_xlnet_tokenizer).
// Throws
// std::runtime_error for a tokenizer type this build does not support.
std::unique_ptr<Tokenizer> make_tokenizer(const Model& model);

}  // namespace deformer
