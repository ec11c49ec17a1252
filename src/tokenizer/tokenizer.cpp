#include <stdexcept>
#include <string>

#include "deformer/model.h"
#include "deformer/tokenizer.h"

namespace deformer {

std::unique_ptr<Tokenizer> make_tokenizer(const Model& model) {
  const ModelConfig& config = model.config();
  if (config.tokenizer_type == "wordpiece") {
    try {
      return make_wordpiece(model.vocabulary(), config.do_lower_case);
    } catch (const std::invalid_argument& e) {
      // A bad vocabulary inside a model file is a broken file, not a caller error.
      throw std::runtime_error("'" + model.path() + "': " + e.what());
    }
  }
  if (config.tokenizer_type == "sentencepiece") {
    try {
      auto tokenizer = config.model_type == "xlnet" ? make_xlnet_tokenizer(model.vocabulary()) : make_sentencepiece(model.vocabulary());
      if (tokenizer->vocab_size() != static_cast<size_t>(config.vocab_size))
        throw std::runtime_error("'" + model.path() + "': the embedded SentencePiece model has " +
                                 std::to_string(tokenizer->vocab_size()) + " pieces, the model " +
                                 std::to_string(config.vocab_size) + " embeddings");
      return tokenizer;
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error("'" + model.path() + "': " + e.what());
    }
  }
  throw std::runtime_error("'" + model.path() + "' declares tokenizer type '" + config.tokenizer_type +
                           "', which this build does not support (supported: wordpiece, sentencepiece)");
}

}  // namespace deformer
