// SPDX-License-Identifier: MIT
//
// generate.cpp - the jobs of generate.hpp as kernel streams: each job emits
// one kernel (a few events) at a time, so tenants() can interleave them and
// training() / inference() simply run one job to its end.
#include "bench/trace/generate.hpp"

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

namespace xbuf::trace {

namespace {

struct ids {
  std::uint64_t next = 1;
  std::uint64_t take() { return next++; }
};

class job {
 public:
  virtual ~job() = default;
  // Appends the job's next kernel to `out`; false when the job is done.
  virtual bool next_kernel(std::vector<event>& out) = 0;
};

void alloc(std::vector<event>& out, std::uint32_t owner, std::uint64_t id, std::uint64_t size) {
  out.push_back({op::alloc, owner, id, size});
}
void use(std::vector<event>& out, std::uint32_t owner, std::uint64_t id) {
  out.push_back({op::use, owner, id, 0});
}
void release(std::vector<event>& out, std::uint32_t owner, std::uint64_t id) {
  out.push_back({op::free, owner, id, 0});
}

class training_job final : public job {
 public:
  training_job(const training_shape& s, std::uint32_t owner, ids& id) : s_(s), owner_(owner), id_(id) {
    const auto n = static_cast<std::size_t>(s.layers);
    w_.resize(n);
    o_.resize(n);
    a_.resize(n);
    g_.resize(n);
  }
  bool next_kernel(std::vector<event>& out) override {
    const int L = s_.layers;
    if (step_ >= s_.steps) return false;
    const auto l = static_cast<std::size_t>(layer_);
    switch (phase_) {
      case phase::init: {
        const std::uint64_t w = s_.weight_bytes * (layer_ == 0 ? static_cast<std::uint64_t>(s_.embedding_factor) : 1);
        w_[l] = id_.take();
        o_[l] = id_.take();
        alloc(out, owner_, w_[l], w);
        alloc(out, owner_, o_[l], 2 * w);
        if (++layer_ == L) enter(phase::forward, 0);
        break;
      }
      case phase::forward:
        use(out, owner_, w_[l]);
        a_[l] = id_.take();
        alloc(out, owner_, a_[l], s_.activation_bytes);
        if (++layer_ == L) enter(phase::backward, L - 1);
        break;
      case phase::backward:
        use(out, owner_, a_[l]);
        use(out, owner_, w_[l]);
        g_[l] = id_.take();
        alloc(out, owner_, g_[l], weight_of(layer_));
        release(out, owner_, a_[l]);
        if (layer_-- == 0) enter(phase::optimizer, 0);
        break;
      case phase::optimizer:
        use(out, owner_, g_[l]);
        use(out, owner_, o_[l]);
        use(out, owner_, w_[l]);
        release(out, owner_, g_[l]);
        if (++layer_ == L) {
          ++step_;
          enter(phase::forward, 0);
        }
        break;
    }
    return true;
  }

 private:
  enum class phase { init, forward, backward, optimizer };
  void enter(phase p, int layer) {
    phase_ = p;
    layer_ = layer;
  }
  std::uint64_t weight_of(int layer) const {
    return s_.weight_bytes * (layer == 0 ? static_cast<std::uint64_t>(s_.embedding_factor) : 1);
  }
  training_shape s_;
  std::uint32_t owner_;
  ids& id_;
  phase phase_ = phase::init;
  int layer_ = 0, step_ = 0;
  std::vector<std::uint64_t> w_, o_, a_, g_;
};

class inference_job final : public job {
 public:
  inference_job(const inference_shape& s, std::uint32_t owner, ids& id)
      : s_(s), owner_(owner), id_(id), rng_(s.seed), slots_(static_cast<std::size_t>(s.batch)) {
    w_.resize(static_cast<std::size_t>(s.layers));
  }
  bool next_kernel(std::vector<event>& out) override {
    if (layer_ < 0) {  // loading the weights, one layer a kernel
      const auto l = w_loaded_;
      w_[static_cast<std::size_t>(l)] = id_.take();
      alloc(out, owner_, w_[static_cast<std::size_t>(l)], s_.weight_bytes);
      if (++w_loaded_ == s_.layers) layer_ = 0;
      return true;
    }
    if (step_ >= s_.decode_steps) return false;
    if (layer_ == 0) grow(out);
    const auto l = static_cast<std::size_t>(layer_);
    use(out, owner_, w_[l]);
    if (layer_ % s_.layers_per_group == 0) {
      const auto g = static_cast<std::size_t>(layer_ / s_.layers_per_group);
      for (auto& r : slots_) {
        for (auto b : r.blocks[g]) use(out, owner_, b);
      }
    }
    if (++layer_ == s_.layers) {
      layer_ = 0;
      ++step_;
    }
    return true;
  }

 private:
  struct request {
    int tokens = 0, length = 0;
    std::vector<std::vector<std::uint64_t>> blocks;  // per group
  };
  int groups() const { return (s_.layers + s_.layers_per_group - 1) / s_.layers_per_group; }
  int draw(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  void add_block(std::vector<event>& out, request& r) {
    for (auto& g : r.blocks) {
      g.push_back(id_.take());
      alloc(out, owner_, g.back(), s_.kv_block_bytes);
    }
  }
  // One token more for every request; ended ones free their KV and a new
  // request takes the slot (its prompt's blocks at once).
  void grow(std::vector<event>& out) {
    for (auto& r : slots_) {
      if (r.length != 0 && r.tokens >= r.length) {
        for (auto& g : r.blocks) {
          for (auto b : g) release(out, owner_, b);
        }
        r = request{};
      }
      if (r.length == 0) {
        r.blocks.resize(static_cast<std::size_t>(groups()));
        r.length = draw(s_.min_tokens, s_.max_tokens);
        r.tokens = std::min(draw(s_.min_prompt, s_.max_prompt), r.length - 1);
        for (int t = 0; t < r.tokens; t += s_.tokens_per_block) add_block(out, r);
      }
      if (r.tokens % s_.tokens_per_block == 0) add_block(out, r);
      ++r.tokens;
    }
  }
  inference_shape s_;
  std::uint32_t owner_;
  ids& id_;
  std::mt19937 rng_;
  std::vector<request> slots_;
  std::vector<std::uint64_t> w_;
  int w_loaded_ = 0, layer_ = -1, step_ = 0;
};

class cycle_job final : public job {
 public:
  cycle_job(std::uint64_t total, std::uint64_t layer_bytes, std::uint32_t owner, ids& id)
      : layer_bytes_(layer_bytes), owner_(owner), id_(id),
        layers_(static_cast<std::size_t>(std::max<std::uint64_t>(2, total / layer_bytes))) {}
  bool next_kernel(std::vector<event>& out) override {
    if (w_.size() < layers_) {
      w_.push_back(id_.take());
      alloc(out, owner_, w_.back(), layer_bytes_);
      return true;
    }
    use(out, owner_, w_[next_]);
    next_ = (next_ + 1) % layers_;
    return true;
  }

 private:
  std::uint64_t layer_bytes_;
  std::uint32_t owner_;
  ids& id_;
  std::size_t layers_;
  std::vector<std::uint64_t> w_;
  std::size_t next_ = 0;
};

trace run_alone(job& j, std::string name) {
  trace t;
  t.name = std::move(name);
  while (j.next_kernel(t.events)) {
  }
  return t;
}

}  // namespace

trace training(const training_shape& s, std::uint32_t owner) {
  ids id;
  training_job j(s, owner, id);
  return run_alone(j, "training");
}

trace inference(const inference_shape& s, std::uint32_t owner) {
  ids id;
  inference_job j(s, owner, id);
  return run_alone(j, "inference");
}

trace tenants(const tenants_shape& s) {
  ids id;
  std::vector<std::unique_ptr<job>> jobs;
  const auto cycle_total = static_cast<std::uint64_t>(s.cycle_factor * static_cast<double>(s.vram_bytes));
  jobs.push_back(std::make_unique<cycle_job>(cycle_total, s.cycle_layer_bytes, 1, id));
  jobs.push_back(std::make_unique<training_job>(s.small_training, 2, id));
  auto inf = s.small_inference;
  inf.seed = s.seed + 1;
  jobs.push_back(std::make_unique<inference_job>(inf, 3, id));
  std::discrete_distribution<int> pick({s.weight_cycle, s.weight_training, s.weight_inference});
  std::mt19937 rng(s.seed);
  trace t;
  t.name = "tenants";
  for (int k = 0; k < s.kernels; ++k) {
    auto& j = *jobs[static_cast<std::size_t>(pick(rng))];
    (void)j.next_kernel(t.events);  // the shapes here run longer than the trace
  }
  // The jobs end: what is still live is freed.
  std::vector<bool> freed(id.next, false);
  for (const auto& e : t.events) {
    if (e.kind == op::free) freed[e.buffer] = true;
  }
  std::vector<event> last;
  for (const auto& e : t.events) {
    if (e.kind == op::alloc && !freed[e.buffer]) last.push_back({op::free, e.owner, e.buffer, 0});
  }
  t.events.insert(t.events.end(), last.begin(), last.end());
  return t;
}

}  // namespace xbuf::trace
