#pragma once
// The vocabulary half of the SentencePiece tokenizers (sentencepiece.cpp through libsentencepiece, xlnet.cpp on its
// own): pieces by id, ids by piece, and the special tokens under XLNet's names.

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "deformer/tokenizer.h"

namespace deformer {

class PieceVocabulary : public Tokenizer {
 public:
  const SpecialTokens& special_tokens() const override { return special_; }
  size_t vocab_size() const override { return pieces_.size(); }
  const std::string& id_to_token(int32_t id) const override;
  int32_t token_to_id(std::string_view token) const override;
  const char* type() const override { return "sentencepiece"; }

 protected:
  explicit PieceVocabulary(std::vector<std::string> pieces);

  // -1 when absent.
  int32_t find(const std::string& piece) const {
    const auto it = ids_.find(piece);
    return it == ids_.end() ? -1 : it->second;
  }

  std::vector<std::string> pieces_;
  // A piece listed twice maps to its last id, as in Hugging Face's Unigram model (its token-to-id map).
  std::unordered_map<std::string, int32_t> ids_;
  SpecialTokens special_;
};

}  // namespace deformer
