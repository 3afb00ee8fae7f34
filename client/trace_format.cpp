// SPDX-License-Identifier: MIT
#include "client/trace_format.hpp"

#include <algorithm>
#include <cstdio>

#include "client/stats_json.hpp"

namespace xbuf::client {

namespace {

const char* kind_name(std::uint8_t kind) {
  switch (kind) {
    case 1: return "alloc";
    case 2: return "free";
    case 3: return "evict";
    case 4: return "promote";
    case 5: return "migrate";
    default: return "event";
  }
}

std::string client_label(const trace_input& in, std::uint32_t owner) {
  const auto it = in.names.find(owner);
  return (it != in.names.end() ? it->second : std::string("client")) + " (" + std::to_string(owner) + ")";
}

std::string domain_name(const trace_input& in, std::int32_t d) {
  if (d < 0 || static_cast<std::size_t>(d) >= in.domains.size()) return "domain " + std::to_string(d);
  return in.domains[static_cast<std::size_t>(d)].name;
}

std::string micros(std::uint64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llu.%03llu", static_cast<unsigned long long>(ns / 1000),
                static_cast<unsigned long long>(ns % 1000));
  return buf;
}

// Who holds how much in each domain, as the events go by.
class occupancy {
 public:
  explicit occupancy(std::size_t domains) : held_(domains) {}
  void add(std::int32_t d, const std::string& who, std::uint64_t bytes) {
    if (valid(d)) held_[static_cast<std::size_t>(d)][who] += bytes;
  }
  void remove(std::int32_t d, const std::string& who, std::uint64_t bytes) {
    if (!valid(d)) return;
    auto& v = held_[static_cast<std::size_t>(d)][who];
    v = v > bytes ? v - bytes : 0;  // the window may start after the allocation
  }
  // The counter event of domain `d` at `ts`.
  std::string counter(const trace_input& in, std::int32_t d, const std::string& ts) const {
    std::string out = "{\"ph\":\"C\",\"pid\":1,\"name\":" + json_quote(domain_name(in, d)) + ",\"ts\":" + ts +
                      ",\"args\":{";
    bool first = true;
    for (const auto& [who, bytes] : held_[static_cast<std::size_t>(d)]) {
      out += (first ? "" : ",") + json_quote(who) + ":" + std::to_string(bytes);
      first = false;
    }
    return out + "}}";
  }
  bool valid(std::int32_t d) const { return d >= 0 && static_cast<std::size_t>(d) < held_.size(); }

 private:
  std::vector<std::map<std::string, std::uint64_t>> held_;
};

}  // namespace

std::string to_chrome_trace(const trace_input& in) {
  std::string out = "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"schema\":" + json_quote(trace_schema) +
                    ",\"backend\":" + json_quote(in.backend) + ",\"dropped\":" + std::to_string(in.dropped) +
                    ",\"domains\":[";
  for (std::size_t d = 0; d < in.domains.size(); ++d) {
    out += (d ? "," : "") + std::string("{\"name\":") + json_quote(in.domains[d].name) +
           ",\"capacity\":" + std::to_string(in.domains[d].capacity) + "}";
  }
  out += "]},\"traceEvents\":[{\"ph\":\"M\",\"pid\":1,\"name\":\"process_name\",\"args\":{\"name\":\"xbufd\"}}";
  for (std::size_t d = 0; d < in.domains.size(); ++d) {
    out += ",{\"ph\":\"M\",\"pid\":1,\"tid\":" + std::to_string(d + 1) +
           ",\"name\":\"thread_name\",\"args\":{\"name\":" + json_quote(in.domains[d].name) + "}}";
  }
  occupancy held(in.domains.size());
  for (const auto& e : in.events) {
    const std::string ts = micros(e.time_ns);
    const std::string who = client_label(in, e.owner);
    const bool move = e.kind >= 3;
    const std::int32_t at = e.kind == 1 ? e.to : e.from;
    std::string name = kind_name(e.kind);
    if (move) name += " " + domain_name(in, e.from) + " -> " + domain_name(in, e.to);
    out += ",{\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":" + std::to_string(at + 1) + ",\"ts\":" + ts +
           ",\"name\":" + json_quote(name) + ",\"cat\":\"" + (move ? "move" : kind_name(e.kind)) +
           "\",\"args\":{\"buffer\":" + std::to_string(e.buffer) + ",\"owner\":" + std::to_string(e.owner) +
           ",\"client\":" + json_quote(who) + ",\"bytes\":" + std::to_string(e.bytes) +
           ",\"from\":" + std::to_string(e.from) + ",\"to\":" + std::to_string(e.to) +
           ",\"notified\":" + std::to_string(e.notified) + "}}";
    if (e.kind != 1) held.remove(e.from, who, e.bytes);
    if (e.kind != 2) held.add(e.to, who, e.bytes);
    for (const std::int32_t d : {e.from, e.to}) {
      if (held.valid(d)) out += "," + held.counter(in, d, ts);
    }
  }
  return out + "]}";
}

std::string to_html(const trace_input& in) {
  std::string json = to_chrome_trace(in);
  // Inside <script> the only sequence that ends it early is "</".
  for (std::size_t i = 0; (i = json.find("</", i)) != std::string::npos; i += 3) json.replace(i, 2, "<\\/");
  return R"(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xbuf memory timeline</title>
<style>
body { font: 14px sans-serif; margin: 16px; color: #222; }
h2 { font-size: 15px; margin: 18px 0 4px; }
svg { border: 1px solid #ccc; background: #fafafa; }
.move { stroke: #c00; stroke-width: 1; stroke-dasharray: 3 2; }
.axis { font: 11px sans-serif; fill: #555; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
</style></head>
<body>
<h1>xbuf memory timeline</h1>
<p id="meta"></p>
<div id="plots"></div>
<script id="trace" type="application/json">)" +
         json + R"(</script>
<script>
(function () {
  const t = JSON.parse(document.getElementById('trace').textContent);
  const domains = t.otherData.domains;
  const svgNS = 'http://www.w3.org/2000/svg';
  const colors = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7'];
  const counters = t.traceEvents.filter(e => e.ph === 'C');
  const moves = t.traceEvents.filter(e => e.ph === 'i' && e.cat === 'move');
  const t0 = Math.min(...t.traceEvents.filter(e => e.ts !== undefined).map(e => e.ts), 0);
  const t1 = Math.max(...t.traceEvents.filter(e => e.ts !== undefined).map(e => e.ts), t0 + 1);
  const clients = [...new Set(counters.flatMap(c => Object.keys(c.args)))].sort();
  const color = who => colors[clients.indexOf(who) % colors.length];
  document.getElementById('meta').textContent =
    'backend ' + t.otherData.backend + ', ' + t.traceEvents.filter(e => e.ph === 'i').length + ' events over ' +
    ((t1 - t0) / 1000).toFixed(1) + ' ms' + (t.otherData.dropped ? ', ' + t.otherData.dropped + ' dropped' : '');
  const W = 900, H = 170, L = 60, R = 10, T = 8, B = 22;
  const el = (name, attrs) => {
    const e = document.createElementNS(svgNS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  };
  const plots = document.getElementById('plots');
  domains.forEach((d, index) => {
    const h = document.createElement('h2');
    h.textContent = d.name + ' (' + (d.capacity / 1048576).toFixed(1) + ' MiB)';
    plots.appendChild(h);
    const svg = el('svg', {width: W, height: H, 'data-domain': d.name});
    const x = ts => L + (W - L - R) * (ts - t0) / (t1 - t0);
    const cap = Math.max(d.capacity, 1);
    const y = bytes => H - B - (H - B - T) * Math.min(bytes, cap) / cap;
    const series = counters.filter(c => c.name === d.name);
    // One stacked band per client: step function of its bytes over time.
    let below = series.map(() => 0);
    clients.forEach(who => {
      const tops = series.map((c, i) => below[i] + (c.args[who] || 0));
      if (!tops.some((v, i) => v > below[i])) { below = tops; return; }
      let path = 'M' + x(t0) + ',' + y(0);
      let prevTop = 0, prevBelow = 0;
      const upper = [], lower = [];
      series.forEach((c, i) => {
        upper.push([x(c.ts), y(prevTop)], [x(c.ts), y(tops[i])]);
        lower.push([x(c.ts), y(prevBelow)], [x(c.ts), y(below[i])]);
        prevTop = tops[i]; prevBelow = below[i];
      });
      upper.push([x(t1), y(prevTop)]);
      lower.push([x(t1), y(prevBelow)]);
      path = 'M' + upper.map(p => p.join(',')).join(' L') + ' L' + lower.reverse().map(p => p.join(',')).join(' L') + ' Z';
      svg.appendChild(el('path', {d: path, fill: color(who), 'fill-opacity': 0.75, 'data-client': who}));
      below = tops;
    });
    moves.filter(m => m.args.from === index || m.args.to === index).forEach(m => {
      svg.appendChild(el('line', {class: 'move', x1: x(m.ts), x2: x(m.ts), y1: T, y2: H - B, 'data-buffer': m.args.buffer}));
    });
    const axis = el('text', {x: 4, y: T + 10, class: 'axis'});
    axis.textContent = (d.capacity / 1048576).toFixed(0) + ' MiB';
    svg.appendChild(axis);
    const end = el('text', {x: W - R - 60, y: H - 6, class: 'axis'});
    end.textContent = ((t1 - t0) / 1000).toFixed(1) + ' ms';
    svg.appendChild(end);
    plots.appendChild(svg);
  });
  const legend = document.createElement('p');
  legend.className = 'legend';
  clients.forEach(who => {
    const s = document.createElement('span');
    const i = document.createElement('i');
    i.style.background = color(who);
    s.appendChild(i);
    s.appendChild(document.createTextNode(who));
    legend.appendChild(s);
  });
  plots.appendChild(legend);
  document.body.setAttribute('data-rendered', domains.length + ' domains');
})();
</script>
</body></html>
)";
}

}  // namespace xbuf::client
