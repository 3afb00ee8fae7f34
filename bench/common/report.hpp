// SPDX-License-Identifier: MIT
//
// bench/common/report.hpp - how every xbuf benchmark states a figure.
//
// A figure is measured against a limit taken in the same run: the subject and
// its limit alternate, repetition by repetition (interleaved), so a noisy
// neighbour on a shared machine slows both alike. Each repetition gives one
// ratio (subject / limit, same unit); the figure reported is the median of
// those ratios, with their min and max beside it, and the medians of the two
// raw values for reference.
//
// Output: one JSON line per figure on stdout, nothing else there, e.g.
//   {"bench":"fence_pingpong","value":1830,"unit":"ns","limit":"condvar ping-pong",
//    "limit_value":1520,"ratio":1.20,"ratio_min":1.1,"ratio_max":1.4,"reps":9,
//    "target":"<= 1.2","meets":true}
// `bench/run` collects those lines; people read its table. Progress and
// explanations go to stderr.
//
// Rules
//   - `ratio` is always subject / limit. A target says which way is better:
//     at_most(1.5) for costs (latency), at_least(0.85) for rates (bandwidth).
//   - A benchmark exits 0 when it measured, whether or not targets are met
//     (bench/run reports misses; CI runs --short only to prove every bench
//     still runs and reports). It exits 1 when it could not measure, and
//     prints {"bench":...,"skipped":"reason"} when the machine lacks
//     what it needs (no GPU), exiting 0.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace xbuf::bench {

// Which way a ratio should go, and how far.
struct target {
  double bound = 0;
  bool upper = true;  // ratio <= bound (a cost); false: ratio >= bound (a rate)
  bool met_by(double ratio) const { return upper ? ratio <= bound : ratio >= bound; }
};
inline target at_most(double bound) { return {bound, true}; }
inline target at_least(double bound) { return {bound, false}; }

// Median, min and max of some samples (empty: all zero).
struct spread {
  double median = 0, min = 0, max = 0;
};
inline spread spread_of(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  const double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  return {med, v.front(), v.back()};
}

// One figure: the repetitions of a subject and of its limit, in pairs.
struct figure {
  std::string bench;  // stable name, snake_case: bench/run and RESULTS.md key on it
  std::string unit;   // of value and limit_value ("ns", "GB/s", "bytes")
  std::string limit;  // what the limit is, in words
  target goal;
  std::vector<double> values, limit_values;

  void add(double value, double limit_value) {
    values.push_back(value);
    limit_values.push_back(limit_value);
  }
  // Per-repetition ratios, subject / limit.
  std::vector<double> ratios() const {
    std::vector<double> r;
    for (std::size_t i = 0; i < values.size() && i < limit_values.size(); ++i) {
      if (limit_values[i] != 0) r.push_back(values[i] / limit_values[i]);
    }
    return r;
  }
};

namespace detail {
inline std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}
inline std::string json_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}
}  // namespace detail

// The JSON line of `f` (see the header comment); `extra` is appended as
// further members, already formatted ("\"live\":1000000").
inline std::string json_line(const figure& f, std::string_view extra = {}) {
  using detail::json_number;
  using detail::json_string;
  const spread v = spread_of(f.values), l = spread_of(f.limit_values), r = spread_of(f.ratios());
  std::string s = "{\"bench\":" + json_string(f.bench) + ",\"value\":" + json_number(v.median) +
                  ",\"unit\":" + json_string(f.unit) + ",\"limit\":" + json_string(f.limit) +
                  ",\"limit_value\":" + json_number(l.median) + ",\"ratio\":" + json_number(r.median) +
                  ",\"ratio_min\":" + json_number(r.min) + ",\"ratio_max\":" + json_number(r.max) +
                  ",\"reps\":" + std::to_string(f.ratios().size()) + ",\"target\":" +
                  json_string((f.goal.upper ? "<= " : ">= ") + json_number(f.goal.bound)) +
                  ",\"meets\":" + (f.goal.met_by(r.median) ? "true" : "false");
  if (!extra.empty()) {
    s += ',';
    s += extra;
  }
  return s + "}";
}

// Prints the figure's JSON line on stdout and a readable line on stderr.
inline void report(const figure& f, std::string_view extra = {}) {
  const spread r = spread_of(f.ratios());
  std::printf("%s\n", json_line(f, extra).c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "  %-34s ratio %.3g (min %.3g, max %.3g) target %s %.3g: %s\n", f.bench.c_str(),
               r.median, r.min, r.max, f.goal.upper ? "<=" : ">=", f.goal.bound,
               f.goal.met_by(r.median) ? "meets" : "MISSES");
}

// A benchmark that cannot run on this machine says why, in the same format.
inline void report_skipped(std::string_view bench, std::string_view reason) {
  std::printf("{\"bench\":%s,\"skipped\":%s}\n", detail::json_string(bench).c_str(),
              detail::json_string(reason).c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "  %-34s skipped: %.*s\n", std::string(bench).c_str(), static_cast<int>(reason.size()),
               reason.data());
}

// --short on the command line: the CI smoke run (few, short repetitions).
inline bool short_mode(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--short") == 0) return true;
  }
  return false;
}

// Seconds taken by f().
template <class F>
double seconds_of(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace xbuf::bench
