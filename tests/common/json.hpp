// SPDX-License-Identifier: MIT
//
// json.hpp - a strict JSON reader for tests (RFC 8259), so a test can say
// both "this is valid JSON" and "field x of it is y" without a library.
//
// Overview
//   parse(text) returns the document or nullopt with the first offending
//   offset in `where`. Strict: one value with nothing after it but
//   whitespace; strings must be UTF-8 with no raw control bytes and only
//   the escapes JSON defines (a \u surrogate must come in a pair);
//   numbers as the grammar has them (no leading zeros, no "+", no NaN).
//   Strings come back decoded (UTF-8); numbers as their text and a double.
//
// Rules
//   - Test code only: recursion is bounded (max_depth) but speed is not a
//     goal; duplicate object keys are kept in order (find() takes the first).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace xbuf::test::json {

struct value;
using array = std::vector<value>;
using object = std::vector<std::pair<std::string, value>>;
struct number {
  std::string text;
  double as_double = 0;
};

struct value {
  std::variant<std::nullptr_t, bool, number, std::string, std::shared_ptr<array>, std::shared_ptr<object>> v;

  bool is_null() const { return v.index() == 0; }
  const bool* as_bool() const { return std::get_if<bool>(&v); }
  const number* as_number() const { return std::get_if<number>(&v); }
  const std::string* as_string() const { return std::get_if<std::string>(&v); }
  const array* as_array() const {
    auto p = std::get_if<std::shared_ptr<array>>(&v);
    return p != nullptr ? p->get() : nullptr;
  }
  const object* as_object() const {
    auto p = std::get_if<std::shared_ptr<object>>(&v);
    return p != nullptr ? p->get() : nullptr;
  }
  // The member `key` of an object; nullptr when this is no object or has none.
  const value* find(std::string_view key) const {
    const object* o = as_object();
    if (o == nullptr) return nullptr;
    for (const auto& [k, val] : *o) {
      if (k == key) return &val;
    }
    return nullptr;
  }
  // Element i of an array; nullptr past its end or when this is no array.
  const value* at(std::size_t i) const {
    const array* a = as_array();
    return a != nullptr && i < a->size() ? &(*a)[i] : nullptr;
  }
};

namespace detail {

constexpr int max_depth = 64;

class reader {
 public:
  explicit reader(std::string_view s) : s_(s) {}

  std::optional<value> document() {
    auto v = parse_value(0);
    if (!v) return std::nullopt;
    skip_ws();
    if (i_ != s_.size()) return bad();
    return v;
  }
  std::size_t where() const { return i_; }

 private:
  std::nullopt_t bad() { return std::nullopt; }
  bool more() const { return i_ < s_.size(); }
  char peek() const { return s_[i_]; }
  void skip_ws() {
    while (more() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++i_;
  }
  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  std::optional<value> parse_value(int depth) {
    if (depth > max_depth) return bad();
    skip_ws();
    if (!more()) return bad();
    const char c = peek();
    if (c == '{') return parse_object(depth);
    if (c == '[') return parse_array(depth);
    if (c == '"') {
      auto s = parse_string();
      if (!s) return bad();
      return value{std::move(*s)};
    }
    if (literal("true")) return value{true};
    if (literal("false")) return value{false};
    if (literal("null")) return value{nullptr};
    return parse_number();
  }

  std::optional<value> parse_object(int depth) {
    ++i_;  // {
    auto o = std::make_shared<object>();
    skip_ws();
    if (more() && peek() == '}') {
      ++i_;
      return value{o};
    }
    for (;;) {
      skip_ws();
      if (!more() || peek() != '"') return bad();
      auto k = parse_string();
      if (!k) return bad();
      skip_ws();
      if (!more() || peek() != ':') return bad();
      ++i_;
      auto v = parse_value(depth + 1);
      if (!v) return bad();
      o->emplace_back(std::move(*k), std::move(*v));
      skip_ws();
      if (!more()) return bad();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() == '}') {
        ++i_;
        return value{o};
      }
      return bad();
    }
  }

  std::optional<value> parse_array(int depth) {
    ++i_;  // [
    auto a = std::make_shared<array>();
    skip_ws();
    if (more() && peek() == ']') {
      ++i_;
      return value{a};
    }
    for (;;) {
      auto v = parse_value(depth + 1);
      if (!v) return bad();
      a->push_back(std::move(*v));
      skip_ws();
      if (!more()) return bad();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() == ']') {
        ++i_;
        return value{a};
      }
      return bad();
    }
  }

  std::optional<value> parse_number() {
    const std::size_t start = i_;
    const auto digits = [&] {
      const std::size_t d = i_;
      while (more() && peek() >= '0' && peek() <= '9') ++i_;
      return i_ - d;
    };
    if (more() && peek() == '-') ++i_;
    if (more() && peek() == '0') {
      ++i_;
    } else if (digits() == 0) {
      return bad();
    }
    if (more() && peek() == '.') {
      ++i_;
      if (digits() == 0) return bad();
    }
    if (more() && (peek() == 'e' || peek() == 'E')) {
      ++i_;
      if (more() && (peek() == '+' || peek() == '-')) ++i_;
      if (digits() == 0) return bad();
    }
    number n{.text = std::string(s_.substr(start, i_ - start))};
    n.as_double = std::strtod(n.text.c_str(), nullptr);  // no throw: inf past the range
    return value{std::move(n)};
  }

  std::optional<unsigned> hex4() {
    if (s_.size() - i_ < 4) return std::nullopt;
    unsigned u = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s_[i_++];
      u <<= 4;
      if (h >= '0' && h <= '9') u |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f') u |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') u |= static_cast<unsigned>(h - 'A' + 10);
      else return std::nullopt;
    }
    return u;
  }

  static void put_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // A raw (unescaped) UTF-8 sequence at i_: its length, 0 if ill-formed.
  std::size_t utf8_at() const {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s_[i_ + k]); };
    const unsigned char b0 = b(0);
    std::size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b0 < 0x80) return 1;
    if (b0 >= 0xC2 && b0 <= 0xDF) n = 2;
    else if (b0 >= 0xE0 && b0 <= 0xEF) n = 3, lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    else if (b0 >= 0xF0 && b0 <= 0xF4) n = 4, lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    if (s_.size() - i_ < n || b(1) < lo || b(1) > hi) return 0;
    for (std::size_t k = 2; k < n; ++k) {
      if (b(k) < 0x80 || b(k) > 0xBF) return 0;
    }
    return n;
  }

  std::optional<std::string> parse_string() {
    ++i_;  // "
    std::string out;
    while (more()) {
      const auto c = static_cast<unsigned char>(peek());
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) return std::nullopt;
      if (c != '\\') {
        const std::size_t n = utf8_at();
        if (n == 0) return std::nullopt;
        out.append(s_.substr(i_, n));
        i_ += n;
        continue;
      }
      ++i_;
      if (!more()) return std::nullopt;
      const char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          auto u = hex4();
          if (!u) return std::nullopt;
          std::uint32_t cp = *u;
          if (cp >= 0xDC00 && cp <= 0xDFFF) return std::nullopt;  // a lone low surrogate
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!literal("\\u")) return std::nullopt;
            auto lo = hex4();
            if (!lo || *lo < 0xDC00 || *lo > 0xDFFF) return std::nullopt;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (*lo - 0xDC00);
          }
          put_utf8(out, cp);
          break;
        }
        default: return std::nullopt;
      }
    }
    return std::nullopt;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

}  // namespace detail

// The document, or nullopt (then *where, if given, is the offset it
// stopped at).
inline std::optional<value> parse(std::string_view text, std::size_t* where = nullptr) {
  detail::reader r(text);
  auto v = r.document();
  if (!v && where != nullptr) *where = r.where();
  return v;
}

}  // namespace xbuf::test::json
