// SPDX-License-Identifier: MIT
//
// One suite, both modes of client/allocator.hpp: the embedded allocator
// (a memory manager in this process) and the daemon client (the real
// xbufd binary as a child process, over its Unix socket). Every test runs
// against both and asserts what a framework relies on: pointers valid in
// this process, the same address and the same bytes across an eviction
// and a promotion, fences, CPU access, exports another mapping can read,
// and a clear error for each kind of misuse.
//
// Waits are bounded (the allocator's own timeouts); nothing asserts how
// long anything took.
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "client/allocator.hpp"
#include "tests/integration/daemon_process.hpp"

namespace xbuf {
namespace {

using client::allocator;
using namespace std::chrono_literals;

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;

// Both modes get the same machine: two sim GPUs of 1 MiB VRAM, 4 MiB
// pinned, 16 MiB pageable, promotion allowed at once.
struct embedded_mode {
  static constexpr const char* name = "embedded";
  bool opened = false;
  // The first call opens the allocator; later ones return nullptr (one
  // manager per process: "another job" is the same allocator).
  std::unique_ptr<allocator> open(const std::string&) {
    if (std::exchange(opened, true)) return nullptr;
    client::embedded_options o;
    o.backend = "sim";
    o.sim_devices = 2;
    o.sim_vram = 1 * MiB;
    o.pinned = 4 * MiB;
    o.pageable = 16 * MiB;
    o.promote_interval = 0ms;
    auto a = client::open_embedded(o);
    EXPECT_TRUE(a) << (a ? "" : a.err().describe());
    return a ? std::move(*a) : nullptr;
  }
};

struct daemon_mode {
  static constexpr const char* name = "daemon";
  std::unique_ptr<test::scratch_daemon> daemon;

  std::unique_ptr<allocator> open(const std::string& client_name) {
    if (!daemon) {
      daemon = std::make_unique<test::scratch_daemon>(
          std::vector<std::string>{"--pageable", "16M", "--promote-interval", "0"});
      if (!daemon->up()) {
        ADD_FAILURE() << "xbufd did not come up; log:\n" << daemon->log();
        return nullptr;
      }
    }
    auto a = client::connect_daemon(daemon->socket(), client_name);
    EXPECT_TRUE(a) << (a ? "" : a.err().describe());
    return a ? std::move(*a) : nullptr;
  }
};

template <class Mode>
class AllocatorSuite : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = mode_.open("suite");
    ASSERT_NE(a_, nullptr);
  }
  void TearDown() override {
    a_.reset();
    if constexpr (std::is_same_v<Mode, daemon_mode>) {
      if (HasFailure() && mode_.daemon) std::fprintf(stderr, "xbufd log:\n%s\n", mode_.daemon->log().c_str());
    }
  }

  buffer_id alloc(std::uint64_t size, std::vector<placement> where, bool cpu = false) {
    auto b = a_->alloc({.size = size, .placements = std::move(where), .name = "t", .cpu_access = cpu,
                        .no_evict = false, .alignment = 0});
    EXPECT_TRUE(b) << (b ? "" : b.err().describe());
    return b ? *b : 0;
  }

  Mode mode_;
  std::unique_ptr<allocator> a_;
};

using modes = ::testing::Types<embedded_mode, daemon_mode>;
class mode_names {
 public:
  template <class T>
  static std::string GetName(int) {
    return T::name;
  }
};
TYPED_TEST_SUITE(AllocatorSuite, modes, mode_names);

void fill(void* p, std::uint64_t n, std::uint32_t seed) {
  auto* b = static_cast<std::uint8_t*>(p);
  std::uint32_t x = seed * 2654435761u + 1;
  for (std::uint64_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b[i] = static_cast<std::uint8_t>(x);
  }
}

// The first offset where `p` differs from fill(seed), or n.
std::uint64_t first_difference(const void* p, std::uint64_t n, std::uint32_t seed) {
  std::vector<std::uint8_t> want(n);
  fill(want.data(), n, seed);
  const auto* b = static_cast<const std::uint8_t*>(p);
  for (std::uint64_t i = 0; i < n; ++i) {
    if (b[i] != want[i]) return i;
  }
  return n;
}

TYPED_TEST(AllocatorSuite, ModeIsNamed) {
  EXPECT_EQ(this->a_->mode(), TypeParam::name);
}

TYPED_TEST(AllocatorSuite, WritesThroughTheMappedPointerReadBack) {
  auto& a = *this->a_;
  const buffer_id b = this->alloc(64 * KiB, {placement::vram(0), placement::pageable()});
  auto at = a.attach(b, 0, attach_mode::dynamic);
  ASSERT_TRUE(at) << at.err().describe();
  auto v = a.begin_use(*at, fence_usage::write);
  ASSERT_TRUE(v) << v.err().describe();
  ASSERT_NE(v->data, nullptr);
  EXPECT_EQ(v->size, 64 * KiB);
  EXPECT_EQ(v->where, placement::vram(0));
  fill(v->data, v->size, 7);
  ASSERT_TRUE(a.end_use(*at));
  auto r = a.begin_use(*at, fence_usage::read);
  ASSERT_TRUE(r) << r.err().describe();
  EXPECT_EQ(r->data, v->data);
  EXPECT_EQ(first_difference(r->data, r->size, 7), r->size);
  ASSERT_TRUE(a.end_use(*at));
  EXPECT_TRUE(a.free(b));
}

// The heart of "stable addresses": evicted by another allocation, then
// promoted back by validate - the pointer is the one taken first and the
// bytes are the ones written, each time.
TYPED_TEST(AllocatorSuite, PointerAndBytesSurviveEvictionAndPromotion) {
  auto& a = *this->a_;
  std::atomic<int> moves{0};
  a.on_move([&](const client::move_event&) { moves.fetch_add(1); });
  const std::uint64_t size = 256 * KiB;
  // Pinned as the fallback: a device attachment reaches it, so the
  // eviction's new home is mapped as it is (pageable would be migrated
  // back into VRAM by map, evicting the pressure instead).
  const buffer_id b = this->alloc(size, {placement::vram(0), placement::pinned()});
  auto at = a.attach(b, 0, attach_mode::dynamic);
  ASSERT_TRUE(at) << at.err().describe();
  auto first = a.begin_use(*at, fence_usage::write);
  ASSERT_TRUE(first) << first.err().describe();
  void* const p = first->data;
  fill(p, size, 1);
  ASSERT_TRUE(a.end_use(*at));

  for (std::uint32_t round = 1; round <= 5; ++round) {
    // Pressure: VRAM-only, bigger than what is left, so b must go.
    auto big = a.alloc({.size = 1 * MiB, .placements = {placement::vram(0)}, .name = "pressure",
                        .cpu_access = false, .no_evict = false, .alignment = 0});
    ASSERT_TRUE(big) << big.err().describe();
    auto evicted = a.begin_use(*at, fence_usage::write);
    ASSERT_TRUE(evicted) << evicted.err().describe();
    EXPECT_EQ(evicted->data, p);
    EXPECT_EQ(evicted->where, placement::pinned()) << "round " << round;
    EXPECT_EQ(first_difference(p, size, round), size) << "round " << round << ", evicted";
    fill(p, size, round + 100);
    ASSERT_TRUE(a.end_use(*at));
    ASSERT_TRUE(a.free(*big));

    const buffer_id ids[] = {b};
    auto val = a.validate(ids);
    ASSERT_TRUE(val) << val.err().describe();
    EXPECT_EQ(val->promoted, 1u) << "round " << round;
    auto promoted = a.begin_use(*at, fence_usage::write);
    ASSERT_TRUE(promoted) << promoted.err().describe();
    EXPECT_EQ(promoted->data, p);
    EXPECT_EQ(promoted->where, placement::vram(0));
    EXPECT_EQ(first_difference(p, size, round + 100), size) << "round " << round << ", promoted";
    fill(p, size, round + 1);
    ASSERT_TRUE(a.end_use(*at));
  }
  // Events: by the daemon they arrive on the connection; read what is there.
  (void)a.poll_events(100ms);
  EXPECT_GE(moves.load(), 10);
  EXPECT_TRUE(a.free(b));
}

TYPED_TEST(AllocatorSuite, AUseHoldsEvictionOffUntilItEnds) {
  auto& a = *this->a_;
  const buffer_id b = this->alloc(512 * KiB, {placement::vram(0), placement::pinned()});
  auto at = a.attach(b, 0, attach_mode::dynamic);
  ASSERT_TRUE(at);
  auto v = a.begin_use(*at, fence_usage::write);
  ASSERT_TRUE(v) << v.err().describe();
  fill(v->data, v->size, 3);
  // Another job's allocation needs b's VRAM: it waits for the use's fence;
  // ending the use on another thread lets it through. (Through the daemon
  // the pressure is another connection: one connection's requests are
  // answered in order, so an alloc waiting on its own client's fence
  // would wait for that fence's deadline.)
  auto other = this->mode_.open("other-job");
  allocator& pressure = other ? *other : a;
  std::atomic<bool> ended{false};
  std::thread ender([&] {
    std::this_thread::sleep_for(100ms);
    ended = true;
    EXPECT_TRUE(a.end_use(*at));
  });
  auto big = pressure.alloc({.size = 1 * MiB, .placements = {placement::vram(0)}, .name = "pressure",
                             .cpu_access = false, .no_evict = false, .alignment = 0});
  const bool ended_before = ended.load();
  ender.join();
  ASSERT_TRUE(big) << big.err().describe();
  EXPECT_TRUE(ended_before) << "the eviction did not wait for the use";
  auto after = a.begin_use(*at, fence_usage::read);
  ASSERT_TRUE(after) << after.err().describe();
  EXPECT_EQ(after->data, v->data);
  EXPECT_EQ(after->where, placement::pinned());
  EXPECT_EQ(first_difference(after->data, after->size, 3), after->size);
  EXPECT_TRUE(a.end_use(*at));
}

TYPED_TEST(AllocatorSuite, FencesSignalWaitAndCarryTheirError) {
  auto& a = *this->a_;
  const buffer_id b = this->alloc(4 * KiB, {placement::pageable()});
  auto f = a.add_fence(b, fence_usage::write, 5000ms);
  ASSERT_TRUE(f) << f.err().describe();
  auto early = a.wait(*f, 10ms);
  ASSERT_FALSE(early);
  EXPECT_EQ(early.code(), errc::timed_out);
  ASSERT_TRUE(a.signal_fence(*f, -5));
  auto done = a.wait(*f, 1000ms);
  ASSERT_TRUE(done) << done.err().describe();
  EXPECT_EQ(*done, -5);
  auto bad = a.signal_fence(999'999, 0);
  EXPECT_EQ(bad.code(), errc::not_found);
  auto positive = a.add_fence(b, fence_usage::read);
  ASSERT_TRUE(positive);
  EXPECT_EQ(a.signal_fence(*positive, 3).code(), errc::invalid_argument);
  EXPECT_TRUE(a.signal_fence(*positive, 0));
}

TYPED_TEST(AllocatorSuite, CpuAccessWritesWhatAMappingReads) {
  auto& a = *this->a_;
  const buffer_id b = this->alloc(64 * KiB, {placement::vram(1), placement::pageable()}, true);
  auto c = a.cpu_begin(b, true);
  ASSERT_TRUE(c) << c.err().describe();
  ASSERT_NE(c->data, nullptr);
  fill(c->data, c->size, 11);
  ASSERT_TRUE(a.cpu_end(b));
  EXPECT_EQ(a.cpu_end(b).code(), errc::bad_state);
  auto at = a.attach(b, -1, attach_mode::pinned);
  ASSERT_TRUE(at) << at.err().describe();
  auto v = a.map(*at);
  ASSERT_TRUE(v) << v.err().describe();
  EXPECT_EQ(first_difference(v->data, 64 * KiB, 11), 64 * KiB);
}

TYPED_TEST(AllocatorSuite, AnExportMapsTheSameBytes) {
  auto& a = *this->a_;
  const buffer_id b = this->alloc(32 * KiB, {placement::vram(0), placement::pageable()});
  auto at = a.attach(b, 0, attach_mode::pinned);
  ASSERT_TRUE(at);
  auto v = a.begin_use(*at, fence_usage::write);
  ASSERT_TRUE(v) << v.err().describe();
  fill(v->data, v->size, 21);
  ASSERT_TRUE(a.end_use(*at));
  auto e = a.export_fd(b);
  ASSERT_TRUE(e) << e.err().describe();
  void* m = ::mmap(nullptr, e->offset + e->size, PROT_READ, MAP_SHARED, e->fd, 0);
  ASSERT_NE(m, MAP_FAILED);
  EXPECT_EQ(first_difference(static_cast<char*>(m) + e->offset, e->size, 21), e->size);
  ::munmap(m, e->offset + e->size);
  ::close(e->fd);
}

// An fd passed on (as a job would over a socket of its own) is imported by
// another client - in embedded mode the only client, which gets its own
// buffer back - and reaches the same bytes; every other fd is refused by
// name, and so is an export the buffer has moved away from.
TYPED_TEST(AllocatorSuite, AnImportedFdIsTheExportedBuffer) {
  auto& a = *this->a_;
  const buffer_id b = this->alloc(32 * KiB, {placement::vram(0), placement::pinned()});
  auto at = a.attach(b, 0, attach_mode::dynamic);
  ASSERT_TRUE(at);
  auto v = a.begin_use(*at, fence_usage::write);
  ASSERT_TRUE(v) << v.err().describe();
  fill(v->data, v->size, 33);
  ASSERT_TRUE(a.end_use(*at));
  auto e = a.export_fd(b);
  ASSERT_TRUE(e) << e.err().describe();

  auto other = this->mode_.open("importer");
  allocator& importer = other ? *other : a;
  auto imp = importer.import_fd(e->fd);
  ASSERT_TRUE(imp) << imp.err().describe();
  EXPECT_EQ(imp->size, 32 * KiB);
  EXPECT_EQ(imp->where, placement::vram(0));
  if (!other) {
    EXPECT_EQ(imp->buffer, b);
  }
  auto iat = importer.attach(imp->buffer, -1, attach_mode::dynamic);
  ASSERT_TRUE(iat) << iat.err().describe();
  auto seen = importer.begin_use(*iat, fence_usage::read);
  ASSERT_TRUE(seen) << seen.err().describe();
  EXPECT_EQ(first_difference(seen->data, 32 * KiB, 33), 32 * KiB);
  ASSERT_TRUE(importer.end_use(*iat));
  ASSERT_TRUE(importer.detach(*iat));

  // Not a memory file; a memory file nobody exported.
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  auto pipe_fd = importer.import_fd(p[0]);
  EXPECT_EQ(pipe_fd.code(), errc::invalid_argument) << (pipe_fd ? "" : pipe_fd.err().describe());
  ::close(p[0]);
  ::close(p[1]);
  const int stranger = ::memfd_create("stranger", MFD_CLOEXEC);
  ASSERT_GE(stranger, 0);
  auto unknown = importer.import_fd(stranger);
  EXPECT_EQ(unknown.code(), errc::not_found) << (unknown ? "" : unknown.err().describe());
  ::close(stranger);

  // The buffer moves (evicted by a VRAM-only allocation): the old fd
  // reaches its old pages, so importing it is refused.
  auto big = a.alloc({.size = 1 * MiB, .placements = {placement::vram(0)}, .name = "pressure",
                      .cpu_access = false, .no_evict = false, .alignment = 0});
  ASSERT_TRUE(big) << big.err().describe();
  auto stale = importer.import_fd(e->fd);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.code(), errc::not_found);
  EXPECT_NE(stale.err().message.find("moved since"), std::string::npos) << stale.err().message;
  ::close(e->fd);
}

// The library's views hold the exports they map and release them as they
// go; an export the caller took holds a freed buffer - charged to its
// owner, its memory nobody else's - until the caller releases it.
TYPED_TEST(AllocatorSuite, ExportsHoldAFreedBufferUntilReleased) {
  auto& a = *this->a_;
  const auto used = [&](const std::string& domain) {
    auto s = a.stats();
    EXPECT_TRUE(s) << s.err().describe();
    for (const auto& d : s ? s->domains : std::vector<wire::stat_domain>{}) {
      if (d.name == domain) return std::pair{d.used, d.exported_bytes};
    }
    ADD_FAILURE() << "no domain " << domain;
    return std::pair<std::uint64_t, std::uint64_t>{};
  };
  const std::string pageable = "pageable";
  const auto before = used(pageable);
  const buffer_id b = this->alloc(64 * KiB, {placement::pageable()});
  for (int round = 0; round < 3; ++round) {  // map, use, unmap: each view's export released
    auto at = a.attach(b, -1, attach_mode::dynamic);
    ASSERT_TRUE(at);
    auto v = a.begin_use(*at, fence_usage::write);
    ASSERT_TRUE(v) << v.err().describe();
    ASSERT_TRUE(a.end_use(*at));
    ASSERT_TRUE(round == 0 ? a.unmap(*at) : status(ok()));
    ASSERT_TRUE(a.detach(*at));
  }
  auto e = a.export_fd(b);
  ASSERT_TRUE(e) << e.err().describe();
  ::close(e->fd);
  ASSERT_TRUE(a.free(b));
  EXPECT_EQ(used(pageable).first, before.first + 64 * KiB) << "held by the caller's export";
  EXPECT_EQ(used(pageable).second, before.second + 64 * KiB);
  ASSERT_TRUE(a.release_export(b));
  EXPECT_EQ(used(pageable), before) << "nothing left held: the views released theirs";
  EXPECT_EQ(a.release_export(b).code(), errc::not_found);
}

TYPED_TEST(AllocatorSuite, StatsShowTheBuffer) {
  auto& a = *this->a_;
  const buffer_id b = this->alloc(48 * KiB, {placement::pageable()});
  auto s = a.stats();
  ASSERT_TRUE(s) << s.err().describe();
  bool seen = false;
  for (const auto& row : s->buffers) seen = seen || (row.id == b && row.size == 48 * KiB);
  EXPECT_TRUE(seen);
  EXPECT_FALSE(s->domains.empty());
}

TYPED_TEST(AllocatorSuite, MisuseGetsANamedError) {
  auto& a = *this->a_;
  auto unknown = a.map(424242);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.code(), errc::not_found);
  EXPECT_NE(unknown.err().message.find("424242"), std::string::npos) << unknown.err().message;
  EXPECT_EQ(a.free(424242).code(), errc::not_found);
  EXPECT_EQ(a.end_use(424242).code(), errc::not_found);

  const buffer_id b = this->alloc(8 * KiB, {placement::pageable()});
  auto at = a.attach(b, -1, attach_mode::dynamic);
  ASSERT_TRUE(at);
  auto no_use = a.end_use(*at);
  EXPECT_EQ(no_use.code(), errc::bad_state);
  EXPECT_NE(no_use.err().message.find("no use begun"), std::string::npos) << no_use.err().message;
  ASSERT_TRUE(a.begin_use(*at, fence_usage::write));
  auto twice = a.begin_use(*at, fence_usage::write);
  EXPECT_EQ(twice.code(), errc::bad_state);
  EXPECT_EQ(a.detach(*at).code(), errc::bad_state);
  EXPECT_EQ(a.unmap(*at).code(), errc::bad_state);
  ASSERT_TRUE(a.end_use(*at));
  EXPECT_TRUE(a.detach(*at));
  EXPECT_EQ(a.detach(*at).code(), errc::not_found);
  EXPECT_TRUE(a.free(b));
  EXPECT_EQ(a.free(b).code(), errc::not_found);
  auto zero = a.alloc({.size = 0, .placements = {placement::pageable()}, .name = "", .cpu_access = false,
                       .no_evict = false, .alignment = 0});
  EXPECT_EQ(zero.code(), errc::invalid_argument);
}

// Several threads on one allocator, each its own buffers: every call must
// come back with its own answer (the daemon client shares one connection).
TYPED_TEST(AllocatorSuite, ThreadsShareOneAllocator) {
  auto& a = *this->a_;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        auto b = a.alloc({.size = 16 * KiB, .placements = {placement::vram(t % 2), placement::pageable()},
                          .name = "thread", .cpu_access = false, .no_evict = false, .alignment = 0});
        if (!b) { failures.fetch_add(1); continue; }
        auto at = a.attach(*b, t % 2, attach_mode::dynamic);
        if (!at) { failures.fetch_add(1); (void)a.free(*b); continue; }
        auto v = a.begin_use(*at, fence_usage::write);
        if (!v) { failures.fetch_add(1); (void)a.free(*b); continue; }
        const auto seed = static_cast<std::uint32_t>(t * 1000 + i);
        fill(v->data, v->size, seed);
        if (first_difference(v->data, v->size, seed) != v->size) failures.fetch_add(1);
        if (!a.end_use(*at) || !a.free(*b)) failures.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace xbuf
