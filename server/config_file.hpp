// SPDX-License-Identifier: MIT
//
// config_file.hpp - xbufd's TOML config file (/etc/xbuf/xbufd.toml or
// --config FILE), read into the same (flag, value text) pairs the command
// line gives, so one parser decides what a value means in both places.
//
// Overview
//   A config file is a flat TOML table: one key per xbufd flag, spelled as
//   the flag without its two dashes ("max-connections = 64"; hyphens only:
//   "max_connections" is an unknown key, reported with the right spelling).
//   This file checks only the shape of each value (its TOML type); the text
//   it hands back goes through xbufd's flag parsers, which check the value
//   itself and, on a bad one, name the key, the file and the line that
//   config_entry carries.
//
//   TOML type accepted per kind, and the text it becomes:
//     text     string                      as written ("/run/xbuf/xbuf.sock")
//     number   integer or string           decimal digits, or the string
//                                          ("512M": sizes keep their suffix)
//     seconds  integer, float or string    "10", "1.5" (shortest form), or
//                                          the string
//     mode     string only                 "0660" (a TOML integer would be
//                                          read as decimal or 0o octal: too
//                                          easy to get wrong)
//     boolean  true or false               true: the switch, with value "";
//                                          false: no entry (the default)
//
// Rules
//   - Pure apart from reading the one file; no global state, no exceptions
//     across the API (toml++'s stop here and become an error).
//   - Every error message starts with "FILE:LINE: " and, where a key is at
//     fault, names it: "FILE:3: max_connections: unknown key (did you mean
//     max-connections?)".
//   - Entries come back in the file's order (by line), so applying them in
//     order and then the command line makes the command line win.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace xbuf::server {

// The TOML types a key takes (see the table in the overview).
enum class config_kind { text, number, seconds, mode, boolean };

// One key the file may set. `name` is the flag without "--".
struct config_key {
  std::string_view name;
  config_kind kind;
};

// One setting from the file: `key` as the file spells it (a known name),
// `value` the text the flag would have been given ("" for a boolean switch
// set to true), `line` where the key is (1-based).
struct config_entry {
  std::string key;
  std::string value;
  std::uint32_t line = 0;
};

// The settings of the TOML file at `path`, checked against `keys`.
// Errors:
//   not_found      the file does not exist (a caller reading a default path
//                  may go on without it); message "PATH: no such file"
//   io_error       it exists but cannot be read (a directory, no permission)
//   parse_error    not TOML: "PATH:LINE: <toml++'s description>"
//   invalid_argument  an unknown key, a nested table, or a value of the wrong
//                  TOML type: "PATH:LINE: KEY: <why>"
// Context: reads one file; allocates; never throws.
result<std::vector<config_entry>> read_config_file(const std::string& path,
                                                   std::span<const config_key> keys);

}  // namespace xbuf::server
