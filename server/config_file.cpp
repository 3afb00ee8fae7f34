// SPDX-License-Identifier: MIT
#include "server/config_file.hpp"

#include <sys/stat.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <exception>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/errno_text.hpp"

namespace xbuf::server {
namespace {

std::string_view type_name(const toml::node& v) {
  if (v.is_string()) return "a string";
  if (v.is_integer()) return "an integer";
  if (v.is_floating_point()) return "a float";
  if (v.is_boolean()) return "a boolean";
  if (v.is_table()) return "a table";
  if (v.is_array()) return "an array";
  return "a date or time";
}

std::string_view expected(config_kind kind) {
  switch (kind) {
    case config_kind::text:
      return "a string";
    case config_kind::number:
      return "an integer or a string (e.g. 64, or \"512M\" for a size)";
    case config_kind::seconds:
      return "a number of seconds (e.g. 10 or 1.5)";
    case config_kind::mode:
      return "an octal mode written as a string (e.g. \"0660\")";
    case config_kind::boolean:
      return "true or false";
  }
  return "?";
}

// Shortest fixed-point text that reads back as `d` ("1.5", "0.0001"), for the
// seconds parser.
std::string float_text(double d) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::fixed);
  if (r.ec != std::errc()) return "nan";  // too long to be a number of seconds anyway
  return std::string(buf, r.ptr);
}

// The flag text of `v` for a key of `kind`, or nothing when its TOML type
// does not fit. A boolean true is the bare switch ("").
std::optional<std::string> value_text(const toml::node& v, config_kind kind) {
  switch (kind) {
    case config_kind::text:
    case config_kind::mode:
      if (const auto* s = v.as_string()) return s->get();
      return std::nullopt;
    case config_kind::seconds:
      if (const auto* f = v.as_floating_point()) return float_text(f->get());
      [[fallthrough]];
    case config_kind::number:
      if (const auto* i = v.as_integer()) return std::to_string(i->get());
      if (const auto* s = v.as_string()) return s->get();
      return std::nullopt;
    case config_kind::boolean:
      if (v.is_boolean()) return std::string();
      return std::nullopt;
  }
  return std::nullopt;
}

const config_key* find_key(std::span<const config_key> keys, std::string_view name) {
  for (const auto& k : keys) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

std::string where(const std::string& path, std::uint32_t line) {
  return path + ":" + std::to_string(line) + ": ";
}

// The whole file, or the error that says why it cannot be had.
result<std::string> slurp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int e = errno;
    if (e == ENOENT) return fail(errc::not_found, path + ": no such file");
    return fail(errc::io_error, path + ": " + errno_text(e));
  }
  if (!S_ISREG(st.st_mode)) return fail(errc::io_error, path + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(errc::io_error, path + ": cannot be opened for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return fail(errc::io_error, path + ": read failed");
  return ss.str();
}

result<std::vector<config_entry>> read_table(const std::string& path, const toml::table& table,
                                             std::span<const config_key> keys) {
  std::vector<config_entry> entries;
  for (const auto& [k, v] : table) {
    const std::string name(k.str());
    const auto line = static_cast<std::uint32_t>(k.source().begin.line);
    const config_key* known = find_key(keys, name);
    if (known == nullptr) {
      std::string why = name + ": unknown key";
      std::string hyphens = name;
      std::replace(hyphens.begin(), hyphens.end(), '_', '-');
      if (hyphens != name && find_key(keys, hyphens) != nullptr) {
        why += " (did you mean " + hyphens + "? keys are spelled like the flags)";
      } else if (v.is_table()) {
        why += " (the file is one flat table: no [sections])";
      }
      return fail(errc::invalid_argument, where(path, line) + why);
    }
    auto text = value_text(v, known->kind);
    if (!text) {
      return fail(errc::invalid_argument, where(path, line) + name + ": " +
                                              std::string(expected(known->kind)) +
                                              " is expected, not " + std::string(type_name(v)));
    }
    // false is the default: the switch is just not given.
    if (known->kind == config_kind::boolean && !v.value_or(false)) continue;
    entries.push_back(config_entry{name, std::move(*text), line});
  }
  std::stable_sort(entries.begin(), entries.end(),
                   [](const config_entry& a, const config_entry& b) { return a.line < b.line; });
  return entries;
}

}  // namespace

result<std::vector<config_entry>> read_config_file(const std::string& path,
                                                   std::span<const config_key> keys) {
  auto text = slurp(path);
  if (!text) return std::move(text).err();
  try {
    const toml::table table = toml::parse(*text, path);
    return read_table(path, table, keys);
  } catch (const toml::parse_error& e) {
    return fail(errc::parse_error, where(path, static_cast<std::uint32_t>(e.source().begin.line)) +
                                       std::string(e.description()));
  } catch (const std::exception& e) {
    return fail(errc::io_error, path + ": " + e.what());
  }
}

}  // namespace xbuf::server
