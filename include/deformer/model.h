#pragma once
// deformer::Model: a libdeformer model file loaded for inference (no torch types in this header).
//
// Thread safety: a loaded Model is immutable. Share one std::shared_ptr<const Model> between threads;
// every const member and every function of deformer/engine.h may be called concurrently. Per-call state
// (inputs, outputs, autograd mode) lives on the caller's stack.

#include <cstdint>
#include <memory>
#include <string>

namespace deformer {

enum class Device { kCPU, kCUDA };
enum class DType { kFloat32, kFloat16, kBFloat16 };

const char* to_string(Device device);
const char* to_string(DType dtype);
// Parses "cpu"/"cuda" and "fp32"/"fp16"/"bf16"; throws std::invalid_argument naming the bad value.
Device parse_device(const std::string& text);
DType parse_dtype(const std::string& text);

struct LoadOptions {
  Device device = Device::kCPU;   // where the weights live and the model runs
  int device_index = 0;           // CUDA device ordinal
  DType dtype = DType::kFloat32;  // compute dtype; fp16 and bf16 halve weight memory
  int threads = 0;                // CPU intra-op threads; 0 keeps LibTorch's default (all cores)
  // BERT runs as direct ATen calls with fused query/key/value and fused attention; false runs the model file's
  // TorchScript methods (the reference). XLNet and int8-quantized models always run the TorchScript methods.
  bool native_layers = true;
  // On CUDA, calls of at most 16,384 tokens (rows x length; one question over a few windows, a batch of questions'
  // lower layers) replay captured CUDA graphs, padded to a few fixed shapes: such calls are bound by kernel
  // launches. Needs native_layers.
  bool cuda_graphs = true;
  // Recompute the file's checksum of its weights, config and vocabulary (deformer/weights_checksum) and refuse a
  // file that does not match it: a damaged file would otherwise answer, and be accepted by caches of the intact
  // one. false skips it for trusted files. Files exported before the checksum existed, and int8-quantized ones,
  // have none, and load unverified.
  bool verify_weights = true;
};

// The shape and conventions a model file declares (docs/design.md, 'Layouts' and 'Model file').
struct ModelConfig {
  std::string model_type;         // "bert" or "xlnet"
  std::string architecture;       // "BertForQuestionAnswering" or "XLNetForQuestionAnsweringSimple"
  int num_layers = 0;
  int hidden_size = 0;
  int num_heads = 0;
  int intermediate_size = 0;
  int vocab_size = 0;
  int max_position_embeddings = 0;  // 0 for XLNet: relative positions have no limit
  int type_vocab_size = 0;          // XLNet: 0 (segments enter the attention, not the embeddings)
  int pad_token_id = 0;             // the padding id the layouts write and the masks test
  double layer_norm_eps = 0;
  std::string hidden_act;
  std::string tokenizer_type;     // "wordpiece" or "sentencepiece"
  bool do_lower_case = true;
  int question_block = 27;        // [CLS] question [SEP], padded (deformer mode)
  int document_block = 293;       // window [SEP], padded (deformer mode)
  int window_stride = 128;        // deformer-mode window stride in tokens
  int max_seq_len = 384;          // full-mode sequence length
  int doc_stride = 128;           // full-mode window stride
  int max_question_len = 64;      // full-mode question truncation
  std::string source;             // where the weights came from ("random-init seed 0" or a checkpoint path)
  std::string quantization;       // "" or "int8-dynamic" (deformer-export --quantize int8: CPU, fp32 compute only)
  std::string storage_dtype = "fp32";  // how the file stores weights: fp32, fp16, or int8 (matrices per row, widened on load)
  int default_k = -1;             // the split the model was trained for (deformer-export --default-k); -1: none
};

// The split a deformer-mode caller gets for `k` = -1: the model's trained split where the file records one, else
// 3/4 of the layers (9 of 12, the paper's). Any other k is returned as it is.
int resolve_split(const ModelConfig& config, int k);

class Model {
 public:
  // Reads a model file written by tools/deformer-export. Throws std::runtime_error when the file is
  // missing, unreadable, not a libdeformer model, of an unknown format version or an unsupported type,
  // and std::invalid_argument for options the build cannot honour (CUDA without a CUDA build).
  static std::shared_ptr<const Model> load(const std::string& path, const LoadOptions& options = {});

  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const;
  const LoadOptions& options() const;
  // Identifies the weights, vocabulary and config; caches record it and refuse other models.
  const std::string& content_hash() const;
  // The tokenizer data embedded in the file (vocab.txt contents for WordPiece, spiece.model bytes for
  // SentencePiece).
  const std::string& vocabulary() const;
  const std::string& path() const;
  int64_t parameter_count() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace deformer
