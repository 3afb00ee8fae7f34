// SPDX-License-Identifier: MIT
//
// stats_json.hpp - a stats reply as compact JSON, for the C ABI
// (xbuf_stats_json) and what sits on it (the Python binding's stats()).
//
// Overview
//   One object: "schema" first (stats_schema), then the fields of
//   wire::stats_reply under their own names:
//
//     {"schema":"xbuf.stat/1","backend":"sim","tenant_view":false,"more_clients":0,"more_buffers":0,
//      "buffers_truncated":false,
//      "domains":[{"name":"vram0","where":{"name":"vram0","kind":"device","device":0,"numa_node":-1},
//                  "capacity":1048576,"used":0,"delayed_free_bytes":0,"buffers":0}],
//      "clients":[{"owner":1,"pid":42,"uid":1000,"name":"job","bytes":4096,"buffers":1}],
//      "buffers":[{"id":1,"owner":1,"name":"x","size":4096,"where":{...},
//                  "attachments":1,"pins":0,"fences":0,"generation":0,"lost":false}],
//      "counters":{"allocations":1,"frees":0,...}}
//
//   A placement is an object: its stats name ("vram0", "pinned",
//   "pageable"), its kind (core/memory_kind.hpp's to_string: "device",
//   "host_pinned", "host_pageable"), its device (-1 for host memory) and
//   its NUMA node (a pageable domain of one node: "pageable-node1"; else -1).
//   Counters are an object, name -> value: the daemon's counter names are
//   fixed and distinct (server/stats.cpp, counters_of).
//
// Rules
//   - "schema" names this shape and its version. Within one version keys
//     are only ever added; a key removed, renamed or changed in meaning or
//     unit takes the next number ("xbuf.stat/2"), so a reader checks the
//     schema and ignores keys it does not know.
//   - The output is always valid JSON (RFC 8259) in UTF-8, whatever the
//     names hold: a client names its buffers, so a name may carry quotes,
//     control bytes or bytes that are not UTF-8. '"', '\\' and every byte
//     below 0x20 are escaped; each byte that does not begin a well-formed
//     UTF-8 sequence (overlong forms, surrogates and code points past
//     U+10FFFF included) becomes U+FFFD.
//   - Integers are written in full (a u64 above 2^53 stays exact in the
//     text; whether a reader keeps it is the reader's affair).
//   - Context: pure; allocates the string (std::bad_alloc is the caller's
//     boundary's to stop).
#pragma once

#include <string>
#include <string_view>

#include "server/protocol.hpp"

namespace xbuf::client {

// The "schema" value of to_json's object (the rules above).
inline constexpr std::string_view stats_schema = "xbuf.stat/1";

std::string to_json(const wire::stats_reply& s);

// `text` as a JSON string literal, quotes included (the rules above).
std::string json_quote(std::string_view text);

}  // namespace xbuf::client
