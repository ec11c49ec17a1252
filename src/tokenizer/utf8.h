#pragma once
// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. Errors name the byte
// offset so a caller can find the bad byte in a large document.

#include <stdexcept>
#include <string>
#include <string_view>

namespace deformer::utf8 {

[[noreturn]] inline void fail(size_t offset, const char* why) {
  throw std::invalid_argument("invalid UTF-8 at byte offset " + std::to_string(offset) + ": " + why);
}

// Decodes the code point starting at text[pos] (a non-ASCII lead byte) and advances pos past it.
inline char32_t decode(std::string_view text, size_t& pos) {
  const size_t start = pos;
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(pos);
  int length;
  char32_t cp;
  char32_t min;
  if (lead < 0x80) {
    ++pos;
    return lead;
  } else if (lead < 0xC2) {
    fail(start, lead < 0xC0 ? "unexpected continuation byte" : "overlong encoding");
  } else if (lead < 0xE0) {
    length = 2, cp = lead & 0x1F, min = 0x80;
  } else if (lead < 0xF0) {
    length = 3, cp = lead & 0x0F, min = 0x800;
  } else if (lead < 0xF5) {
    length = 4, cp = lead & 0x07, min = 0x10000;
  } else {
    fail(start, "byte not allowed in UTF-8");
  }
  if (text.size() - start < static_cast<size_t>(length)) fail(start, "truncated sequence");
  for (int k = 1; k < length; ++k) {
    const unsigned char c = byte(start + k);
    if ((c & 0xC0) != 0x80) fail(start + k, "expected a continuation byte");
    cp = (cp << 6) | (c & 0x3F);
  }
  if (cp < min) fail(start, "overlong encoding");
  if (cp >= 0xD800 && cp <= 0xDFFF) fail(start, "encoded surrogate");
  if (cp > 0x10FFFF) fail(start, "code point above U+10FFFF");
  pos = start + length;
  return cp;
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
