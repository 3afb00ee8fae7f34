/* SPDX-License-Identifier: MIT
 *
 * c_header_check.c - client/xbuf_c.h as a C program sees it.
 *
 * Overview
 *   Compiled as C11 without extensions and with warnings as errors
 *   (tests/client/CMakeLists.txt), and linked against libxbuf.so: the
 *   header is valid C on its own (it is included first, before anything
 *   that could hide a missing include), every function it declares
 *   resolves to an exported symbol (each is called once below), and the
 *   basic path works from C - an embedded sim allocator, one write and
 *   one read through a use, the stats text.
 *
 * Rules
 *   - Prints "FAIL: ..." for each broken expectation and exits 1 at the
 *     end if any broke.
 */
#include "client/xbuf_c.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int failures = 0;

static void expect(int ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "FAIL: %s (xbuf_last_error: \"%s\")\n", what, xbuf_last_error());
    failures++;
  }
}

static int moves = 0;
static void on_move(void* user, const xbuf_move_event* e) {
  (void)e;
  *(int*)user += 1;
}

static void on_pressure(void* user, const xbuf_pressure_event* e) {
  (void)user;
  (void)e;
}

/* Every declaration, called once with a NULL handle: -EINVAL (NULL). */
static void null_handle_calls(void) {
  uint64_t u64 = 0;
  uint32_t u32 = 0;
  int i = 0;
  void* p = NULL;
  xbuf_mapping m;
  xbuf_export_info e;
  xbuf_validate_counts n;
  xbuf_placement host = {XBUF_PLACEMENT_PAGEABLE, -1};
  expect(xbuf_mode(NULL) == NULL, "xbuf_mode(NULL)");
  expect(xbuf_owner(NULL, &u32) == -EINVAL, "xbuf_owner(NULL)");
  expect(xbuf_alloc_ex(NULL, 4096, &host, 1, 0, NULL, 0, &u64) == -EINVAL, "xbuf_alloc_ex(NULL)");
  expect(xbuf_alloc(NULL, 4096, -1, &u64) == -EINVAL, "xbuf_alloc(NULL)");
  expect(strstr(xbuf_last_error(), "xbuf_alloc") != NULL, "xbuf_last_error names xbuf_alloc");
  expect(xbuf_free(NULL, 1) == -EINVAL, "xbuf_free(NULL)");
  expect(xbuf_share(NULL, 1, 2) == -EINVAL, "xbuf_share(NULL)");
  expect(xbuf_export(NULL, 1, &e) == -EINVAL, "xbuf_export(NULL)");
  expect(xbuf_release_export(NULL, 1) == -EINVAL, "xbuf_release_export(NULL)");
  expect(xbuf_import(NULL, 0, &u64, NULL) == -EINVAL, "xbuf_import(NULL)");
  expect(xbuf_export_fd(NULL, 1, &i, NULL, NULL) == -EINVAL, "xbuf_export_fd(NULL)");
  expect(xbuf_attach(NULL, 1, -1, XBUF_ATTACH_DYNAMIC, 0, &u64) == -EINVAL, "xbuf_attach(NULL)");
  expect(xbuf_detach(NULL, 1) == -EINVAL, "xbuf_detach(NULL)");
  expect(xbuf_map(NULL, 1, XBUF_DEFAULT, &m) == -EINVAL, "xbuf_map(NULL)");
  expect(xbuf_unmap(NULL, 1) == -EINVAL, "xbuf_unmap(NULL)");
  expect(xbuf_begin_use(NULL, 1, XBUF_USAGE_READ, XBUF_DEFAULT, &m) == -EINVAL, "xbuf_begin_use(NULL)");
  expect(xbuf_end_use(NULL, 1, 0) == -EINVAL, "xbuf_end_use(NULL)");
  expect(xbuf_add_fence(NULL, 1, XBUF_USAGE_READ, 0, &u64) == -EINVAL, "xbuf_add_fence(NULL)");
  expect(xbuf_signal_fence(NULL, 1, 0) == -EINVAL, "xbuf_signal_fence(NULL)");
  expect(xbuf_wait_fence(NULL, 1, 0, &i) == -EINVAL, "xbuf_wait_fence(NULL)");
  expect(xbuf_validate(NULL, &u64, 1, &n) == -EINVAL, "xbuf_validate(NULL)");
  expect(xbuf_cpu_begin(NULL, 1, 0, XBUF_DEFAULT, &p, &u64) == -EINVAL, "xbuf_cpu_begin(NULL)");
  expect(xbuf_cpu_end(NULL, 1) == -EINVAL, "xbuf_cpu_end(NULL)");
  expect(xbuf_stats_json(NULL) == NULL, "xbuf_stats_json(NULL)");
  expect(xbuf_set_move_callback(NULL, on_move, &moves) == -EINVAL, "xbuf_set_move_callback(NULL)");
  expect(xbuf_set_pressure_callback(NULL, on_pressure, NULL) == -EINVAL, "xbuf_set_pressure_callback(NULL)");
  expect(xbuf_poll_events(NULL, 0) == -EINVAL, "xbuf_poll_events(NULL)");
  expect(xbuf_connect("/nonexistent-xbuf-c-header-check/xbuf.sock", "c") == NULL, "xbuf_connect to nothing");
  xbuf_disconnect(NULL);
  xbuf_string_free(NULL);
  expect(xbuf_torch_malloc(0, 0, NULL) == NULL, "xbuf_torch_malloc(0)");
  xbuf_torch_free(NULL, 0, 0, NULL);
}

int main(void) {
  null_handle_calls();

  xbuf_client* c = xbuf_open_embedded("sim", 2, 1u << 20, 4u << 20, 16u << 20, 0);
  expect(c != NULL, "xbuf_open_embedded(\"sim\")");
  if (c == NULL) return 1;
  expect(strcmp(xbuf_mode(c), "embedded") == 0, "xbuf_mode is \"embedded\"");
  expect(xbuf_set_move_callback(c, on_move, &moves) == 0, "xbuf_set_move_callback");

  uint64_t b = 0, a = 0;
  xbuf_mapping m;
  expect(xbuf_alloc(c, 4096, 0, &b) == 0, "xbuf_alloc");
  expect(xbuf_attach(c, b, -1, XBUF_ATTACH_DYNAMIC, 0, &a) == 0, "xbuf_attach");
  if (xbuf_begin_use(c, a, XBUF_USAGE_WRITE, XBUF_DEFAULT, &m) == 0) {
    memcpy(m.data, "from C", 7);
    expect(xbuf_end_use(c, a, 0) == 0, "xbuf_end_use after a write");
  } else {
    expect(0, "xbuf_begin_use for a write");
  }
  if (xbuf_begin_use(c, a, XBUF_USAGE_READ, 1000, &m) == 0) {
    expect(strcmp((const char*)m.data, "from C") == 0, "the bytes written are read back");
    expect(xbuf_end_use(c, a, 0) == 0, "xbuf_end_use after a read");
  } else {
    expect(0, "xbuf_begin_use for a read");
  }

  char* stats = xbuf_stats_json(c);
  expect(stats != NULL && stats[0] == '{', "xbuf_stats_json is an object");
  xbuf_string_free(stats);
  expect(xbuf_free(c, b) == 0, "xbuf_free");
  expect(xbuf_free(c, b) == -ENOENT || xbuf_free(c, b) == -EINVAL, "a double free fails");
  xbuf_disconnect(c);

  if (failures != 0) return 1;
  printf("c_header_check: ok\n");
  return 0;
}
