// SPDX-License-Identifier: MIT
// Behaviour of the memory manager on a real sim backend: placement, eviction,
// attachments, move_notify, delayed free, validate, CPU access, budgets, and
// every kind of bad input.
#include "allocator/memory_manager.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include "tests/common/sim_manager.hpp"

namespace xbuf {
namespace {

using namespace std::chrono_literals;
using test::KiB;
using test::MiB;
using test::request;
using test::sim_manager;
using test::sim_manager_options;

constexpr owner_id alice = 1;
constexpr owner_id bob = 2;

const std::vector<placement> vram0_then_host{placement::vram(0), placement::pageable()};

fence_ptr client_fence() { return fence::create(fence::allocate_context(), 1); }

attach_request pinned_on(int device, bool peer_capable = false) {
  attach_request r;
  r.device = device;
  r.mode = attach_mode::pinned;
  r.peer_capable = peer_capable;
  return r;
}

attach_request dynamic_on(int device, move_notify_fn notify = [](const move_notice&) {},
                          bool peer_capable = false) {
  attach_request r;
  r.device = device;
  r.mode = attach_mode::dynamic;
  r.peer_capable = peer_capable;
  r.move_notify = std::move(notify);
  return r;
}

// Fills vram0 (1 MiB) with four 256 KiB buffers, oldest first.
std::vector<buffer_id> fill_vram0(sim_manager& s, owner_id o = alice) {
  std::vector<buffer_id> ids;
  for (int i = 0; i < 4; ++i) {
    auto id = s.mm->allocate(o, request(256 * KiB, vram0_then_host));
    EXPECT_TRUE(id) << id.err().describe();
    ids.push_back(*id);
  }
  EXPECT_EQ(s.domain("vram0").used, 1 * MiB);
  return ids;
}

TEST(MemoryManagerTest, PlacesInTheFirstPlacementWithRoom) {
  sim_manager s;
  auto a = s.mm->allocate(alice, request(64 * KiB, {placement::vram(1), placement::pinned()}));
  ASSERT_TRUE(a) << a.err().describe();
  EXPECT_EQ(s.where(alice, *a), placement::vram(1));
  auto b = s.mm->allocate(alice, request(64 * KiB, {placement::pinned(), placement::vram(1)}));
  ASSERT_TRUE(b);
  EXPECT_EQ(s.where(alice, *b), placement::pinned());
}

TEST(MemoryManagerTest, FallsBackToTheNextPlacementWhenNothingCanBeEvicted) {
  sim_manager_options o;
  o.pinned_limit = 4 * MiB;
  sim_manager s(o);
  for (int i = 0; i < 4; ++i) {
    auto r = request(256 * KiB, {placement::vram(0)});
    r.no_evict = true;
    ASSERT_TRUE(s.mm->allocate(alice, r));
  }
  auto b = s.mm->allocate(alice, request(256 * KiB, {placement::vram(0), placement::pinned()}));
  ASSERT_TRUE(b) << b.err().describe();
  EXPECT_EQ(s.where(alice, *b), placement::pinned());
}

// A preferred domain too small ever to hold the buffer is passed over, the
// way a full one is: 2 MiB with 1 MiB of VRAM lands in pinned memory (a
// client's chunk_pool asks for 2 MiB chunks on any GPU).
TEST(MemoryManagerTest, PassesOverAPlacementTooSmallForTheBuffer) {
  sim_manager s;  // 1 MiB of VRAM per GPU
  auto b = s.mm->allocate(alice, request(2 * MiB, {placement::vram(0), placement::pinned()}));
  ASSERT_TRUE(b) << b.err().describe();
  EXPECT_EQ(s.where(alice, *b), placement::pinned());
  // Too small everywhere is still the named invalid_argument.
  auto none = s.mm->allocate(alice, request(2 * MiB, {placement::vram(0), placement::vram(1)}));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.code(), errc::invalid_argument);
  EXPECT_NE(none.err().message.find("larger than any allowed domain"), std::string::npos) << none.err().message;
}

// A domain's peak is the most it held since the manager began: it stays
// after the buffers are gone (what an operator sizes --sim-vram or quotas by).
TEST(MemoryManagerTest, DomainPeakIsTheHighWaterMark) {
  sim_manager s;
  auto a = s.mm->allocate(alice, request(256 * KiB, {placement::vram(0)}));
  auto b = s.mm->allocate(alice, request(512 * KiB, {placement::vram(0)}));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(s.domain("vram0").peak_used, 768 * KiB);
  // Their clears done, the frees are immediate (nothing left delayed).
  test::settle(*s.mm, alice, *a);
  test::settle(*s.mm, alice, *b);
  ASSERT_TRUE(s.mm->free(alice, *a));
  ASSERT_TRUE(s.mm->free(alice, *b));
  auto c = s.mm->allocate(alice, request(64 * KiB, {placement::vram(0)}));  // below the peak
  ASSERT_TRUE(c);
  EXPECT_EQ(s.domain("vram0").peak_used, 768 * KiB);
  EXPECT_EQ(s.domain("vram1").peak_used, 0u);
}

TEST(MemoryManagerTest, EvictsTheLeastRecentlyUsedBufferFirst) {
  sim_manager s;
  auto ids = fill_vram0(s);
  // Using buffer 0 makes buffer 1 the least recently used.
  auto att = s.mm->attach(alice, ids[0], dynamic_on(0, [](const move_notice&) {}));
  ASSERT_TRUE(att);
  ASSERT_TRUE(s.mm->map(alice, *att));
  auto e = s.mm->allocate(alice, request(256 * KiB, vram0_then_host));
  ASSERT_TRUE(e) << e.err().describe();
  EXPECT_EQ(s.where(alice, *e), placement::vram(0));
  EXPECT_EQ(s.where(alice, ids[1]), placement::pageable());
  EXPECT_EQ(s.where(alice, ids[0]), placement::vram(0));
  EXPECT_EQ(s.where(alice, ids[2]), placement::vram(0));
  EXPECT_EQ(s.mm->stats().counters.evictions, 1u);
}

TEST(MemoryManagerTest, EvictsIdleBuffersBeforeBusyOnes) {
  sim_manager s;
  auto ids = fill_vram0(s);
  auto busy = client_fence();
  ASSERT_TRUE(s.mm->add_fence(alice, ids[0], busy, fence_usage::read));
  auto e = s.mm->allocate(alice, request(256 * KiB, vram0_then_host));
  ASSERT_TRUE(e) << e.err().describe();
  EXPECT_EQ(s.where(alice, ids[0]), placement::vram(0)) << "the busy LRU head is skipped";
  EXPECT_EQ(s.where(alice, ids[1]), placement::pageable());
  (void)busy->signal();
}

TEST(MemoryManagerTest, BusyVictimIsMovedPipelinedAfterItsFences) {
  sim_manager s;
  auto ids = fill_vram0(s);
  std::vector<fence_ptr> jobs;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    test::fill(*s.mm, alice, ids[i], static_cast<std::uint32_t>(i));
    jobs.push_back(client_fence());
    ASSERT_TRUE(s.mm->add_fence(alice, ids[i], jobs.back(), fence_usage::write));
  }
  // Every victim is busy: the allocation starts a move of the oldest, which
  // cannot copy before the job's fence signals, and waits for it.
  std::thread job_done([&] {
    std::this_thread::sleep_for(20ms);
    (void)jobs[0]->signal();
  });
  auto e = s.mm->allocate(alice, request(256 * KiB, vram0_then_host));
  job_done.join();
  ASSERT_TRUE(e) << e.err().describe();
  EXPECT_EQ(s.where(alice, ids[0]), placement::pageable());
  EXPECT_TRUE(jobs[0]->is_signaled());
  for (std::size_t i = 1; i < jobs.size(); ++i) (void)jobs[i]->signal();
  EXPECT_TRUE(test::holds(*s.mm, alice, ids[0], 0)) << "contents survive a pipelined move";
}

TEST(MemoryManagerTest, AllocationWaitingForABusyVictimCanTimeOut) {
  sim_manager s;
  auto ids = fill_vram0(s);
  std::vector<fence_ptr> jobs;
  for (auto id : ids) {
    jobs.push_back(client_fence());
    ASSERT_TRUE(s.mm->add_fence(alice, id, jobs.back(), fence_usage::read));
  }
  auto r = request(256 * KiB, {placement::vram(0)});
  r.timeout = 20ms;
  auto e = s.mm->allocate(alice, r);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.code(), errc::timed_out) << e.err().describe();
  for (auto& f : jobs) (void)f->signal();
}

TEST(MemoryManagerTest, PinnedBuffersAreNeverEvictedAndOutOfMemoryNamesTheHolders) {
  sim_manager s;
  auto ids = fill_vram0(s, bob);
  for (auto id : ids) {
    ASSERT_TRUE(s.mm->attach(bob, id, pinned_on(0)));
  }
  auto e = s.mm->allocate(alice, request(256 * KiB, {placement::vram(0)}));
  ASSERT_FALSE(e);
  EXPECT_EQ(e.code(), errc::out_of_memory);
  const auto& msg = e.err().message;
  EXPECT_NE(msg.find("vram0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("256 KiB"), std::string::npos) << msg;
  EXPECT_NE(msg.find("owner 2 holds 1 MiB in 4 buffers"), std::string::npos) << msg;
  for (auto id : ids) EXPECT_EQ(s.where(bob, id), placement::vram(0));
  EXPECT_EQ(s.mm->stats().counters.allocation_failures, 1u);
}

TEST(MemoryManagerTest, DynamicImporterIsNotifiedBeforeTheMoveAndRemapsAfter) {
  sim_manager s;
  auto ids = fill_vram0(s);
  std::vector<move_notice> notices;
  auto att = s.mm->attach(alice, ids[0], dynamic_on(0, [&](const move_notice& n) { notices.push_back(n); }));
  ASSERT_TRUE(att);
  auto before = s.mm->map(alice, *att);
  ASSERT_TRUE(before);
  EXPECT_EQ(before->where, placement::vram(0));
  // Touch the others so buffer 0 is the LRU victim.
  for (std::size_t i = 1; i < ids.size(); ++i) test::fill(*s.mm, alice, ids[i], 1);
  ASSERT_TRUE(s.mm->allocate(alice, request(256 * KiB, vram0_then_host)));
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_EQ(notices[0].buffer, ids[0]);
  EXPECT_EQ(notices[0].attachment, *att);
  EXPECT_EQ(notices[0].from, placement::vram(0));
  EXPECT_EQ(notices[0].to, placement::pageable());
  EXPECT_EQ(s.mm->stats().counters.move_notifies, 1u);
  // The importer is a device: pageable memory is out of its reach, so the
  // re-map migrates the buffer to memory it can reach.
  auto after = s.mm->map(alice, *att);
  ASSERT_TRUE(after) << after.err().describe();
  EXPECT_GT(after->generation, before->generation);
  EXPECT_NE(after->where, placement::pageable());
  ASSERT_TRUE(after->wait_for);
  EXPECT_TRUE(after->wait_for->wait(10s));
}

TEST(MemoryManagerTest, OldMemoryStaysUntilEveryFenceSignaledAfterMove) {
  sim_manager s;
  auto ids = fill_vram0(s);
  auto reader = client_fence();
  ASSERT_TRUE(s.mm->add_fence(alice, ids[1], reader, fence_usage::read));
  bool notified = false;
  ASSERT_TRUE(s.mm->attach(alice, ids[1], dynamic_on(0, [&](const move_notice&) { notified = true; })));
  // Every victim but buffer 1 is pinned, so buffer 1 (busy) must move.
  for (auto id : {ids[0], ids[2], ids[3]}) {
    ASSERT_TRUE(s.mm->attach(alice, id, pinned_on(0)));
  }
  auto r = request(256 * KiB, {placement::vram(0)});
  r.timeout = 20ms;
  auto e = s.mm->allocate(alice, r);
  ASSERT_FALSE(e) << "the move waits for the reader, so vram0 stays full for now";
  EXPECT_EQ(e.code(), errc::timed_out);
  EXPECT_TRUE(notified);
  EXPECT_EQ(s.where(alice, ids[1]), placement::pageable());
  EXPECT_EQ(s.domain("vram0").delayed_free_bytes, 256 * KiB)
      << "the old mapping stays valid while the reader runs";
  (void)reader->signal();
  r.timeout = 10s;
  auto later = s.mm->allocate(alice, r);
  ASSERT_TRUE(later) << later.err().describe();
  EXPECT_EQ(s.where(alice, *later), placement::vram(0));
  EXPECT_EQ(s.domain("vram0").delayed_free_bytes, 0u);
  EXPECT_GE(s.mm->stats().counters.delayed_frees, 1u);
}

TEST(MemoryManagerTest, FreeingABusyBufferDelaysTheFree) {
  sim_manager s;
  auto a = s.mm->allocate(alice, request(128 * KiB, {placement::vram(0)}));
  ASSERT_TRUE(a);
  test::settle(*s.mm, alice, *a);  // its clear is done: only the job holds the free back
  auto job = client_fence();
  ASSERT_TRUE(s.mm->add_fence(alice, *a, job, fence_usage::write));
  ASSERT_TRUE(s.mm->free(alice, *a));
  EXPECT_EQ(s.domain("vram0").used, 128 * KiB);
  EXPECT_EQ(s.domain("vram0").delayed_free_bytes, 128 * KiB);
  EXPECT_EQ(s.mm->info(alice, *a).code(), errc::not_found);
  (void)job->signal();
  EXPECT_EQ(s.domain("vram0").used, 0u);
}

TEST(MemoryManagerTest, ValidatePromotesEvictedBuffersAtMostOncePerInterval) {
  sim_manager_options o;
  o.promote_interval = 50ms;
  sim_manager s(o);
  auto ids = fill_vram0(s);
  std::this_thread::sleep_for(60ms);
  ASSERT_TRUE(s.mm->allocate(bob, request(256 * KiB, vram0_then_host)));
  ASSERT_EQ(s.where(alice, ids[0]), placement::pageable());
  auto v = s.mm->validate(alice, std::vector<buffer_id>{ids[0]});
  ASSERT_TRUE(v) << v.err().describe();
  EXPECT_EQ(v->promoted, 1u);
  EXPECT_EQ(s.where(alice, ids[0]), placement::vram(0));
  // Push it out again at once: four more buffers empty vram0.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(s.mm->allocate(bob, request(256 * KiB, vram0_then_host)));
  ASSERT_EQ(s.where(alice, ids[0]), placement::pageable());
  auto ping = s.mm->validate(alice, std::vector<buffer_id>{ids[0]});
  ASSERT_TRUE(ping);
  EXPECT_EQ(ping->deferred, 1u) << "no second promotion inside the interval";
  EXPECT_EQ(s.where(alice, ids[0]), placement::pageable());
  std::this_thread::sleep_for(60ms);
  auto pong = s.mm->validate(alice, std::vector<buffer_id>{ids[0]});
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->promoted, 1u);
  EXPECT_EQ(s.mm->stats().counters.promotions, 2u);
  EXPECT_TRUE(s.mm->validate(alice, std::vector<buffer_id>{}));
}

TEST(MemoryManagerTest, ValidateDefersAPromotionInsideTheInterval) {
  sim_manager_options o;
  o.promote_interval = 10s;
  sim_manager s(o);
  auto ids = fill_vram0(s);
  ASSERT_TRUE(s.mm->allocate(bob, request(256 * KiB, vram0_then_host)));
  ASSERT_EQ(s.where(alice, ids[0]), placement::pageable());
  auto v = s.mm->validate(alice, std::vector<buffer_id>{ids[0]});
  ASSERT_TRUE(v);
  EXPECT_EQ(v->deferred, 1u);
  EXPECT_EQ(s.where(alice, ids[0]), placement::pageable());
  EXPECT_EQ(s.mm->stats().counters.promotions_deferred, 1u);
}

TEST(MemoryManagerTest, ContentsSurviveEveryMoveBitForBit) {
  sim_manager s;
  auto a = s.mm->allocate(alice, request(200 * KiB, {placement::vram(0), placement::vram(1),
                                                     placement::pinned(), placement::pageable()}));
  ASSERT_TRUE(a);
  test::fill(*s.mm, alice, *a, 1234);
  // Make it move around: other buffers push it out, validate pulls it back.
  for (int round = 0; round < 10; ++round) {
    auto big = s.mm->allocate(bob, request(1 * MiB, {placement::vram(0)}));
    ASSERT_TRUE(big) << big.err().describe();
    ASSERT_TRUE(s.mm->free(bob, *big));
    ASSERT_TRUE(s.mm->validate(alice, std::vector<buffer_id>{*a}));
  }
  EXPECT_GE(s.mm->stats().counters.moves, 10u);
  EXPECT_TRUE(test::holds(*s.mm, alice, *a, 1234));
}

TEST(MemoryManagerTest, FailedCopiesAreRetriedAndContentsSurvive) {
  sim_manager s;
  auto ids = fill_vram0(s);
  test::fill(*s.mm, alice, ids[0], 77);
  for (std::size_t i = 1; i < ids.size(); ++i) test::fill(*s.mm, alice, ids[i], 1);
  ASSERT_TRUE(s.sim->fail_next_copies(0, 2));
  ASSERT_TRUE(s.mm->allocate(alice, request(256 * KiB, vram0_then_host)));
  EXPECT_TRUE(test::holds(*s.mm, alice, ids[0], 77));
  EXPECT_EQ(s.mm->stats().counters.failed_moves, 0u);
}

TEST(MemoryManagerTest, AMoveWhoseEveryCopyFailsReportsTheContentsLost) {
  sim_manager_options o;
  o.move_retries = 1;
  sim_manager s(o);
  auto ids = fill_vram0(s);
  for (std::size_t i = 1; i < ids.size(); ++i) test::fill(*s.mm, alice, ids[i], 1);
  ASSERT_TRUE(s.sim->fail_next_copies(0, 2));
  // The allocation waited for the move fence; by then the loss is recorded.
  ASSERT_TRUE(s.mm->allocate(alice, request(256 * KiB, vram0_then_host)));
  auto again = s.mm->begin_cpu_access(alice, ids[0], cpu_access_mode::read);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.code(), errc::device_lost) << again.err().describe();
  EXPECT_EQ(s.mm->stats().counters.failed_moves, 1u);
  auto info = s.mm->info(alice, ids[0]);
  ASSERT_TRUE(info);
  EXPECT_TRUE(info->lost);
}

TEST(MemoryManagerTest, PeerCapableImporterGetsAPeerAddressWhenThePolicyAllows) {
  sim_manager_options o;
  o.peer_policy = [](int importer, int exporter) {
    return peer_decision{importer == 1 && exporter == 0, "test topology: only 1 -> 0 is bus_addr"};
  };
  sim_manager s(o);
  auto a = s.mm->allocate(alice, request(64 * KiB, {placement::vram(0), placement::pinned()}));
  ASSERT_TRUE(a);
  auto att = s.mm->attach(alice, *a, dynamic_on(1, [](const move_notice&) {}, true));
  ASSERT_TRUE(att);
  auto m = s.mm->map(alice, *att);
  ASSERT_TRUE(m) << m.err().describe();
  EXPECT_TRUE(m->peer);
  EXPECT_EQ(m->where, placement::vram(0));
  EXPECT_NE(m->reason.find("bus_addr"), std::string::npos) << m->reason;
}

TEST(MemoryManagerTest, ImporterThatCannotReachThePeerGetsPinnedHostMemory) {
  sim_manager_options o;
  o.peer_policy = [](int, int) { return peer_decision{false, "not_supported: different host bridges"}; };
  sim_manager s(o);
  auto a = s.mm->allocate(alice, request(64 * KiB, {placement::vram(0), placement::pageable()}));
  ASSERT_TRUE(a);
  test::fill(*s.mm, alice, *a, 5);
  auto att = s.mm->attach(alice, *a, dynamic_on(1, [](const move_notice&) {}, true));
  ASSERT_TRUE(att);
  auto m = s.mm->map(alice, *att);
  ASSERT_TRUE(m) << m.err().describe();
  EXPECT_FALSE(m->peer);
  EXPECT_EQ(m->where, placement::pinned()) << "never hand out an address the importer cannot reach";
  EXPECT_TRUE(test::holds(*s.mm, alice, *a, 5));
}

TEST(MemoryManagerTest, ImporterWithoutPeerSupportNeverGetsAnotherDevicesVram) {
  sim_manager_options o;
  o.peer_policy = [](int, int) { return peer_decision{true, "allowed"}; };
  sim_manager s(o);
  auto a = s.mm->allocate(alice, request(64 * KiB, {placement::vram(0), placement::vram(1)}));
  ASSERT_TRUE(a);
  auto att = s.mm->attach(alice, *a, dynamic_on(1, [](const move_notice&) {}, false));
  ASSERT_TRUE(att);
  auto m = s.mm->map(alice, *att);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->where, placement::vram(1)) << "moved to the importer's own VRAM";
  EXPECT_FALSE(m->peer);
}

TEST(MemoryManagerTest, PinnedAttachmentMovesTheBufferWithinReachFirst) {
  sim_manager s;
  auto a = s.mm->allocate(alice, request(64 * KiB, {placement::pageable(), placement::pinned()}));
  ASSERT_TRUE(a);
  ASSERT_EQ(s.where(alice, *a), placement::pageable());
  ASSERT_TRUE(s.mm->attach(alice, *a, pinned_on(0)));
  EXPECT_EQ(s.where(alice, *a), placement::pinned());
  EXPECT_EQ(s.mm->stats().pinned_bytes, 64 * KiB);
  auto other = s.mm->attach(alice, *a, pinned_on(1));
  ASSERT_TRUE(other) << "pinned host memory reaches every device";
  EXPECT_EQ(s.mm->stats().pinned_bytes, 64 * KiB) << "pinned bytes count once per buffer";
}

TEST(MemoryManagerTest, PinnedBufferCannotBeMovedForAnImporterOutOfReach) {
  sim_manager_options o;
  o.peer_policy = [](int, int) { return peer_decision{false, "not_supported"}; };
  sim_manager s(o);
  auto a = s.mm->allocate(alice, request(64 * KiB, {placement::vram(0), placement::pinned()}));
  ASSERT_TRUE(a);
  ASSERT_TRUE(s.mm->attach(alice, *a, pinned_on(0)));
  auto b = s.mm->attach(alice, *a, pinned_on(1, true));
  ASSERT_FALSE(b);
  EXPECT_EQ(b.code(), errc::unsupported);
  EXPECT_NE(b.err().message.find("pinned in vram0"), std::string::npos) << b.err().message;
}

TEST(MemoryManagerTest, CpuReadWaitsForWritersAndWriteWaitsForReaders) {
  sim_manager s;
  auto a = s.mm->allocate(alice, request(64 * KiB, {placement::pinned()}));
  ASSERT_TRUE(a);
  auto reader = client_fence();
  ASSERT_TRUE(s.mm->add_fence(alice, *a, reader, fence_usage::read));
  auto r = s.mm->begin_cpu_access(alice, *a, cpu_access_mode::read, 0s);
  ASSERT_TRUE(r) << "a reader does not wait for other readers";
  ASSERT_TRUE(s.mm->end_cpu_access(alice, *a));
  auto w = s.mm->begin_cpu_access(alice, *a, cpu_access_mode::write, 10ms);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.code(), errc::timed_out);
  EXPECT_EQ(s.mm->end_cpu_access(alice, *a).code(), errc::bad_state)
      << "a failed begin leaves no access open";
  (void)reader->signal();
  auto writer = client_fence();
  ASSERT_TRUE(s.mm->add_fence(alice, *a, writer, fence_usage::write));
  cancel_token cancel;
  cancel.cancel();
  auto r2 = s.mm->begin_cpu_access(alice, *a, cpu_access_mode::read, wait_forever, &cancel);
  EXPECT_EQ(r2.code(), errc::cancelled) << "a reader waits for writers";
  (void)writer->signal();
  EXPECT_TRUE(s.mm->begin_cpu_access(alice, *a, cpu_access_mode::write, 0s));
  EXPECT_TRUE(s.mm->end_cpu_access(alice, *a));
}

TEST(MemoryManagerTest, OwnerQuotaIsEnforced) {
  sim_manager s;
  s.mm->set_quota(alice, 512 * KiB);
  ASSERT_TRUE(s.mm->allocate(alice, request(256 * KiB, {placement::pageable()})));
  ASSERT_TRUE(s.mm->allocate(alice, request(256 * KiB, {placement::pageable()})));
  auto e = s.mm->allocate(alice, request(4 * KiB, {placement::pageable()}));
  ASSERT_FALSE(e);
  EXPECT_EQ(e.code(), errc::quota_exceeded);
  EXPECT_NE(e.err().message.find("owner quota 512 KiB"), std::string::npos) << e.err().message;
  EXPECT_TRUE(s.mm->allocate(bob, request(4 * KiB, {placement::pageable()}))) << "quotas are per owner";
}

TEST(MemoryManagerTest, PinnedLimitIsEnforced) {
  sim_manager_options o;
  o.pinned_limit = 512 * KiB;
  sim_manager s(o);
  std::vector<buffer_id> ids;
  for (int i = 0; i < 3; ++i) {
    auto id = s.mm->allocate(alice, request(256 * KiB, {placement::pinned()}));
    ASSERT_TRUE(id);
    ids.push_back(*id);
  }
  ASSERT_TRUE(s.mm->attach(alice, ids[0], pinned_on(0)));
  ASSERT_TRUE(s.mm->attach(alice, ids[1], pinned_on(0)));
  auto third = s.mm->attach(alice, ids[2], pinned_on(0));
  ASSERT_FALSE(third);
  EXPECT_EQ(third.code(), errc::quota_exceeded);
  EXPECT_NE(third.err().message.find("pinned limit 512 KiB"), std::string::npos) << third.err().message;
}

TEST(MemoryManagerTest, FreeWhileAttachedKeepsTheBufferForItsImporter) {
  sim_manager s;
  auto a = s.mm->allocate(alice, request(64 * KiB, {placement::pinned()}));
  ASSERT_TRUE(a);
  test::fill(*s.mm, alice, *a, 9);
  EXPECT_EQ(s.mm->attach(bob, *a, pinned_on(0)).code(), errc::not_found)
      << "not shared yet";
  ASSERT_TRUE(s.mm->share(alice, *a, bob));
  auto att = s.mm->attach(bob, *a, pinned_on(0));
  ASSERT_TRUE(att);
  ASSERT_TRUE(s.mm->free(alice, *a));
  EXPECT_EQ(s.mm->free(alice, *a).code(), errc::bad_state);
  EXPECT_TRUE(s.mm->map(bob, *att)) << "the importer still has it";
  EXPECT_EQ(s.domain("pinned").used, 64 * KiB);
  ASSERT_TRUE(s.mm->detach(bob, *att));
  EXPECT_EQ(s.domain("pinned").used, 0u);
  EXPECT_EQ(s.mm->stats().pinned_bytes, 0u);
}

TEST(MemoryManagerTest, ReleasingAnOwnerSignalsItsFencesAndFreesItsBuffers) {
  sim_manager s;
  auto a = s.mm->allocate(alice, request(64 * KiB, {placement::vram(0)}));
  auto b = s.mm->allocate(bob, request(64 * KiB, {placement::vram(0)}));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(s.mm->share(bob, *b, alice));
  auto att = s.mm->attach(alice, *b, dynamic_on(1, [](const move_notice&) {}));
  ASSERT_TRUE(att);
  auto job = client_fence();
  ASSERT_TRUE(s.mm->add_fence(alice, *b, job, fence_usage::read));
  EXPECT_EQ(s.mm->release_owner(alice), 1u);
  EXPECT_TRUE(job->is_signaled());
  EXPECT_EQ(job->error(), -ECONNRESET);
  EXPECT_EQ(s.mm->info(alice, *a).code(), errc::not_found);
  auto bi = s.mm->info(bob, *b);
  ASSERT_TRUE(bi) << "bob's buffer is untouched";
  EXPECT_EQ(bi->attachments, 0u);
  EXPECT_EQ(s.mm->detach(alice, *att).code(), errc::not_found);
}

TEST(MemoryManagerTest, ClientFenceWithADeadlineCannotStallEvictionForever) {
  sim_manager s;
  auto ids = fill_vram0(s);
  std::vector<fence_ptr> jobs;
  for (auto id : ids) {
    jobs.push_back(client_fence());
    ASSERT_TRUE(s.mm->add_fence(alice, id, jobs.back(), fence_usage::read,
                                fence_clock::now() + 20ms));
  }
  auto e = s.mm->allocate(bob, request(256 * KiB, {placement::vram(0)}));
  ASSERT_TRUE(e) << e.err().describe();
  EXPECT_EQ(jobs[0]->error(), -ETIMEDOUT);
}

TEST(MemoryManagerTest, ExportGivesAnFdOfTheBuffersMemory) {
  sim_manager s;
  auto a = s.mm->allocate(alice, request(64 * KiB, {placement::pinned()}));
  ASSERT_TRUE(a);
  auto e = s.mm->export_fd(alice, *a);
  ASSERT_TRUE(e) << e.err().describe();
  EXPECT_GE(e->fd, 0);
  EXPECT_EQ(e->size, 64 * KiB);
  ::close(e->fd);
  EXPECT_EQ(s.mm->export_fd(bob, *a).code(), errc::not_found);
}

TEST(MemoryManagerTest, StatsReportDomainsOwnersAndCounters) {
  sim_manager s;
  ASSERT_TRUE(s.mm->allocate(alice, request(100 * KiB, {placement::vram(0)})));
  auto st = s.mm->stats();
  ASSERT_EQ(st.domains.size(), 4u);  // vram0, vram1, pinned, pageable
  EXPECT_EQ(st.domains[0].name, "vram0");
  EXPECT_EQ(st.domains[0].capacity, 1 * MiB);
  EXPECT_EQ(st.domains[0].used, 128 * KiB) << "buddy blocks are powers of two";
  EXPECT_EQ(st.domains[0].buffers, 1u);
  ASSERT_EQ(st.owners.size(), 1u);
  EXPECT_EQ(st.owners[0].bytes, 100 * KiB);
  EXPECT_EQ(st.counters.allocations, 1u);
  EXPECT_EQ(s.mm->buffers().size(), 1u);
}

// ------------------------------------------------------------- bad input

TEST(MemoryManagerBadInputTest, SizesAlignmentsAndPlacements) {
  sim_manager s;
  EXPECT_EQ(s.mm->allocate(alice, request(0, {placement::vram(0)})).code(), errc::invalid_argument);
  auto absurd = s.mm->allocate(alice, request(1ull << 50, {placement::vram(0), placement::pinned()}));
  ASSERT_FALSE(absurd);
  EXPECT_EQ(absurd.code(), errc::invalid_argument);
  EXPECT_NE(absurd.err().message.find("larger than any allowed domain"), std::string::npos)
      << absurd.err().message;
  auto bad_align = request(4 * KiB, {placement::vram(0)});
  bad_align.alignment = 3000;
  EXPECT_EQ(s.mm->allocate(alice, bad_align).code(), errc::invalid_argument);
  EXPECT_EQ(s.mm->allocate(alice, request(4 * KiB, {})).code(), errc::invalid_argument);
  auto nowhere = s.mm->allocate(alice, request(4 * KiB, {placement::vram(7)}));
  ASSERT_FALSE(nowhere);
  EXPECT_NE(nowhere.err().message.find("vram7"), std::string::npos) << nowhere.err().message;
}

TEST(MemoryManagerBadInputTest, UnknownAndForeignIdsAndDoubleFree) {
  sim_manager s;
  auto a = s.mm->allocate(alice, request(4 * KiB, {placement::pageable()}));
  ASSERT_TRUE(a);
  auto foreign = s.mm->free(bob, *a);
  EXPECT_EQ(foreign.code(), errc::not_found) << "another owner's id reads as unknown";
  EXPECT_NE(foreign.err().message.find("buffer " + std::to_string(*a)), std::string::npos);
  EXPECT_EQ(s.mm->info(bob, *a).code(), errc::not_found);
  EXPECT_EQ(s.mm->free(alice, 999999).code(), errc::not_found);
  ASSERT_TRUE(s.mm->free(alice, *a));
  EXPECT_EQ(s.mm->free(alice, *a).code(), errc::not_found) << "double free is reported";
  EXPECT_EQ(s.mm->validate(alice, std::vector<buffer_id>{*a}).code(), errc::not_found);
}

TEST(MemoryManagerBadInputTest, AttachmentMisuse) {
  sim_manager s;
  auto a = s.mm->allocate(alice, request(4 * KiB, {placement::pinned()}));
  ASSERT_TRUE(a);
  EXPECT_EQ(s.mm->map(alice, 4242).code(), errc::not_found) << "map without attach";
  EXPECT_EQ(s.mm->attach(alice, *a, pinned_on(9)).code(), errc::invalid_argument);
  EXPECT_EQ(s.mm->attach(alice, *a, dynamic_on(0, nullptr)).code(),
            errc::invalid_argument)
      << "dynamic without move_notify";
  auto att = s.mm->attach(alice, *a, pinned_on(0));
  ASSERT_TRUE(att);
  EXPECT_EQ(s.mm->unmap(alice, *att).code(), errc::bad_state) << "not mapped";
  EXPECT_EQ(s.mm->map(bob, *att).code(), errc::not_found) << "another owner's attachment";
  ASSERT_TRUE(s.mm->detach(alice, *att));
  auto twice = s.mm->detach(alice, *att);
  EXPECT_EQ(twice.code(), errc::not_found) << "detach twice";
  EXPECT_NE(twice.err().message.find("attachment " + std::to_string(*att)), std::string::npos);
  EXPECT_EQ(s.mm->map(alice, *att).code(), errc::not_found) << "map after detach";
}

// ---------- tenancy: memory reaches a new owner cleared ----------

TEST(MemoryManagerTenancyTest, ReusedVramNeverShowsThePreviousOwnersBytes) {
  sim_manager s;
  // Alice fills all of vram0 with her bytes, then frees it.
  std::vector<buffer_id> hers;
  for (int i = 0; i < 4; ++i) {
    auto a = s.mm->allocate(alice, request(256 * KiB, {placement::vram(0)}));
    ASSERT_TRUE(a) << a.err().describe();
    test::fill(*s.mm, alice, *a, 100 + static_cast<std::uint32_t>(i));
    hers.push_back(*a);
  }
  for (auto id : hers) ASSERT_TRUE(s.mm->free(alice, id));
  const auto before = s.mm->stats().counters;
  // Bob's buffers get the same ranges: every byte he can read is zero.
  for (int i = 0; i < 4; ++i) {
    auto b = s.mm->allocate(bob, request(256 * KiB, {placement::vram(0)}));
    ASSERT_TRUE(b) << b.err().describe();
    auto m = s.mm->begin_cpu_access(bob, *b, cpu_access_mode::read);
    ASSERT_TRUE(m) << m.err().describe();
    const auto* p = static_cast<const unsigned char*>(m->data);
    std::size_t nonzero = 0;
    for (std::uint64_t k = 0; k < m->size; ++k) nonzero += p[k] != 0;
    EXPECT_EQ(nonzero, 0u) << "bob's buffer " << i << " holds alice's bytes";
    ASSERT_TRUE(s.mm->end_cpu_access(bob, *b));
  }
  const auto after = s.mm->stats().counters;
  EXPECT_EQ(after.clears - before.clears, 4u);
  EXPECT_EQ(after.bytes_cleared - before.bytes_cleared, 1 * MiB);
}

TEST(MemoryManagerTenancyTest, AClearThatCannotRunFailsTheAllocationAndRefundsIt) {
  sim_manager s;
  ASSERT_TRUE(s.sim->reset_device(0, sim_reset_mode::lose));
  auto a = s.mm->allocate(alice, request(64 * KiB, {placement::vram(0)}));
  ASSERT_FALSE(a);
  EXPECT_EQ(a.code(), errc::device_lost) << a.err().describe();
  EXPECT_NE(a.err().message.find("clearing 64 KiB of vram0"), std::string::npos) << a.err().message;
  const auto st = s.mm->stats();
  EXPECT_EQ(s.domain("vram0").used, 0u) << "the range went back";
  for (const auto& o : st.owners) EXPECT_EQ(o.bytes, 0u) << "owner " << o.owner << " still charged";
}

// The attack run's two critical findings, on the sim's VRAM arena.
struct mapped_fd {
  void* base = MAP_FAILED;
  std::size_t length = 0;
  explicit mapped_fd(const exported_memory& e) {
    struct stat st{};
    if (::fstat(e.fd, &st) == 0) length = static_cast<std::size_t>(st.st_size);
    base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, e.fd, 0);
  }
  ~mapped_fd() {
    if (base != MAP_FAILED) ::munmap(base, length);
  }
  unsigned char* at(std::size_t off) const { return static_cast<unsigned char*>(base) + off; }
};

TEST(MemoryManagerTenancyTest, AnExportedFdReachesOnlyItsOwnBuffer) {
  sim_manager s;
  auto hers = s.mm->allocate(alice, request(64 * KiB, {placement::vram(0)}));
  ASSERT_TRUE(hers);
  test::fill(*s.mm, alice, *hers, 11);
  auto his = s.mm->allocate(bob, request(4 * KiB, {placement::vram(0)}));
  ASSERT_TRUE(his);
  auto e = s.mm->export_fd(bob, *his);
  ASSERT_TRUE(e) << e.err().describe();
  mapped_fd m(*e);
  ASSERT_NE(m.base, MAP_FAILED);
  EXPECT_EQ(m.length, 4 * KiB) << "the fd must hold bob's 4 KiB, not the whole vram0 arena";
  EXPECT_EQ(e->offset, 0u);
  std::memset(m.at(0), 0xEE, m.length);  // bob writes everything his fd reaches
  EXPECT_TRUE(test::holds(*s.mm, alice, *hers, 11)) << "bob's fd wrote into alice's buffer";
  // And what bob writes through the fd is his buffer's content.
  auto view = s.mm->begin_cpu_access(bob, *his, cpu_access_mode::read);
  ASSERT_TRUE(view);
  EXPECT_EQ(static_cast<const unsigned char*>(view->data)[100], 0xEE);
  ASSERT_TRUE(s.mm->end_cpu_access(bob, *his));
  ::close(e->fd);
}

TEST(MemoryManagerTenancyTest, MemoryBehindAnOldFdIsNeverAnotherOwnersAfterFree) {
  sim_manager s;
  auto c = s.mm->allocate(alice, request(256 * KiB, {placement::vram(1)}));
  ASSERT_TRUE(c);
  auto e = s.mm->export_fd(alice, *c);
  ASSERT_TRUE(e) << e.err().describe();
  mapped_fd old(*e);
  ASSERT_NE(old.base, MAP_FAILED);
  ASSERT_TRUE(s.mm->free(alice, *c));  // alice keeps the fd and its mapping
  // Bob fills vram1 completely: one of his buffers gets alice's old range.
  std::vector<buffer_id> his;
  for (int i = 0; i < 4; ++i) {
    auto b = s.mm->allocate(bob, request(256 * KiB, {placement::vram(1)}));
    ASSERT_TRUE(b) << b.err().describe();
    test::fill(*s.mm, bob, *b, 50 + static_cast<std::uint32_t>(i));
    his.push_back(*b);
  }
  std::size_t seen = 0;
  for (std::size_t k = 0; k < old.length; ++k) seen += *old.at(k) != 0;
  EXPECT_EQ(seen, 0u) << "alice's old fd shows bob's bytes";
  std::memset(old.at(0), 0x77, old.length);  // and writes through it reach nobody
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(test::holds(*s.mm, bob, his[static_cast<std::size_t>(i)], 50 + static_cast<std::uint32_t>(i)))
        << "alice's old fd wrote into bob's buffer " << i;
  }
  ::close(e->fd);
}

// Before: free() destroyed an exported buffer at once: its bytes left
// every account while the fd's holder still reached its pages.
TEST(MemoryManagerTenancyTest, AnExportedBufferFreedByItsOwnerStaysChargedUntilReleased) {
  sim_manager s;
  auto c = s.mm->allocate(alice, request(256 * KiB, {placement::vram(1)}));
  ASSERT_TRUE(c);
  auto e = s.mm->export_fd(alice, *c);
  ASSERT_TRUE(e) << e.err().describe();
  ::close(e->fd);  // what she passed on, the daemon cannot see
  ASSERT_TRUE(s.mm->free(alice, *c));
  auto st = s.mm->stats();
  const auto& vram1 = st.domains[1];
  ASSERT_EQ(vram1.name, "vram1");
  EXPECT_EQ(vram1.used, 256 * KiB) << "held by its export, the memory is not free";
  EXPECT_EQ(vram1.exported_bytes, 256 * KiB);
  auto row = std::find_if(st.owners.begin(), st.owners.end(), [](const owner_stats& o) { return o.owner == alice; });
  ASSERT_NE(row, st.owners.end());
  EXPECT_EQ(row->bytes, 0u) << "freed: no longer hers to use";
  EXPECT_EQ(row->freed_exported_bytes, 256 * KiB) << "but still charged to her";
  EXPECT_EQ(s.mm->release_export(bob, *c).code(), errc::not_found) << "bob holds no export of it";
  ASSERT_TRUE(s.mm->release_export(alice, *c));
  EXPECT_EQ(s.mm->release_export(alice, *c).code(), errc::not_found) << "one release per export";
  st = s.mm->stats();
  EXPECT_EQ(st.domains[1].used, 0u);
  EXPECT_EQ(st.domains[1].exported_bytes, 0u);
}

// The hold counts against the owner's quota in the buffer's domain, so
// export + free + keep the fd is no way around it.
TEST(MemoryManagerTenancyTest, AHeldExportStillCountsAgainstItsOwnersQuota) {
  sim_manager_options o;
  o.domain_quota = 256 * KiB;
  sim_manager s(o);
  auto c = s.mm->allocate(alice, request(256 * KiB, {placement::vram(0)}));
  ASSERT_TRUE(c);
  auto e = s.mm->export_fd(alice, *c);
  ASSERT_TRUE(e);
  ::close(e->fd);
  ASSERT_TRUE(s.mm->free(alice, *c));
  auto more = s.mm->allocate(alice, request(4 * KiB, {placement::vram(0)}));
  ASSERT_FALSE(more);
  EXPECT_EQ(more.code(), errc::quota_exceeded) << more.err().describe();
  ASSERT_TRUE(s.mm->release_export(alice, *c));
  EXPECT_TRUE(s.mm->allocate(alice, request(4 * KiB, {placement::vram(0)})));
}

// A receiver that goes away releases what it held; each export is one hold.
TEST(MemoryManagerTenancyTest, AReceiversDepartureReleasesItsExports) {
  sim_manager s;
  auto c = s.mm->allocate(alice, request(64 * KiB, {placement::pinned()}));
  ASSERT_TRUE(c);
  ASSERT_TRUE(s.mm->share(alice, *c, bob));
  for (int i = 0; i < 3; ++i) {
    auto e = s.mm->export_fd(bob, *c);
    ASSERT_TRUE(e) << e.err().describe();
    ::close(e->fd);
  }
  ASSERT_TRUE(s.mm->free(alice, *c));
  ASSERT_TRUE(s.mm->release_export(bob, *c));
  EXPECT_EQ(s.mm->stats().domains[2].exported_bytes, 64 * KiB) << "two of bob's three exports still held";
  EXPECT_EQ(s.mm->release_owner(bob), 0u) << "bob owned nothing";
  EXPECT_EQ(s.mm->stats().domains[2].used, 0u) << "bob's last holds went with him";
  EXPECT_TRUE(s.mm->buffers().empty());
}

// Per owner: what it holds now, the most it ever held, all it allocated.
TEST(MemoryManagerTest, OwnerStatsKeepThePeakAndTheTotal) {
  sim_manager s;
  auto a = s.mm->allocate(alice, request(64 * KiB, {placement::pinned()}));
  auto b = s.mm->allocate(alice, request(32 * KiB, {placement::pinned()}));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(s.mm->free(alice, *a));
  ASSERT_TRUE(s.mm->allocate(alice, request(16 * KiB, {placement::pinned()})));
  auto st = s.mm->stats();
  auto row = std::find_if(st.owners.begin(), st.owners.end(), [](const owner_stats& o) { return o.owner == alice; });
  ASSERT_NE(row, st.owners.end());
  EXPECT_EQ(row->bytes, 48 * KiB);
  EXPECT_EQ(row->peak_bytes, 96 * KiB);
  EXPECT_EQ(row->total_bytes, 112 * KiB);
}

TEST(MemoryManagerBadInputTest, FencesAndCpuAccessMisuse) {
  sim_manager s;
  auto a = s.mm->allocate(alice, request(4 * KiB, {placement::pinned()}));
  ASSERT_TRUE(a);
  EXPECT_EQ(s.mm->add_fence(alice, *a, nullptr, fence_usage::read).code(), errc::invalid_argument);
  EXPECT_EQ(s.mm->add_fence(bob, *a, client_fence(), fence_usage::read).code(), errc::not_found);
  EXPECT_EQ(s.mm->end_cpu_access(alice, *a).code(), errc::bad_state);
}

TEST(MemoryManagerBadInputTest, CreateRejectsBadConfigurations) {
  EXPECT_EQ(memory_manager::create({}).code(), errc::invalid_argument);
  auto sim = create_sim_backend(make_sim_config(1, 1 * MiB));
  ASSERT_TRUE(sim);
  manager_config c;
  c.device_backend = sim->get();
  c.vram_capacity = {1, 2, 3};
  auto m = memory_manager::create(c);
  ASSERT_FALSE(m);
  EXPECT_NE(m.err().message.find("3 entries for 1 devices"), std::string::npos) << m.err().message;
  c.vram_capacity = {};
  c.min_block = 1000;
  EXPECT_EQ(memory_manager::create(c).code(), errc::invalid_argument);
}

}  // namespace
}  // namespace xbuf
