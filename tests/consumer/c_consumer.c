/* SPDX-License-Identifier: MIT
 *
 * c_consumer.c - the installed C ABI (client/xbuf_c.h) from a C program.
 *
 * Overview
 *   Built against an installed libxbuf, by CMake (find_package(xbuf)) and
 *   by pkg-config (scripts/check-install.sh), and run without a daemon: it
 *   checks the failure contract a C caller relies on - NULL or a negative
 *   errno, and xbuf_last_error() saying what failed.
 *
 * Rules
 *   - Includes as an installed library's user does: <client/xbuf_c.h> from
 *     <prefix>/include/xbuf, never xbuf's source tree.
 *   - Prints "FAIL: ..." and exits 1 at the first broken expectation, so
 *     the script's log says which.
 */
#include <client/xbuf_c.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures = 0;

static void expect(int ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "FAIL: %s (xbuf_last_error: \"%s\")\n", what, xbuf_last_error());
    failures++;
  }
}

int main(void) {
  /* A socket in a fresh private directory: nothing listens there. */
  char dir[] = "/tmp/xbuf-consumer-XXXXXX";
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  char path[sizeof dir + 32];
  snprintf(path, sizeof path, "%s/no-daemon.sock", dir);

  xbuf_client* c = xbuf_connect(path, "xbuf-consumer");
  expect(c == NULL, "xbuf_connect to a socket nobody listens on returns NULL");
  expect(xbuf_last_error()[0] != '\0', "xbuf_last_error is set after a failed connect");
  expect(strstr(xbuf_last_error(), path) != NULL, "xbuf_last_error names the socket path");
  xbuf_disconnect(c); /* NULL is fine */

  uint64_t buffer = 0;
  expect(xbuf_alloc(NULL, 4096, -1, &buffer) == -EINVAL, "xbuf_alloc(NULL client) is -EINVAL");
  expect(strstr(xbuf_last_error(), "xbuf_alloc") != NULL, "xbuf_last_error names xbuf_alloc");

  rmdir(dir);
  if (failures != 0) return 1;
  printf("c_consumer: ok (%s)\n", path);
  return 0;
}
