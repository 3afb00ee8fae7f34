// SPDX-License-Identifier: MIT
//
// The C ABI (client/xbuf_c.h) without a daemon: an embedded allocator on
// the sim backend behind every call - alloc, attach, uses, exports, fences,
// validate, CPU access, stats as JSON, move events, the torch shape - and
// the failure contract: every failure is a negative errno (or NULL) plus a
// message in xbuf_last_error() naming the call, never a crash or an
// exception; out parameters are left alone on failure.
//
// The daemon side of the same calls is tests/python/test_xbuf.py (over
// libxbuf.so and a real xbufd).
#include "client/xbuf_c.h"

#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/common/json.hpp"

namespace {

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;
constexpr std::uint64_t no_such_id = 987654321;

std::string last() { return xbuf_last_error(); }

// The last error names `what` (a function, an argument).
::testing::AssertionResult error_names(const std::string& what) {
  if (last().find(what) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "xbuf_last_error() \"" << last() << "\" does not name " << what;
}

// The suite's machine: two sim GPUs of 1 MiB VRAM, 4 MiB pinned, 16 MiB
// pageable, promotion allowed at once (as allocator_suite_test).
class CAbiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    c_ = xbuf_open_embedded("sim", 2, 1 * MiB, 4 * MiB, 16 * MiB, 0);
    ASSERT_NE(c_, nullptr) << last();
  }
  void TearDown() override { xbuf_disconnect(c_); }

  std::uint64_t alloc(std::uint64_t size, int device) {
    std::uint64_t b = 0;
    EXPECT_EQ(xbuf_alloc(c_, size, device, &b), 0) << last();
    return b;
  }
  std::uint64_t alloc_in(std::uint64_t size, std::vector<xbuf_placement> where, std::uint32_t flags = 0,
                         const char* name = nullptr) {
    std::uint64_t b = 0;
    EXPECT_EQ(xbuf_alloc_ex(c_, size, where.data(), where.size(), flags, name, 0, &b), 0) << last();
    return b;
  }
  std::uint64_t attach(std::uint64_t b, int device = -1, int mode = XBUF_ATTACH_DYNAMIC) {
    std::uint64_t a = 0;
    EXPECT_EQ(xbuf_attach(c_, b, device, mode, 0, &a), 0) << last();
    return a;
  }

  xbuf_client* c_ = nullptr;
};

TEST_F(CAbiTest, EmbeddedHandleSaysItsModeAndOwner) {
  EXPECT_STREQ(xbuf_mode(c_), "embedded");
  std::uint32_t owner = 0;
  EXPECT_EQ(xbuf_owner(c_, &owner), 0) << last();
  EXPECT_NE(owner, 0u);
}

TEST(CAbiOpenTest, OpenEmbeddedRefusesUnknownBackendAndBadSettings) {
  EXPECT_EQ(xbuf_open_embedded("no-such-backend", 0, 0, 0, 0, XBUF_DEFAULT), nullptr);
  EXPECT_TRUE(error_names("xbuf_open_embedded"));
  EXPECT_TRUE(error_names("invalid_argument"));
  EXPECT_EQ(xbuf_open_embedded("sim", -1, 0, 0, 0, XBUF_DEFAULT), nullptr);
  EXPECT_TRUE(error_names("sim_devices"));
  EXPECT_EQ(xbuf_open_embedded("sim", 0, 0, 0, 0, -7), nullptr);
  EXPECT_TRUE(error_names("promote_interval_ms"));
}

TEST(CAbiOpenTest, OpenEmbeddedWithDefaultsWorks) {
  xbuf_client* c = xbuf_open_embedded("sim", 0, 0, 0, 0, XBUF_DEFAULT);
  ASSERT_NE(c, nullptr) << last();
  std::uint64_t b = 0;
  EXPECT_EQ(xbuf_alloc(c, 4096, 0, &b), 0) << last();
  xbuf_disconnect(c);  // frees what it held
}

TEST_F(CAbiTest, WriteInOneUseReadInTheNext) {
  const std::uint64_t b = alloc(64 * KiB, 0);
  const std::uint64_t a = attach(b);
  xbuf_mapping m{};
  ASSERT_EQ(xbuf_begin_use(c_, a, XBUF_USAGE_WRITE, XBUF_DEFAULT, &m), 0) << last();
  ASSERT_NE(m.data, nullptr);
  EXPECT_EQ(m.size, 64 * KiB);
  EXPECT_EQ(m.where.kind, XBUF_PLACEMENT_VRAM);
  EXPECT_EQ(m.where.device, 0);
  std::memset(m.data, 0x5a, m.size);
  ASSERT_EQ(xbuf_end_use(c_, a, 0), 0) << last();

  xbuf_mapping r{};
  ASSERT_EQ(xbuf_begin_use(c_, a, XBUF_USAGE_READ, 1000, &r), 0) << last();
  const auto* bytes = static_cast<const unsigned char*>(r.data);
  EXPECT_EQ(bytes[0], 0x5a);
  EXPECT_EQ(bytes[r.size - 1], 0x5a);
  EXPECT_EQ(xbuf_end_use(c_, a, 0), 0) << last();

  EXPECT_EQ(xbuf_unmap(c_, a), 0) << last();
  EXPECT_EQ(xbuf_detach(c_, a), 0) << last();
  EXPECT_EQ(xbuf_free(c_, b), 0) << last();
}

// A pinned placement takes no index (5 is ignored); pageable's is its NUMA node.
TEST_F(CAbiTest, PlacementsAreTriedInOrderAndPinnedTakesNoIndex) {
  const std::uint64_t pinned = alloc_in(8 * KiB, {{XBUF_PLACEMENT_PINNED, 5}});
  const std::uint64_t pageable = alloc_in(8 * KiB, {{XBUF_PLACEMENT_PAGEABLE, -1}, {XBUF_PLACEMENT_VRAM, 0}});
  const std::uint64_t gpu1 = alloc_in(8 * KiB, {{XBUF_PLACEMENT_VRAM, 1}});
  const std::uint64_t host = alloc(8 * KiB, -1);
  struct want {
    std::uint64_t buffer;
    int kind;
    int device;
  };
  for (const want& w : {want{pinned, XBUF_PLACEMENT_PINNED, -1}, want{pageable, XBUF_PLACEMENT_PAGEABLE, -1},
                        want{gpu1, XBUF_PLACEMENT_VRAM, 1}, want{host, XBUF_PLACEMENT_PAGEABLE, -1}}) {
    const std::uint64_t a = attach(w.buffer);
    xbuf_mapping m{};
    ASSERT_EQ(xbuf_map(c_, a, XBUF_DEFAULT, &m), 0) << last();
    EXPECT_EQ(m.where.kind, w.kind) << "buffer " << w.buffer;
    EXPECT_EQ(m.where.device, w.device) << "buffer " << w.buffer;
  }
}

TEST_F(CAbiTest, ExportHandsOutAnFdWithTheBuffersBytes) {
  const std::uint64_t b = alloc_in(16 * KiB, {{XBUF_PLACEMENT_PINNED, -1}});
  const std::uint64_t a = attach(b);
  xbuf_mapping m{};
  ASSERT_EQ(xbuf_begin_use(c_, a, XBUF_USAGE_WRITE, XBUF_DEFAULT, &m), 0) << last();
  std::memcpy(m.data, "exported bytes", 15);
  ASSERT_EQ(xbuf_end_use(c_, a, 0), 0) << last();

  xbuf_export_info e{.fd = -1, .offset = 0, .size = 0, .kind = -1};
  ASSERT_EQ(xbuf_export(c_, b, &e), 0) << last();
  ASSERT_GE(e.fd, 0);
  EXPECT_EQ(e.size, 16 * KiB);
  EXPECT_EQ(e.kind, XBUF_PLACEMENT_PINNED);
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t start = e.offset & ~(page - 1);
  const std::size_t len = static_cast<std::size_t>(e.offset - start + e.size);
  void* p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, e.fd, static_cast<off_t>(start));
  ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);
  EXPECT_STREQ(static_cast<const char*>(p) + (e.offset - start), "exported bytes");
  ::munmap(p, len);
  // Imported back: the same buffer (the only client of an embedded one).
  std::uint64_t imported = 0, imported_size = 0;
  ASSERT_EQ(xbuf_import(c_, e.fd, &imported, &imported_size), 0) << last();
  EXPECT_EQ(imported, b);
  EXPECT_EQ(imported_size, 16 * KiB);
  EXPECT_EQ(xbuf_import(c_, e.fd, nullptr, nullptr), -EINVAL);
  ::close(e.fd);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  EXPECT_EQ(xbuf_import(c_, pipe_fds[0], &imported, nullptr), -EINVAL);
  EXPECT_NE(std::string(xbuf_last_error()).find("not a memory file"), std::string::npos) << xbuf_last_error();
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);

  // The short form hands out the same range.
  int fd = -1;
  std::uint64_t offset = 0, size = 0;
  ASSERT_EQ(xbuf_export_fd(c_, b, &fd, &offset, &size), 0) << last();
  EXPECT_GE(fd, 0);
  EXPECT_EQ(size, 16 * KiB);
  ::close(fd);
  ASSERT_EQ(xbuf_export_fd(c_, b, &fd, nullptr, nullptr), 0) << "offset and size may be NULL: " << last();
  ::close(fd);
}

TEST_F(CAbiTest, FenceWaitTimesOutUntilSignaledThenReportsTheError) {
  const std::uint64_t b = alloc(4096, -1);
  std::uint64_t f = 0;
  ASSERT_EQ(xbuf_add_fence(c_, b, XBUF_USAGE_WRITE, 0, &f), 0) << last();
  int fence_error = 12345;
  EXPECT_EQ(xbuf_wait_fence(c_, f, 0, &fence_error), -ETIMEDOUT);
  EXPECT_EQ(fence_error, 12345) << "left alone on failure";
  EXPECT_EQ(xbuf_wait_fence(c_, f, 10, &fence_error), -ETIMEDOUT);
  ASSERT_EQ(xbuf_signal_fence(c_, f, -EIO), 0) << last();
  EXPECT_EQ(xbuf_wait_fence(c_, f, 1000, &fence_error), 0) << last();
  EXPECT_EQ(fence_error, -EIO);
  EXPECT_EQ(xbuf_wait_fence(c_, f, 0, nullptr), 0) << "out_fence_error may be NULL: " << last();
  EXPECT_EQ(xbuf_signal_fence(c_, f, 0), -EALREADY);
  EXPECT_TRUE(error_names("xbuf_signal_fence"));

  std::uint64_t r = 0;
  ASSERT_EQ(xbuf_add_fence(c_, b, XBUF_USAGE_READ, 0, &r), 0) << last();
  EXPECT_NE(r, f);
  EXPECT_EQ(xbuf_signal_fence(c_, r, 0), 0) << last();
  EXPECT_EQ(xbuf_wait_fence(c_, r, 1000, &fence_error), 0) << last();
  EXPECT_EQ(fence_error, 0);
}

TEST_F(CAbiTest, AFenceWithADeadlineIsSignaledTimedOutByTheManager) {
  const std::uint64_t b = alloc(4096, -1);
  std::uint64_t f = 0;
  ASSERT_EQ(xbuf_add_fence(c_, b, XBUF_USAGE_WRITE, 20, &f), 0) << last();
  int fence_error = 0;
  // Bounded: the deadline is 20 ms; 30 s is only the test's patience.
  ASSERT_EQ(xbuf_wait_fence(c_, f, 30'000, &fence_error), 0) << last();
  EXPECT_EQ(fence_error, -ETIMEDOUT);
}

TEST_F(CAbiTest, FenceCallsRefuseBadArguments) {
  const std::uint64_t b = alloc(4096, -1);
  std::uint64_t f = 77;
  EXPECT_EQ(xbuf_add_fence(c_, b, 0, 0, &f), -EINVAL) << "usage 0 (the manager's own) is not the client's";
  EXPECT_TRUE(error_names("usage"));
  EXPECT_EQ(xbuf_add_fence(c_, b, 99, 0, &f), -EINVAL);
  EXPECT_EQ(f, 77u);
  EXPECT_EQ(xbuf_add_fence(c_, b, XBUF_USAGE_READ, 0, nullptr), -EINVAL);
  EXPECT_TRUE(error_names("out_fence"));
  EXPECT_EQ(xbuf_add_fence(c_, no_such_id, XBUF_USAGE_READ, 0, &f), -ENOENT);
  EXPECT_EQ(xbuf_signal_fence(c_, no_such_id, 0), -ENOENT);
  EXPECT_EQ(xbuf_wait_fence(c_, no_such_id, 0, nullptr), -ENOENT);
  ASSERT_EQ(xbuf_add_fence(c_, b, XBUF_USAGE_READ, 0, &f), 0) << last();
  EXPECT_EQ(xbuf_signal_fence(c_, f, 5), -EINVAL) << "a positive error is no errno";
  EXPECT_TRUE(error_names("error 5"));
  EXPECT_EQ(xbuf_signal_fence(c_, f, 0), 0) << last();
}

TEST_F(CAbiTest, ValidateCountsEachBufferOnce) {
  const std::uint64_t ids[] = {alloc(4096, 0), alloc(4096, -1)};
  xbuf_validate_counts n{};
  ASSERT_EQ(xbuf_validate(c_, ids, 2, &n), 0) << last();
  EXPECT_EQ(n.promoted + n.deferred + n.in_place + n.no_room, 2u);
  EXPECT_EQ(xbuf_validate(c_, nullptr, 0, &n), 0) << "no ids is fine: " << last();
  EXPECT_EQ(n.promoted + n.deferred + n.in_place + n.no_room, 0u);

  n = {9, 9, 9, 9};
  const std::uint64_t unknown[] = {ids[0], no_such_id};
  EXPECT_EQ(xbuf_validate(c_, unknown, 2, &n), -ENOENT);
  EXPECT_TRUE(error_names(std::to_string(no_such_id)));
  EXPECT_EQ(n.promoted, 9u) << "left alone on failure";
  EXPECT_EQ(xbuf_validate(c_, nullptr, 1, &n), -EINVAL);
  EXPECT_TRUE(error_names("ids"));
  EXPECT_EQ(xbuf_validate(c_, ids, 2, nullptr), -EINVAL);
}

TEST_F(CAbiTest, CpuAccessWritesAndReadsTheBytes) {
  const std::uint64_t b = alloc_in(8 * KiB, {{XBUF_PLACEMENT_VRAM, 0}, {XBUF_PLACEMENT_PAGEABLE, -1}},
                                   XBUF_ALLOC_CPU_ACCESS);
  void* p = nullptr;
  std::uint64_t size = 0;
  ASSERT_EQ(xbuf_cpu_begin(c_, b, 1, XBUF_DEFAULT, &p, &size), 0) << last();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(size, 8 * KiB);
  std::memset(p, 0xc3, size);
  ASSERT_EQ(xbuf_cpu_end(c_, b), 0) << last();

  ASSERT_EQ(xbuf_cpu_begin(c_, b, 0, 1000, &p, nullptr), 0) << "out_size may be NULL: " << last();
  EXPECT_EQ(static_cast<const unsigned char*>(p)[8 * KiB - 1], 0xc3);
  ASSERT_EQ(xbuf_cpu_end(c_, b), 0) << last();

  EXPECT_LT(xbuf_cpu_end(c_, b), 0) << "no access begun";
  EXPECT_TRUE(error_names("xbuf_cpu_end"));
  EXPECT_EQ(xbuf_cpu_begin(c_, no_such_id, 0, 0, &p, nullptr), -ENOENT);
  EXPECT_EQ(xbuf_cpu_begin(c_, b, 0, 0, nullptr, nullptr), -EINVAL);
  EXPECT_TRUE(error_names("out_data"));
  EXPECT_EQ(xbuf_cpu_begin(c_, b, 0, -3, &p, nullptr), -EINVAL);
  EXPECT_TRUE(error_names("timeout_ms"));
}

TEST_F(CAbiTest, StatsJsonIsValidAndListsTheBuffers) {
  // A name a client chooses: quotes, a newline, a byte that is not UTF-8.
  const char name[] = "c-abi \"q\"\n\xff";
  const std::uint64_t b = alloc_in(12 * KiB, {{XBUF_PLACEMENT_PINNED, -1}}, 0, name);
  char* text = xbuf_stats_json(c_);
  ASSERT_NE(text, nullptr) << last();
  std::size_t where = 0;
  const auto doc = xbuf::test::json::parse(text, &where);
  ASSERT_TRUE(doc) << "invalid at " << where << ": " << text;
  xbuf_string_free(text);

  EXPECT_EQ(*doc->find("backend")->as_string(), "sim");
  const auto* buffers = doc->find("buffers")->as_array();
  ASSERT_NE(buffers, nullptr);
  const xbuf::test::json::value* mine = nullptr;
  for (const auto& row : *buffers) {
    if (row.find("id")->as_number()->text == std::to_string(b)) mine = &row;
  }
  ASSERT_NE(mine, nullptr) << "buffer " << b << " not listed";
  EXPECT_EQ(*mine->find("name")->as_string(), "c-abi \"q\"\n\xef\xbf\xbd");
  EXPECT_EQ(mine->find("size")->as_number()->text, std::to_string(12 * KiB));
  EXPECT_EQ(*mine->find("where")->find("name")->as_string(), "pinned");
  EXPECT_NE(doc->find("counters")->find("allocations"), nullptr);
  xbuf_string_free(nullptr);  // NULL is fine
}

TEST_F(CAbiTest, AnEvictionCallsTheMoveCallbackAndKeepsTheBytes) {
  struct seen {
    int calls = 0;
    xbuf_move_event last{};
  } s;
  ASSERT_EQ(xbuf_set_move_callback(
                c_, [](void* user, const xbuf_move_event* e) {
                  auto* into = static_cast<seen*>(user);
                  ++into->calls;
                  into->last = *e;
                },
                &s),
            0)
      << last();
  // Two 768 KiB buffers cannot share gpu0's 1 MiB: the second evicts the first.
  const std::uint64_t first = alloc_in(768 * KiB, {{XBUF_PLACEMENT_VRAM, 0}, {XBUF_PLACEMENT_PAGEABLE, -1}});
  const std::uint64_t a = attach(first);
  xbuf_mapping m{};
  ASSERT_EQ(xbuf_begin_use(c_, a, XBUF_USAGE_WRITE, XBUF_DEFAULT, &m), 0) << last();
  std::memset(m.data, 0x77, m.size);
  void* const address = m.data;
  ASSERT_EQ(xbuf_end_use(c_, a, 0), 0) << last();

  (void)alloc_in(768 * KiB, {{XBUF_PLACEMENT_VRAM, 0}});
  EXPECT_EQ(xbuf_poll_events(c_, 0), 0) << "embedded: callbacks ran at once";
  ASSERT_GE(s.calls, 1);
  EXPECT_EQ(s.last.attachment, a);
  EXPECT_EQ(s.last.buffer, first);
  EXPECT_EQ(s.last.from.kind, XBUF_PLACEMENT_VRAM);
  EXPECT_EQ(s.last.from.device, 0);
  EXPECT_NE(s.last.to.kind, XBUF_PLACEMENT_VRAM);

  ASSERT_EQ(xbuf_begin_use(c_, a, XBUF_USAGE_READ, XBUF_DEFAULT, &m), 0) << last();
  EXPECT_EQ(m.data, address) << "the view stays at its address across the move";
  EXPECT_EQ(m.where.kind, XBUF_PLACEMENT_PAGEABLE);
  EXPECT_GE(m.generation, 1u);
  EXPECT_EQ(static_cast<const unsigned char*>(m.data)[m.size - 1], 0x77);
  EXPECT_EQ(xbuf_end_use(c_, a, 0), 0) << last();

  EXPECT_EQ(xbuf_set_move_callback(c_, nullptr, nullptr), 0) << "NULL removes it: " << last();
  EXPECT_EQ(xbuf_poll_events(c_, -1), -EINVAL);
}

TEST_F(CAbiTest, AnAllocationWithoutRoomCallsThePressureCallback) {
  struct seen {
    int calls = 0;
    xbuf_pressure_event last{};
  } s;
  ASSERT_EQ(xbuf_set_pressure_callback(
                c_, [](void* user, const xbuf_pressure_event* e) {
                  auto* into = static_cast<seen*>(user);
                  ++into->calls;
                  into->last = *e;
                },
                &s),
            0)
      << last();
  (void)alloc(12 * MiB, -1);
  std::uint64_t b = 0;
  ASSERT_EQ(xbuf_alloc(c_, 8 * MiB, -1, &b), -ENOMEM);
  ASSERT_EQ(s.calls, 1);
  EXPECT_EQ(s.last.where.kind, XBUF_PLACEMENT_PAGEABLE);
  EXPECT_EQ(s.last.bytes, 8 * MiB);
  ASSERT_EQ(xbuf_set_pressure_callback(c_, nullptr, nullptr), 0) << "NULL removes it: " << last();
  ASSERT_EQ(xbuf_alloc(c_, 8 * MiB, -1, &b), -ENOMEM);
  EXPECT_EQ(s.calls, 1);
}

TEST_F(CAbiTest, UsesMustPair) {
  const std::uint64_t b = alloc(4096, -1);
  const std::uint64_t a = attach(b);
  xbuf_mapping m{};
  EXPECT_EQ(xbuf_end_use(c_, a, 0), -EINVAL) << "no use begun";
  EXPECT_TRUE(error_names("no use begun"));
  ASSERT_EQ(xbuf_begin_use(c_, a, XBUF_USAGE_WRITE, XBUF_DEFAULT, &m), 0) << last();
  xbuf_mapping again{};
  again.size = 42;
  EXPECT_EQ(xbuf_begin_use(c_, a, XBUF_USAGE_WRITE, XBUF_DEFAULT, &again), -EINVAL) << "begin_use twice";
  EXPECT_TRUE(error_names("already begun"));
  EXPECT_EQ(again.size, 42u) << "left alone on failure";
  EXPECT_EQ(xbuf_detach(c_, a), -EINVAL) << "detach during a use";
  EXPECT_EQ(xbuf_unmap(c_, a), -EINVAL) << "unmap during a use";
  EXPECT_EQ(xbuf_end_use(c_, a, 1), -EINVAL) << "a positive error is no errno";
  EXPECT_EQ(xbuf_end_use(c_, a, 0), 0) << last();
  EXPECT_EQ(xbuf_end_use(c_, a, 0), -EINVAL) << "ended twice";
  EXPECT_EQ(xbuf_begin_use(c_, a, 7, XBUF_DEFAULT, &m), -EINVAL);
  EXPECT_TRUE(error_names("usage 7"));
  EXPECT_EQ(xbuf_begin_use(c_, a, XBUF_USAGE_READ, -2, &m), -EINVAL);
  EXPECT_TRUE(error_names("timeout_ms"));
}

TEST_F(CAbiTest, UnknownIdsAreNotFound) {
  std::uint64_t out = 5;
  xbuf_mapping m{};
  xbuf_export_info e{};
  int fd = -1;
  EXPECT_EQ(xbuf_free(c_, no_such_id), -ENOENT);
  EXPECT_TRUE(error_names("xbuf_free"));
  EXPECT_TRUE(error_names(std::to_string(no_such_id)));
  EXPECT_EQ(xbuf_share(c_, no_such_id, 2), -ENOENT);
  EXPECT_EQ(xbuf_export(c_, no_such_id, &e), -ENOENT);
  EXPECT_EQ(xbuf_export_fd(c_, no_such_id, &fd, nullptr, nullptr), -ENOENT);
  EXPECT_EQ(fd, -1);
  EXPECT_EQ(xbuf_attach(c_, no_such_id, -1, XBUF_ATTACH_DYNAMIC, 0, &out), -ENOENT);
  EXPECT_EQ(out, 5u);
  EXPECT_EQ(xbuf_detach(c_, no_such_id), -ENOENT);
  EXPECT_EQ(xbuf_map(c_, no_such_id, XBUF_DEFAULT, &m), -ENOENT);
  EXPECT_EQ(xbuf_unmap(c_, no_such_id), -ENOENT);
  EXPECT_EQ(xbuf_begin_use(c_, no_such_id, XBUF_USAGE_READ, XBUF_DEFAULT, &m), -ENOENT);
  EXPECT_EQ(xbuf_end_use(c_, no_such_id, 0), -ENOENT);
  EXPECT_EQ(xbuf_cpu_end(c_, no_such_id), -ENOENT);
}

TEST_F(CAbiTest, AdviceOrdersEvictionAndRefusesBadHints) {
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(alloc_in(256 * KiB, {{XBUF_PLACEMENT_VRAM, 0}, {XBUF_PLACEMENT_PAGEABLE, -1}}));
  ASSERT_EQ(xbuf_advise(c_, ids[0], XBUF_HINT_KEEP), 0) << last();
  ASSERT_EQ(xbuf_advise(c_, ids[3], XBUF_HINT_DONE), 0) << last();
  (void)alloc_in(256 * KiB, {{XBUF_PLACEMENT_VRAM, 0}, {XBUF_PLACEMENT_PAGEABLE, -1}});
  (void)alloc_in(256 * KiB, {{XBUF_PLACEMENT_VRAM, 0}, {XBUF_PLACEMENT_PAGEABLE, -1}});
  auto where = [&](std::uint64_t b) {
    const std::uint64_t a = attach(b);
    xbuf_mapping m{};
    EXPECT_EQ(xbuf_map(c_, a, XBUF_DEFAULT, &m), 0) << last();
    return m.where.kind;
  };
  EXPECT_EQ(where(ids[3]), XBUF_PLACEMENT_PAGEABLE) << "done goes first";
  EXPECT_EQ(where(ids[1]), XBUF_PLACEMENT_PAGEABLE) << "then LRU, passing over keep";
  EXPECT_EQ(where(ids[0]), XBUF_PLACEMENT_VRAM) << "keep stays";
  EXPECT_EQ(xbuf_advise(c_, ids[0], 3), -EINVAL);
  EXPECT_TRUE(error_names("hint 3"));
  EXPECT_EQ(xbuf_advise(c_, 987654, XBUF_HINT_NONE), -ENOENT);
  EXPECT_EQ(xbuf_advise(nullptr, ids[0], XBUF_HINT_NONE), -EINVAL);
}

TEST_F(CAbiTest, DoubleFreeIsAnError) {
  const std::uint64_t b = alloc(4096, -1);
  ASSERT_EQ(xbuf_free(c_, b), 0) << last();
  EXPECT_EQ(xbuf_free(c_, b), -ENOENT);
  EXPECT_TRUE(error_names("xbuf_free"));
}

TEST_F(CAbiTest, AllocRefusesBadPlacementsFlagsAndSizes) {
  std::uint64_t b = 5;
  const xbuf_placement bad_kind[] = {{XBUF_PLACEMENT_PINNED, -1}, {7, 0}};
  EXPECT_EQ(xbuf_alloc_ex(c_, 4096, bad_kind, 2, 0, nullptr, 0, &b), -EINVAL);
  EXPECT_TRUE(error_names("placements[1]"));
  const xbuf_placement vram_without_device[] = {{XBUF_PLACEMENT_VRAM, -1}};
  EXPECT_EQ(xbuf_alloc_ex(c_, 4096, vram_without_device, 1, 0, nullptr, 0, &b), -EINVAL);
  EXPECT_TRUE(error_names("placements[0]"));
  const xbuf_placement no_such_gpu[] = {{XBUF_PLACEMENT_VRAM, 9}};
  EXPECT_EQ(xbuf_alloc_ex(c_, 4096, no_such_gpu, 1, 0, nullptr, 0, &b), -EINVAL) << "the manager's refusal";
  const xbuf_placement no_such_node[] = {{XBUF_PLACEMENT_PAGEABLE, 6}};
  EXPECT_EQ(xbuf_alloc_ex(c_, 4096, no_such_node, 1, 0, nullptr, 0, &b), -EINVAL) << "one pageable domain";
  EXPECT_TRUE(error_names("pageable-node6"));
  const xbuf_placement negative_node[] = {{XBUF_PLACEMENT_PAGEABLE, -2}};
  EXPECT_EQ(xbuf_alloc_ex(c_, 4096, negative_node, 1, 0, nullptr, 0, &b), -EINVAL);
  EXPECT_TRUE(error_names("placements[0]"));
  const xbuf_placement host[] = {{XBUF_PLACEMENT_PAGEABLE, -1}};
  EXPECT_EQ(xbuf_alloc_ex(c_, 4096, nullptr, 1, 0, nullptr, 0, &b), -EINVAL);
  EXPECT_TRUE(error_names("placements"));
  EXPECT_EQ(xbuf_alloc_ex(c_, 4096, host, 0, 0, nullptr, 0, &b), -EINVAL);
  EXPECT_EQ(xbuf_alloc_ex(c_, 4096, host, 1, 0x80, nullptr, 0, &b), -EINVAL);
  EXPECT_TRUE(error_names("flags"));
  EXPECT_EQ(xbuf_alloc_ex(c_, 4096, host, 1, 0, nullptr, 3000, &b), -EINVAL) << "alignment not a power of two";
  EXPECT_EQ(xbuf_alloc_ex(c_, 0, host, 1, 0, nullptr, 0, &b), -EINVAL) << "size 0";
  EXPECT_EQ(xbuf_alloc(c_, 0, -1, &b), -EINVAL) << "size 0";
  EXPECT_EQ(xbuf_alloc(c_, 64 * MiB, -1, &b), -EINVAL) << "more than any domain it may use holds";
  EXPECT_TRUE(error_names("larger than"));
  std::uint64_t most = 0;
  ASSERT_EQ(xbuf_alloc(c_, 12 * MiB, -1, &most), 0) << last();
  EXPECT_EQ(xbuf_alloc(c_, 8 * MiB, -1, &b), -ENOMEM) << "pageable memory is full; nowhere to evict to";
  EXPECT_TRUE(error_names("out_of_memory"));
  EXPECT_EQ(b, 5u) << "left alone on failure";

  ASSERT_EQ(xbuf_alloc_ex(c_, 4096, host, 1, XBUF_ALLOC_NO_EVICT | XBUF_ALLOC_CPU_ACCESS, "ok", 8192, &b), 0)
      << last();
  EXPECT_NE(b, 5u);
}

TEST_F(CAbiTest, AttachAndMapRefuseBadArguments) {
  const std::uint64_t b = alloc(4096, -1);
  std::uint64_t a = 5;
  EXPECT_EQ(xbuf_attach(c_, b, -1, 9, 0, &a), -EINVAL);
  EXPECT_TRUE(error_names("mode 9"));
  EXPECT_EQ(xbuf_attach(c_, b, -1, XBUF_ATTACH_DYNAMIC, 0, nullptr), -EINVAL);
  EXPECT_TRUE(error_names("out_attachment"));
  EXPECT_EQ(xbuf_attach(c_, b, 42, XBUF_ATTACH_PINNED, 0, &a), -EINVAL) << "no GPU 42";
  EXPECT_EQ(a, 5u);
  a = attach(b);
  EXPECT_EQ(xbuf_map(c_, a, XBUF_DEFAULT, nullptr), -EINVAL);
  EXPECT_TRUE(error_names("xbuf_map"));
  xbuf_mapping m{};
  EXPECT_EQ(xbuf_map(c_, a, -5, &m), -EINVAL);
  EXPECT_TRUE(error_names("timeout_ms"));
  EXPECT_EQ(xbuf_map(c_, a, 0, &m), 0) << last();
  EXPECT_EQ(xbuf_export(c_, b, nullptr), -EINVAL);
  EXPECT_EQ(xbuf_export_fd(c_, b, nullptr, nullptr, nullptr), -EINVAL);
  EXPECT_TRUE(error_names("out_fd"));
  EXPECT_EQ(xbuf_owner(c_, nullptr), -EINVAL);
  EXPECT_TRUE(error_names("out_owner"));
}

// Every call with a NULL handle: -EINVAL (NULL), naming itself and the handle.
TEST(CAbiNullTest, EveryCallRefusesANullHandle) {
  std::uint64_t u64 = 0;
  std::uint32_t u32 = 0;
  int i = 0;
  void* p = nullptr;
  xbuf_mapping m{};
  xbuf_export_info e{};
  xbuf_validate_counts n{};
  const xbuf_placement host[] = {{XBUF_PLACEMENT_PAGEABLE, -1}};
  struct call {
    const char* name;
    int rc;
  };
  const call calls[] = {
      {"xbuf_owner", xbuf_owner(nullptr, &u32)},
      {"xbuf_alloc_ex", xbuf_alloc_ex(nullptr, 4096, host, 1, 0, nullptr, 0, &u64)},
      {"xbuf_alloc", xbuf_alloc(nullptr, 4096, 0, &u64)},
      {"xbuf_free", xbuf_free(nullptr, 1)},
      {"xbuf_share", xbuf_share(nullptr, 1, 2)},
      {"xbuf_export", xbuf_export(nullptr, 1, &e)},
      {"xbuf_import", xbuf_import(nullptr, 0, &u64, nullptr)},
      {"xbuf_export_fd", xbuf_export_fd(nullptr, 1, &i, nullptr, nullptr)},
      {"xbuf_attach", xbuf_attach(nullptr, 1, -1, XBUF_ATTACH_DYNAMIC, 0, &u64)},
      {"xbuf_detach", xbuf_detach(nullptr, 1)},
      {"xbuf_map", xbuf_map(nullptr, 1, XBUF_DEFAULT, &m)},
      {"xbuf_unmap", xbuf_unmap(nullptr, 1)},
      {"xbuf_begin_use", xbuf_begin_use(nullptr, 1, XBUF_USAGE_READ, XBUF_DEFAULT, &m)},
      {"xbuf_end_use", xbuf_end_use(nullptr, 1, 0)},
      {"xbuf_add_fence", xbuf_add_fence(nullptr, 1, XBUF_USAGE_READ, 0, &u64)},
      {"xbuf_signal_fence", xbuf_signal_fence(nullptr, 1, 0)},
      {"xbuf_wait_fence", xbuf_wait_fence(nullptr, 1, 0, &i)},
      {"xbuf_validate", xbuf_validate(nullptr, &u64, 1, &n)},
      {"xbuf_cpu_begin", xbuf_cpu_begin(nullptr, 1, 0, XBUF_DEFAULT, &p, &u64)},
      {"xbuf_cpu_end", xbuf_cpu_end(nullptr, 1)},
      {"xbuf_set_move_callback", xbuf_set_move_callback(nullptr, nullptr, nullptr)},
      {"xbuf_set_pressure_callback", xbuf_set_pressure_callback(nullptr, nullptr, nullptr)},
      {"xbuf_poll_events", xbuf_poll_events(nullptr, 0)},
  };
  // Each call's message is overwritten by the next: check them one by one.
  for (const call& c : calls) EXPECT_EQ(c.rc, -EINVAL) << c.name;
  EXPECT_EQ(xbuf_alloc(nullptr, 4096, 0, &u64), -EINVAL);
  EXPECT_TRUE(error_names("xbuf_alloc: client is NULL"));
  EXPECT_EQ(xbuf_poll_events(nullptr, 0), -EINVAL);
  EXPECT_TRUE(error_names("xbuf_poll_events: client is NULL"));
  EXPECT_EQ(xbuf_mode(nullptr), nullptr);
  EXPECT_TRUE(error_names("xbuf_mode"));
  EXPECT_EQ(xbuf_stats_json(nullptr), nullptr);
  EXPECT_TRUE(error_names("xbuf_stats_json"));
  xbuf_disconnect(nullptr);  // NULL is fine
}

TEST(CAbiNullTest, ConnectToNoDaemonIsNullWithAMessage) {
  xbuf_client* c = xbuf_connect("/tmp/xbuf-c-abi-test-nobody-listens.sock", "t");
  EXPECT_EQ(c, nullptr);
  EXPECT_TRUE(error_names("xbuf_connect"));
  EXPECT_TRUE(error_names("/tmp/xbuf-c-abi-test-nobody-listens.sock"));
  xbuf_disconnect(c);  // NULL is fine
}

TEST(CAbiTorchTest, TorchShapeRefusesBadSizesAndIgnoresForeignPointers) {
  EXPECT_EQ(xbuf_torch_malloc(0, 0, nullptr), nullptr);
  EXPECT_TRUE(error_names("size 0"));
  EXPECT_EQ(xbuf_torch_malloc(-5, 0, nullptr), nullptr);
  int not_ours = 0;
  xbuf_torch_free(&not_ours, sizeof not_ours, 0, nullptr);  // freeing never fails
  xbuf_torch_free(nullptr, 0, 0, nullptr);
}

TEST(CAbiTorchTest, StatsBeforeAnyMallocIsANamedError) {
  EXPECT_EQ(xbuf_torch_stats_json(), nullptr);
  EXPECT_NE(std::string(xbuf_last_error()).find("no xbuf_torch_malloc has succeeded yet"), std::string::npos)
      << xbuf_last_error();
}

// Each TEST is its own process (gtest_discover_tests), so the torch
// allocator this one makes from the environment is its own.
TEST(CAbiTorchTest, EmbeddedTorchMallocHandsOutWritableMemoryAndFreesIt) {
  ASSERT_EQ(::setenv("XBUF_MODE", "embedded", 1), 0);
  ASSERT_EQ(::setenv("XBUF_BACKEND", "sim", 1), 0);
  void* p = xbuf_torch_malloc(64 * KiB, 0, nullptr);
  ASSERT_NE(p, nullptr) << last();
  std::memset(p, 0xab, 64 * KiB);  // the sim's VRAM is host memory
  void* q = xbuf_torch_malloc(4096, -1, nullptr);
  ASSERT_NE(q, nullptr) << last();
  EXPECT_NE(p, q);
  // A large one gets a buffer of its own; the small ones are blocks of a
  // chunk per device.
  void* big = xbuf_torch_malloc(512 * KiB, 0, nullptr);
  ASSERT_NE(big, nullptr) << last();
  std::memset(big, 0x5a, 512 * KiB);
  // The torch allocator's own stats: one buffer named "torch", two chunks.
  char* json = xbuf_torch_stats_json();
  ASSERT_NE(json, nullptr) << last();
  const std::string text(json);
  xbuf_string_free(json);
  const auto count = [&](const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("\"name\":\"torch\""), 1u) << text;
  EXPECT_EQ(count("\"name\":\"chunk\""), 2u) << text;
  xbuf_torch_free(big, 512 * KiB, 0, nullptr);
  static_cast<unsigned char*>(q)[4095] = 1;
  EXPECT_EQ(static_cast<const unsigned char*>(p)[64 * KiB - 1], 0xab);
  xbuf_torch_free(p, 64 * KiB, 0, nullptr);
  xbuf_torch_free(q, 4096, -1, nullptr);
  xbuf_torch_free(p, 64 * KiB, 0, nullptr);  // freed already: ignored, as a foreign pointer
}

}  // namespace
