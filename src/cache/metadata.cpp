#include "cache/metadata.h"

#include <filesystem>
#include <stdexcept>

#include "cache/hdf5.h"

namespace deformer {
namespace cache {

const char* to_string(StateDType dtype) {
  switch (dtype) {
    case StateDType::kFloat32: return "fp32";
    case StateDType::kFloat16: return "fp16";
    case StateDType::kBFloat16: return "bf16";
    case StateDType::kInt8: return "int8";
  }
  return "?";
}

StateDType parse_state_dtype(const std::string& text) {
  if (text == "fp32") return StateDType::kFloat32;
  if (text == "fp16") return StateDType::kFloat16;
  if (text == "bf16") return StateDType::kBFloat16;
  if (text == "int8") return StateDType::kInt8;
  throw std::invalid_argument("unknown state dtype '" + text + "' (expected fp32, fp16, bf16 or int8)");
}

namespace detail {

void write_metadata(hid_t file, const CacheMetadata& m) {
  write_string_attribute(file, "format_name", m.format_name);
  write_int_attribute(file, "format_version", m.format_version);
  write_string_attribute(file, "model_hash", m.model_hash);
  write_string_attribute(file, "model_type", m.model_type);
  write_string_attribute(file, "joint_order", m.joint_order);
  write_int_attribute(file, "k", m.k);
  write_int_attribute(file, "hidden_size", m.hidden_size);
  write_int_attribute(file, "question_block", m.question_block);
  write_int_attribute(file, "document_block", m.document_block);
  write_int_attribute(file, "window_stride", m.window_stride);
  write_string_attribute(file, "state_dtype", to_string(m.state_dtype));
  write_string_attribute(file, "tokenizer_hash", m.tokenizer_hash);
  write_string_attribute(file, "library_version", m.library_version);
}

CacheMetadata read_metadata(hid_t file, const std::string& path) {
  CacheMetadata m;
  m.format_name = read_string_attribute(file, "format_name", path);
  m.format_version = static_cast<int>(read_int_attribute(file, "format_version", path));
  if (m.format_name != kFormatName)
    throw std::runtime_error("'" + path + "' is not a libdeformer cache (format '" + m.format_name + "')");
  if (m.format_version != kFormatVersion)
    throw std::runtime_error("'" + path + "' has cache format version " + std::to_string(m.format_version) +
                             "; this libdeformer " + version() + " reads version " + std::to_string(kFormatVersion));
  m.model_hash = read_string_attribute(file, "model_hash", path);
  m.model_type = read_string_attribute(file, "model_type", path);
  // Caches written before XLNet support have no joint_order: theirs follows from the model type.
  m.joint_order = has_attribute(file, "joint_order") ? read_string_attribute(file, "joint_order", path)
                  : m.model_type == "xlnet"         ? "document,question"
                                                    : "question,document";
  m.k = static_cast<int>(read_int_attribute(file, "k", path));
  m.hidden_size = static_cast<int>(read_int_attribute(file, "hidden_size", path));
  m.question_block = static_cast<int>(read_int_attribute(file, "question_block", path));
  m.document_block = static_cast<int>(read_int_attribute(file, "document_block", path));
  m.window_stride = static_cast<int>(read_int_attribute(file, "window_stride", path));
  try {
    m.state_dtype = parse_state_dtype(read_string_attribute(file, "state_dtype", path));
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("'" + path + "': " + e.what());
  }
  m.tokenizer_hash = read_string_attribute(file, "tokenizer_hash", path);
  m.library_version = read_string_attribute(file, "library_version", path);
  return m;
}

void validate_metadata(const CacheMetadata& m) {
  auto bad = [](const std::string& what) { throw std::invalid_argument("cache metadata: " + what); };
  if (m.format_name != kFormatName || m.format_version != kFormatVersion)
    bad("format must be " + std::string(kFormatName) + " version " + std::to_string(kFormatVersion));
  if (m.model_hash.empty()) bad("model_hash is empty");
  if (m.model_type.empty()) bad("model_type is empty");
  if (m.joint_order != "question,document" && m.joint_order != "document,question")
    bad("joint_order must be question,document or document,question, not '" + m.joint_order + "'");
  if (m.k < 0) bad("k=" + std::to_string(m.k) + " is negative");
  if (m.hidden_size <= 0) bad("hidden_size must be positive");
  if (m.question_block <= 0 || m.document_block <= 1) bad("block sizes must be positive");
  if (m.window_stride <= 0 || m.window_stride >= m.document_block - 1)
    bad("window_stride " + std::to_string(m.window_stride) + " must be in 1.." +
        std::to_string(m.document_block - 2) + " (below the window of document_block - 1 tokens)");
}

std::vector<std::string> differences(const CacheMetadata& have, const CacheMetadata& want, bool all_fields) {
  std::vector<std::string> out;
  auto cmp = [&](const char* field, const std::string& a, const std::string& b) {
    if (a != b) out.push_back(std::string(field) + " is '" + a + "' in the cache, expected '" + b + "'");
  };
  auto num = [&](const char* field, int64_t a, int64_t b) { cmp(field, std::to_string(a), std::to_string(b)); };
  cmp("model hash", have.model_hash, want.model_hash);
  cmp("model type", have.model_type, want.model_type);
  cmp("joint order", have.joint_order, want.joint_order);
  num("k", have.k, want.k);
  num("hidden size", have.hidden_size, want.hidden_size);
  cmp("tokenizer hash", have.tokenizer_hash, want.tokenizer_hash);
  num("question block", have.question_block, want.question_block);
  num("document block", have.document_block, want.document_block);
  if (all_fields) {
    num("window stride", have.window_stride, want.window_stride);
    cmp("state dtype", to_string(have.state_dtype), to_string(want.state_dtype));
  }
  return out;
}

std::string join(const std::vector<std::string>& parts, const char* separator) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : separator) + p;
  return out;
}

void require_cache_file(const std::string& path) {
  if (!std::filesystem::exists(path)) throw std::runtime_error("cache '" + path + "' does not exist");
  if (!std::filesystem::is_regular_file(path)) throw std::runtime_error("cache '" + path + "' is not a regular file");
}

}  // namespace detail
}  // namespace cache
}  // namespace deformer
