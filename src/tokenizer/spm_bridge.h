#pragma once
// C interface of libdeformer_spm.so, the only code that links Debian's libsentencepiece. That library
// carries its own protobuf-lite, whose symbols clash with the libprotobuf LibTorch loads (a crash at
// program start when both are linked into one program), so libdeformer loads the bridge at run time into a
// link-map namespace of its own (dlmopen; sentencepiece.cpp says why not only RTLD_DEEPBIND) and talks to it only
// through these functions. No C++ types cross, and memory is released by the side that allocated it.

#include <stddef.h>
#include <stdint.h>

#define DEFORMER_SPM_ABI_VERSION 1

extern "C" {

struct deformer_spm;

typedef int (*deformer_spm_abi_version_fn)(void);
// Loads a serialized SentencePiece model. On failure returns NULL and writes a message into err.
typedef deformer_spm* (*deformer_spm_load_fn)(const char* proto, size_t size, char* err, size_t err_size);
typedef void (*deformer_spm_free_fn)(deformer_spm* model);
typedef int (*deformer_spm_vocab_size_fn)(const deformer_spm* model);
// -1 when the piece is not in the vocabulary.
typedef int (*deformer_spm_piece_to_id_fn)(const deformer_spm* model, const char* piece, size_t size);
// NULL outside [0, vocab_size). The string lives as long as the model.
typedef const char* (*deformer_spm_id_to_piece_fn)(const deformer_spm* model, int id);
// Encodes `text` (valid UTF-8). On success returns 0 and sets *out to a malloc'd array of 3 * (*count)
// int32 values: id, begin byte, end byte (offsets into `text`); release it with deformer_spm_release.
typedef int (*deformer_spm_encode_fn)(const deformer_spm* model, const char* text, size_t size, int32_t** out,
                                      size_t* count, char* err, size_t err_size);
typedef void (*deformer_spm_release_fn)(void* buffer);

}  // extern "C"
