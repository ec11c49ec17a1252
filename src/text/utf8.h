#pragma once
// The library's one UTF-8 module. Strict UTF-8 (RFC 3629, as Python's decoder): no overlong forms, no surrogates,
// nothing above U+10FFFF. Errors name the byte offset so a caller can find the bad byte in a large document.
// Header-only, so that the tokenizers, the SQuAD reader and its fuzzer, decoding and the cache writer share it.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace deformer::utf8 {

[[noreturn]] inline void fail(size_t offset, const char* why) {
  throw std::invalid_argument("invalid UTF-8 at byte offset " + std::to_string(offset) + ": " + why);
}

// Decodes the code point starting at text[pos] into cp and advances pos past it; on invalid input returns why (and
// sets pos to the offending byte), else nullptr.
inline const char* try_decode(std::string_view text, size_t& pos, char32_t& cp) {
  const size_t start = pos;
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(pos);
  int length;
  char32_t min;
  if (lead < 0x80) {
    ++pos;
    cp = lead;
    return nullptr;
  } else if (lead < 0xC2) {
    return lead < 0xC0 ? "unexpected continuation byte" : "overlong encoding";
  } else if (lead < 0xE0) {
    length = 2, cp = lead & 0x1F, min = 0x80;
  } else if (lead < 0xF0) {
    length = 3, cp = lead & 0x0F, min = 0x800;
  } else if (lead < 0xF5) {
    length = 4, cp = lead & 0x07, min = 0x10000;
  } else {
    return "byte not allowed in UTF-8";
  }
  if (text.size() - start < static_cast<size_t>(length)) return "truncated sequence";
  for (int k = 1; k < length; ++k) {
    const unsigned char c = byte(start + k);
    if ((c & 0xC0) != 0x80) {
      pos = start + k;
      return "expected a continuation byte";
    }
    cp = (cp << 6) | (c & 0x3F);
  }
  if (cp < min) return "overlong encoding";
  if (cp >= 0xD800 && cp <= 0xDFFF) return "encoded surrogate";
  if (cp > 0x10FFFF) return "code point above U+10FFFF";
  pos = start + length;
  return nullptr;
}

// The same, throwing std::invalid_argument naming the byte offset.
inline char32_t decode(std::string_view text, size_t& pos) {
  char32_t cp = 0;
  if (const char* why = try_decode(text, pos, cp)) fail(pos, why);
  return cp;
}

// The byte offset where the first invalid sequence starts, or npos for valid UTF-8.
inline size_t first_invalid(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t start = pos;
    char32_t cp;
    if (static_cast<unsigned char>(text[pos]) < 0x80) ++pos;
    else if (try_decode(text, pos, cp)) return start;
  }
  return std::string_view::npos;
}

// Code points of valid UTF-8 (continuation bytes are not counted).
inline int64_t count_code_points(std::string_view text) {
  int64_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

// The byte offset of code point `n` of valid UTF-8 (the size when it has fewer).
inline size_t byte_offset_of_code_point(std::string_view text, int64_t n) {
  size_t i = 0;
  for (int64_t seen = 0; i < text.size() && seen < n; ++seen) {
    const unsigned char c = text[i];
    i += c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  }
  return i < text.size() ? i : text.size();
}

inline void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace deformer::utf8
