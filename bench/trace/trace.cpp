// SPDX-License-Identifier: MIT
#include "bench/trace/trace.hpp"

#include <algorithm>
#include <bit>
#include <istream>
#include <ostream>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

namespace xbuf::trace {

std::uint64_t block_bytes(std::uint64_t size) { return std::bit_ceil(std::max<std::uint64_t>(size, 4096)); }

std::string check(trace& t) {
  std::unordered_map<std::uint64_t, std::uint64_t> live;  // buffer -> size
  std::unordered_set<std::uint64_t> dead;
  for (std::size_t i = 0; i < t.events.size(); ++i) {
    auto& e = t.events[i];
    const std::string at = "event " + std::to_string(i) + " (buffer " + std::to_string(e.buffer) + "): ";
    switch (e.kind) {
      case op::alloc:
        if (e.size == 0) return at + "alloc of 0 bytes";
        if (live.count(e.buffer) || dead.count(e.buffer)) return at + "allocated twice";
        live.emplace(e.buffer, e.size);
        break;
      case op::use:
      case op::free: {
        auto it = live.find(e.buffer);
        if (it == live.end()) return at + (dead.count(e.buffer) ? "used after its free" : "never allocated");
        e.size = it->second;
        if (e.kind == op::free) {
          live.erase(it);
          dead.insert(e.buffer);
        }
        break;
      }
    }
  }
  return {};
}

std::uint64_t peak_bytes(const trace& t) {
  std::uint64_t live = 0, peak = 0;
  for (const auto& e : t.events) {
    if (e.kind == op::alloc) live += block_bytes(e.size);
    if (e.kind == op::free) live -= block_bytes(e.size);
    peak = std::max(peak, live);
  }
  return peak;
}

trace_summary summarize(const trace& t) {
  trace_summary s;
  s.events = t.events.size();
  std::unordered_set<std::uint32_t> owners;
  for (const auto& e : t.events) {
    if (e.kind == op::free) continue;
    ++s.uses;
    s.used_bytes += e.size;
    if (e.kind == op::alloc) ++s.buffers;
    owners.insert(e.owner);
  }
  s.owners = static_cast<std::uint32_t>(owners.size());
  s.peak = peak_bytes(t);
  return s;
}

void write_text(std::ostream& out, const trace& t) {
  out << "# xbuf trace: " << t.name << "\n";
  for (const auto& e : t.events) {
    switch (e.kind) {
      case op::alloc: out << "a " << e.owner << ' ' << e.buffer << ' ' << e.size << '\n'; break;
      case op::use: out << "u " << e.owner << ' ' << e.buffer << '\n'; break;
      case op::free: out << "f " << e.owner << ' ' << e.buffer << '\n'; break;
    }
  }
}

trace read_text(std::istream& in, std::string* error) {
  trace t;
  std::string line;
  std::size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    if (line[0] == '#') {
      if (t.name.empty() && line.rfind("# xbuf trace: ", 0) == 0) t.name = line.substr(14);
      continue;
    }
    std::istringstream ls(line);
    char k = 0;
    event e;
    ls >> k >> e.owner >> e.buffer;
    if (k == 'a') ls >> e.size;
    if (!ls || (k != 'a' && k != 'u' && k != 'f')) {
      *error = "line " + std::to_string(n) + ": not an event: " + line;
      return {};
    }
    e.kind = k == 'a' ? op::alloc : k == 'u' ? op::use : op::free;
    t.events.push_back(e);
  }
  if (auto bad = check(t); !bad.empty()) {
    *error = bad;
    return {};
  }
  return t;
}

}  // namespace xbuf::trace
