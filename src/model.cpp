#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>

#include <nlohmann/json.hpp>
#include <zlib.h>

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include "model_impl.h"
#include "tensors.h"

namespace deformer {
namespace {

constexpr int kFormatVersion = 1;
const char* const kRequiredMethods[] = {"embed", "encode", "qa_logits", "forward"};

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// The submodule holding the attribute at a dotted path ("layers.3.query.weight"), and the attribute's name.
std::pair<torch::jit::Module, std::string> owner_of(const torch::jit::Module& module, const std::string& path) {
  torch::jit::Module owner = module;
  size_t begin = 0;
  for (size_t dot = path.find('.'); dot != std::string::npos; begin = dot + 1, dot = path.find('.', begin))
    owner = owner.attr(path.substr(begin, dot - begin)).toModule();
  return {owner, path.substr(begin)};
}

// Replaces the parameter at a dotted path of a TorchScript module.
void set_parameter(torch::jit::Module& module, const std::string& path, const at::Tensor& value) {
  auto [owner, name] = owner_of(module, path);
  owner.register_parameter(name, value, /*is_buffer=*/false);
}

// deformer-export --storage-dtype int8 stores each weight matrix W as buffers W_int8 (int8) and W_scale (one fp32
// scale per row) beside an empty W; this puts W = W_int8 * W_scale back and empties the int8 buffers.
// The exporter's deformer/weights_checksum ("crc32:" and 8 hex digits): zlib's CRC-32 chained over the config
// JSON, the vocabulary, then, by name, each tensor's name and its bytes as stored. zlib, because Python's
// exporter has it built in; the zip container's own CRCs are not checked by LibTorch's reader.
std::string weights_checksum(const torch::jit::Module& module, const std::string& config, const std::string& vocabulary) {
  auto update = [](uLong crc, const void* data, size_t bytes) {
    const auto* p = static_cast<const Bytef*>(data);
    for (; bytes > 0;) {  // crc32() takes at most 4 GiB a call
      const uInt n = static_cast<uInt>(std::min<size_t>(bytes, 1u << 30));
      crc = ::crc32(crc, p, n);
      p += n;
      bytes -= n;
    }
    return crc;
  };
  uLong crc = ::crc32(0L, Z_NULL, 0);
  crc = update(crc, config.data(), config.size());
  crc = update(crc, vocabulary.data(), vocabulary.size());
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) tensors.emplace(p.name, p.value);
  for (const auto& b : module.named_buffers(/*recurse=*/true)) tensors.emplace(b.name, b.value);
  for (const auto& [name, tensor] : tensors) {
    const at::Tensor bytes = tensor.detach().to(at::kCPU).contiguous();
    crc = update(crc, name.data(), name.size());
    crc = update(crc, bytes.data_ptr(), bytes.numel() * bytes.element_size());
  }
  char text[16];
  std::snprintf(text, sizeof(text), "%08lx", static_cast<unsigned long>(crc & 0xffffffffUL));
  return std::string("crc32:") + text;
}

void widen_int8_weights(torch::jit::Module& module, const std::string& path) {
  static const std::string kSuffix = "_int8";
  std::map<std::string, at::Tensor> buffers;
  for (const auto& b : module.named_buffers(/*recurse=*/true)) buffers.emplace(b.name, b.value);
  int widened = 0;
  for (const auto& [name, quantized] : buffers) {
    if (name.size() <= kSuffix.size() || name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0)
      continue;
    const std::string weight = name.substr(0, name.size() - kSuffix.size());
    auto scale = buffers.find(weight + "_scale");
    if (scale == buffers.end() || quantized.dim() != 2 || scale->second.numel() != quantized.size(0))
      throw std::runtime_error(path + ": int8 weight " + weight + " lacks a per-row scale of " +
                               std::to_string(quantized.dim() == 2 ? quantized.size(0) : 0) + " values");
    set_parameter(module, weight, quantized.to(at::kFloat) * scale->second.to(at::kFloat).unsqueeze(1));
    for (const std::string& spent : {name, weight + "_scale"}) {
      auto [owner, leaf] = owner_of(module, spent);
      owner.register_buffer(leaf, at::empty({0}, quantized.options()));
    }
    ++widened;
  }
  if (widened == 0) throw std::runtime_error(path + ": storage_dtype int8, but the file holds no int8 weights");
}

template <typename T>
T required(const nlohmann::json& object, const char* key, const std::string& path) {
  auto it = object.find(key);
  if (it == object.end()) throw std::runtime_error(path + ": model config lacks '" + key + "'");
  return it->get<T>();
}

ModelConfig parse_config(const std::string& text, const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": embedded config.json is not valid JSON (" + e.what() + ")");
  }
  ModelConfig c;
  c.model_type = required<std::string>(j, "model_type", path);
  if (c.model_type != "bert" && c.model_type != "xlnet")
    throw std::runtime_error(path + ": unsupported model type '" + c.model_type + "' (this build supports bert and xlnet)");
  c.architecture = required<std::string>(j, "architecture", path);
  if (!j.contains(c.model_type)) throw std::runtime_error(path + ": model config lacks '" + c.model_type + "'");
  if (c.model_type == "xlnet") {
    const auto& x = j.at("xlnet");
    c.num_layers = required<int>(x, "n_layer", path);
    c.hidden_size = required<int>(x, "d_model", path);
    c.num_heads = required<int>(x, "n_head", path);
    c.intermediate_size = required<int>(x, "d_inner", path);
    c.vocab_size = required<int>(x, "vocab_size", path);
    c.layer_norm_eps = required<double>(x, "layer_norm_eps", path);
    c.hidden_act = required<std::string>(x, "ff_activation", path);
    c.pad_token_id = required<int>(x, "pad_token_id", path);
  } else {
    const auto& bert = j.at("bert");
    c.num_layers = required<int>(bert, "num_hidden_layers", path);
    c.hidden_size = required<int>(bert, "hidden_size", path);
    c.num_heads = required<int>(bert, "num_attention_heads", path);
    c.intermediate_size = required<int>(bert, "intermediate_size", path);
    c.vocab_size = required<int>(bert, "vocab_size", path);
    c.max_position_embeddings = required<int>(bert, "max_position_embeddings", path);
    c.type_vocab_size = required<int>(bert, "type_vocab_size", path);
    c.layer_norm_eps = required<double>(bert, "layer_norm_eps", path);
    c.hidden_act = required<std::string>(bert, "hidden_act", path);
  }
  const auto& tokenizer = j.at("tokenizer");
  c.tokenizer_type = required<std::string>(tokenizer, "type", path);
  c.do_lower_case = required<bool>(tokenizer, "do_lower_case", path);
  const auto& layout = j.at("layout");
  c.question_block = required<int>(layout, "question_block", path);
  c.document_block = required<int>(layout, "document_block", path);
  c.window_stride = required<int>(layout, "window_stride", path);
  c.max_seq_len = required<int>(layout, "max_seq_len", path);
  c.doc_stride = required<int>(layout, "doc_stride", path);
  c.max_question_len = required<int>(layout, "max_question_len", path);
  c.source = j.value("source", "");
  c.quantization = j.value("quantization", "");
  c.storage_dtype = j.value("storage_dtype", "fp32");
  if (c.storage_dtype != "fp32" && c.storage_dtype != "fp16" && c.storage_dtype != "int8")
    throw std::runtime_error(path + ": unknown storage_dtype '" + c.storage_dtype + "' (expected fp32, fp16 or int8)");
  c.default_k = j.value("default_k", -1);
  if (c.default_k < -1 || c.default_k > c.num_layers)
    throw std::runtime_error(path + ": default_k " + std::to_string(c.default_k) + " outside 0.." +
                             std::to_string(c.num_layers));
  if (c.model_type == "bert" &&
      (c.question_block + c.document_block > c.max_position_embeddings || c.max_seq_len > c.max_position_embeddings))
    throw std::runtime_error(path + ": block layout exceeds max_position_embeddings");
  return c;
}

}  // namespace

int resolve_split(const ModelConfig& config, int k) {
  if (k >= 0) return k;
  return config.default_k >= 0 ? config.default_k : config.num_layers * 3 / 4;
}

const char* to_string(Device device) { return device == Device::kCUDA ? "cuda" : "cpu"; }

const char* to_string(DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return "fp16";
    case DType::kBFloat16: return "bf16";
    default: return "fp32";
  }
}

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::kCPU;
  if (text == "cuda") return Device::kCUDA;
  throw std::invalid_argument("unknown device '" + text + "' (expected cpu or cuda)");
}

DType parse_dtype(const std::string& text) {
  if (text == "fp32" || text == "float32") return DType::kFloat32;
  if (text == "fp16" || text == "float16") return DType::kFloat16;
  if (text == "bf16" || text == "bfloat16") return DType::kBFloat16;
  throw std::invalid_argument("unknown dtype '" + text + "' (expected fp32, fp16 or bf16)");
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<const Model> Model::load(const std::string& path, const LoadOptions& options) {
  // Checked before opening: opening a FIFO for reading waits for a writer, forever.
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (std::filesystem::exists(status) && !std::filesystem::is_regular_file(status))
    throw std::runtime_error("model file '" + path + "' is not a regular file");
  if (!std::filesystem::is_regular_file(status) || !std::ifstream(path).good())
    throw std::runtime_error("cannot open model file '" + path + "'");
  if (options.device == Device::kCUDA && !torch::cuda::is_available())
    throw std::invalid_argument("device cuda requested, but this build or machine has no CUDA device");
  if (options.threads < 0) throw std::invalid_argument("threads must be >= 0");
  if (options.threads > 0) at::set_num_threads(options.threads);
  if (options.device == Device::kCPU && options.dtype != DType::kFloat32) {
    // Some LibTorch builds (Debian's 1.13) lack CPU kernels for half precision: say so instead of failing
    // mid-answer with a backtrace.
    try {
      auto x = at::ones({1, 4}, at::TensorOptions().dtype(to_scalar_type(options.dtype)));
      (void)at::layer_norm(at::gelu(at::matmul(x, x.t())), {1});
    } catch (const c10::Error&) {
      throw std::invalid_argument(std::string("compute dtype ") + to_string(options.dtype) +
                                  " is not supported on the CPU by this LibTorch build: use fp32 on the CPU, or " +
                                  to_string(options.dtype) + " on CUDA");
    }
  }

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->options = options;
  impl->device = options.device == Device::kCUDA ? c10::Device(c10::kCUDA, options.device_index) : c10::Device(c10::kCPU);
  impl->dtype = to_scalar_type(options.dtype);

  torch::jit::ExtraFilesMap extra{{"deformer/format_version", ""},
                                  {"deformer/config.json", ""},
                                  {"deformer/vocab.txt", ""},
                                  {"deformer/spiece.model", ""},
                                  {"deformer/content_hash", ""},
                                  {"deformer/weights_checksum", ""}};
  try {
    impl->module = torch::jit::load(path, impl->device, extra);
  } catch (const c10::Error& e) {
    throw std::runtime_error("'" + path + "' is not a readable TorchScript model file: " + first_line(e.what_without_backtrace()));
  }
  const std::string& version = extra["deformer/format_version"];
  if (version.empty())
    throw std::runtime_error("'" + path + "' is a TorchScript file but not a libdeformer model (no deformer/format_version); "
                             "write it with tools/deformer-export");
  if (version != std::to_string(kFormatVersion))
    throw std::runtime_error("'" + path + "' has model format version " + version + "; this library reads version " +
                             std::to_string(kFormatVersion));
  impl->config = parse_config(extra["deformer/config.json"], path);
  if (!impl->config.quantization.empty() && (options.device != Device::kCPU || options.dtype != DType::kFloat32))
    throw std::invalid_argument("'" + path + "' is " + impl->config.quantization +
                                " quantized: it runs on the CPU with fp32 compute only (export without --quantize for " +
                                to_string(options.device) + " " + to_string(options.dtype) + ")");
  impl->vocabulary = extra[impl->config.tokenizer_type == "sentencepiece" ? "deformer/spiece.model" : "deformer/vocab.txt"];
  impl->content_hash = extra["deformer/content_hash"];
  if (impl->vocabulary.empty()) throw std::runtime_error("'" + path + "' has no embedded vocabulary");
  for (const char* method : kRequiredMethods)
    if (!impl->module.find_method(method))
      throw std::runtime_error("'" + path + "' lacks the method '" + std::string(method) + "'");

  const std::string& stored_checksum = extra["deformer/weights_checksum"];
  if (options.verify_weights && !stored_checksum.empty()) {
    const std::string computed = weights_checksum(impl->module, extra["deformer/config.json"], impl->vocabulary);
    if (computed != stored_checksum)
      throw std::runtime_error("model file '" + path + "' is damaged: its weights, config or vocabulary do not match "
                               "its checksum (" + computed + ", stored " + stored_checksum + ")");
  }
  impl->module.eval();
  if (impl->config.storage_dtype == "int8") {
    torch::NoGradGuard no_grad;
    widen_int8_weights(impl->module, path);
  }
  impl->module.to(impl->dtype);  // also widens weights stored as fp16 (export --storage-dtype fp16)
  if (impl->config.model_type == "bert" && impl->config.quantization.empty() && options.native_layers) {
    torch::NoGradGuard no_grad;  // plain tensors, usable in and out of inference mode
    std::map<std::string, at::Tensor> parameters;
    for (const auto& p : impl->module.named_parameters(/*recurse=*/true)) parameters.emplace(p.name, p.value);
    impl->bert = std::make_unique<native::Bert>(parameters, impl->config);
    for (const auto& [name, view] : impl->bert->fused_views()) set_parameter(impl->module, name, view);
    if (options.device == Device::kCUDA && options.cuda_graphs && cuda_graphs::GraphCache::available())
      impl->graphs = std::make_unique<cuda_graphs::GraphCache>();
  }
  for (const auto& p : impl->module.parameters()) impl->parameter_count += p.numel();
  return std::shared_ptr<const Model>(new Model(std::move(impl)));
}

const ModelConfig& Model::config() const { return impl_->config; }
const LoadOptions& Model::options() const { return impl_->options; }
const std::string& Model::content_hash() const { return impl_->content_hash; }
const std::string& Model::vocabulary() const { return impl_->vocabulary; }
const std::string& Model::path() const { return impl_->path; }
int64_t Model::parameter_count() const { return impl_->parameter_count; }

}  // namespace deformer
