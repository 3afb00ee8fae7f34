// SPDX-License-Identifier: MIT
//
// bench/trace/generate.hpp - ML-shaped buffer traces (issue 11, policy rows).
//
// Overview
//   training : one job, `steps` steps of a `layers`-deep model. Weights and
//              optimizer state are allocated once; each step runs
//                forward   l = 0..L-1 : use W[l], alloc A[l] (activation)
//                backward  l = L-1..0 : use A[l], use W[l], alloc G[l], free A[l]
//                optimizer l = 0..L-1 : use G[l], use O[l], use W[l], free G[l]
//              so activations are freed in reverse, gradients live from
//              backward to the optimizer, optimizer state (Adam's two moments
//              in one buffer, 2x the weight) is used once a step. Layer 0 is
//              an embedding `embedding_factor` times a layer's weight.
//   inference: one job serving up to `batch` requests at once with a paged KV
//              cache. Each decode step walks the layers (use W[l]); every
//              `layers_per_group` layers it uses each active request's KV
//              blocks of that group. A request grows one block per group
//              every `tokens_per_block` tokens and frees its blocks when it
//              ends (length drawn from [min_tokens, max_tokens]); a new
//              request takes its slot (prefill: its prompt's blocks at once).
//   tenants  : three jobs interleaved on one device. Owner 1 cycles through
//              weights larger than VRAM (layer-by-layer offloaded inference:
//              `cycle_bytes` of weights, each pass uses every layer once);
//              owner 2 is a small training loop, owner 3 a small inference
//              server (the shapes above, scaled). A seeded scheduler picks
//              the next job to run one kernel (a layer's events), so their
//              events interleave irregularly.
//   Buffer ids are unique per trace; owners are 1, 2, 3. Sizes are powers of
//   two (the VRAM heap's buddy blocks), so a byte-count simulator and the
//   real heap agree on what fits, up to fragmentation.
#pragma once

#include <cstdint>

#include "bench/trace/trace.hpp"

namespace xbuf::trace {

struct training_shape {
  int layers = 24;
  int steps = 6;
  std::uint64_t weight_bytes = 64 << 10;       // per layer
  std::uint64_t activation_bytes = 128 << 10;  // per layer, per step
  int embedding_factor = 4;
};
trace training(const training_shape& s, std::uint32_t owner = 1);

struct inference_shape {
  int layers = 16;
  int layers_per_group = 4;
  int batch = 6;                              // requests decoded at once
  int decode_steps = 160;
  int tokens_per_block = 16;
  int min_tokens = 48, max_tokens = 320;      // a request's length, prompt included
  int min_prompt = 16, max_prompt = 96;
  std::uint64_t weight_bytes = 128 << 10;     // per layer
  std::uint64_t kv_block_bytes = 32 << 10;    // one group's KV for tokens_per_block tokens
  std::uint32_t seed = 1;
};
trace inference(const inference_shape& s, std::uint32_t owner = 1);

struct tenants_shape {
  std::uint64_t vram_bytes = 8 << 20;  // the device the trace is made for
  double cycle_factor = 1.5;            // owner 1's weights / vram_bytes
  std::uint64_t cycle_layer_bytes = 128 << 10;
  int kernels = 6000;                   // scheduler turns in all
  training_shape small_training{.layers = 8, .steps = 1000, .weight_bytes = 32 << 10,
                                .activation_bytes = 64 << 10, .embedding_factor = 2};
  inference_shape small_inference{.layers = 8, .layers_per_group = 4, .batch = 3, .decode_steps = 100000,
                                  .tokens_per_block = 16, .min_tokens = 32, .max_tokens = 160,
                                  .min_prompt = 16, .max_prompt = 48, .weight_bytes = 32 << 10,
                                  .kv_block_bytes = 16 << 10};
  // Relative rates at which the scheduler picks each job's next kernel.
  double weight_cycle = 1, weight_training = 1, weight_inference = 1;
  std::uint32_t seed = 7;
};
trace tenants(const tenants_shape& s);

}  // namespace xbuf::trace
