// SPDX-License-Identifier: MIT
//
// metrics_text.hpp - a stats reply as Prometheus text (exposition format
// 0.0.4), what `GET /metrics` returns (metrics_http.hpp).
//
// Overview
//   render_metrics() turns the operator's stats reply (collect_stats(mm,
//   clients)) and the backend's device list into families in the
//   exporters' style: `xbuf_` prefix, base units in the name (`_bytes`),
//   counters ending in `_total`. Each family is written once: its `# HELP`,
//   its `# TYPE`, then its samples, one per domain or device.
//
//     xbuf_backend_info{backend}                      gauge, always 1
//     xbuf_device_info{device,index,name,vendor}      gauge, always 1
//     xbuf_domain_{capacity,used,peak_used,delayed_free,exported,largest_free_block}_bytes{domain,kind,device}
//     xbuf_domain_buffers{domain,kind,device}         gauges
//     xbuf_clients, xbuf_buffers                      gauges (listed + left out)
//     xbuf_<counter>_total                            the reply's counters
//     xbuf_pinned_bytes, xbuf_pinned_limit_bytes      gauges
//
//   `kind` is vram, pinned or pageable; `device` is the PCI address of a
//   VRAM domain's GPU ("" for host memory and for a GPU whose address is
//   unknown, as the sim backend's are without --topology).
//
//   What a scrape shows is what every tenant may see (DESIGN.md "A client
//   sees only its own"): per-domain totals, counters and how many clients
//   and buffers there are. No series per client or per buffer: the
//   endpoint has no authentication, so anyone on the machine could read
//   other tenants' names, pids and sizes, and client ids are never reused,
//   so such series would grow without bound over the daemon's life.
//
//   A counter the reply carries and this file does not describe (a newer
//   stats.cpp's) is still exported, as `xbuf_<name>` of type untyped,
//   since nothing here knows whether it is a counter or a gauge.
//
// Rules
//   - Pure: no I/O, no locks, no Asio; unit-tested without a daemon.
//     Context: allocates; never blocks.
//   - Label values are escaped as the format requires (backslash, double
//     quote, newline); names made from reply strings keep only
//     [a-zA-Z0-9_].
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "backends/backend.hpp"
#include "server/protocol.hpp"

namespace xbuf::server {

// The Content-Type of what render_metrics() returns.
inline constexpr std::string_view metrics_content_type = "text/plain; version=0.0.4; charset=utf-8";

// `v` as a label value goes between the quotes: \ -> \\, " -> \", newline
// -> \n; every other byte as it is (the format is UTF-8 text).
std::string escape_label_value(std::string_view v);

// The exposition text: families as listed above, each line ending in '\n'.
// `devices` is backend::devices() (the index is the device number in a
// placement). Never fails: a domain whose device is out of range gets
// device="".
std::string render_metrics(const wire::stats_reply& s, std::span<const device_info> devices);

}  // namespace xbuf::server
