// libdeformer_spm.so: SentencePiece behind the C interface of spm_bridge.h (see there for why).
// Every entry point catches everything: no C++ exception may cross a dlopen'ed C boundary.

#include "tokenizer/spm_bridge.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include <sentencepiece_processor.h>

namespace {

void write_error(char* err, size_t err_size, const std::string& message) {
  if (!err || err_size == 0) return;
  std::strncpy(err, message.c_str(), err_size - 1);
  err[err_size - 1] = '\0';
}

}  // namespace

struct deformer_spm {
  sentencepiece::SentencePieceProcessor processor;
};

extern "C" {

__attribute__((visibility("default"))) int deformer_spm_abi_version(void) { return DEFORMER_SPM_ABI_VERSION; }

__attribute__((visibility("default"))) deformer_spm* deformer_spm_load(const char* proto, size_t size, char* err,
                                                                     size_t err_size) {
  try {
    auto* model = new deformer_spm;
    auto status = model->processor.LoadFromSerializedProto(std::string(proto, size));
    if (!status.ok()) {
      write_error(err, err_size, "cannot load the SentencePiece model: " + status.ToString());
      delete model;
      return nullptr;
    }
    return model;
  } catch (const std::exception& e) {
    write_error(err, err_size, std::string("cannot load the SentencePiece model: ") + e.what());
    return nullptr;
  }
}

__attribute__((visibility("default"))) void deformer_spm_free(deformer_spm* model) { delete model; }

__attribute__((visibility("default"))) int deformer_spm_vocab_size(const deformer_spm* model) {
  return model->processor.GetPieceSize();
}

__attribute__((visibility("default"))) int deformer_spm_piece_to_id(const deformer_spm* model, const char* piece,
                                                                  size_t size) {
  try {
    const std::string p(piece, size);
    const int id = model->processor.PieceToId(p);
    // PieceToId answers unk_id for unknown pieces; only the real "<unk>" may map there.
    return model->processor.IdToPiece(id) == p ? id : -1;
  } catch (...) {
    return -1;
  }
}

__attribute__((visibility("default"))) const char* deformer_spm_id_to_piece(const deformer_spm* model, int id) {
  if (id < 0 || id >= model->processor.GetPieceSize()) return nullptr;
  return model->processor.IdToPiece(id).c_str();
}

__attribute__((visibility("default"))) int deformer_spm_encode(const deformer_spm* model, const char* text, size_t size,
                                                             int32_t** out, size_t* count, char* err,
                                                             size_t err_size) {
  try {
    const auto proto = model->processor.EncodeAsImmutableProto(std::string(text, size));
    const size_t n = proto.pieces_size();
    auto* buffer = static_cast<int32_t*>(std::malloc(sizeof(int32_t) * 3 * (n ? n : 1)));
    if (!buffer) {
      write_error(err, err_size, "out of memory");
      return 1;
    }
    for (size_t i = 0; i < n; ++i) {
      const auto piece = proto.pieces(static_cast<int>(i));
      buffer[3 * i] = static_cast<int32_t>(piece.id());
      buffer[3 * i + 1] = static_cast<int32_t>(piece.begin());
      buffer[3 * i + 2] = static_cast<int32_t>(piece.end());
    }
    *out = buffer;
    *count = n;
    return 0;
  } catch (const std::exception& e) {
    write_error(err, err_size, std::string("SentencePiece encode failed: ") + e.what());
    return 1;
  }
}

__attribute__((visibility("default"))) void deformer_spm_release(void* buffer) { std::free(buffer); }

}  // extern "C"
