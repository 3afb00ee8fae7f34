/* SPDX-License-Identifier: MIT
 *
 * dlopen_consumer.c - libxbuf.so.0 loaded the way a framework loads it.
 *
 * Overview
 *   PyTorch's CUDAPluggableAllocator dlopen()s the library by name and
 *   dlsym()s xbuf_torch_malloc / xbuf_torch_free. This program does the
 *   same by the SONAME (found through LD_LIBRARY_PATH), calls malloc with
 *   no daemon running, and expects NULL and a message - not a crash.
 *
 * Rules
 *   - Links nothing of xbuf; only libdl.
 *   - Prints "FAIL: ..." and exits 1 on a broken expectation.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

typedef void* (*torch_malloc_fn)(ssize_t, int, void*);
typedef void (*torch_free_fn)(void*, ssize_t, int, void*);
typedef const char* (*last_error_fn)(void);

int main(void) {
  void* lib = dlopen("libxbuf.so.0", RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "FAIL: dlopen(libxbuf.so.0): %s\n", dlerror());
    return 1;
  }
  /* ISO C has no void* -> function pointer conversion (-Wpedantic says so);
   * assigning through *(void**)& is the form POSIX's dlsym page uses. */
  torch_malloc_fn torch_malloc;
  torch_free_fn torch_free;
  last_error_fn last_error;
  *(void**)(&torch_malloc) = dlsym(lib, "xbuf_torch_malloc");
  *(void**)(&torch_free) = dlsym(lib, "xbuf_torch_free");
  *(void**)(&last_error) = dlsym(lib, "xbuf_last_error");
  if (torch_malloc == NULL || torch_free == NULL || last_error == NULL) {
    fprintf(stderr, "FAIL: dlsym of xbuf_torch_malloc / xbuf_torch_free / xbuf_last_error\n");
    return 1;
  }

  /* No daemon at this socket: malloc must fail cleanly. */
  if (setenv("XBUF_SOCKET", "/nonexistent-xbuf-consumer-dir/xbufd.sock", 1) != 0) {
    perror("setenv");
    return 1;
  }
  void* p = torch_malloc(4096, 0, NULL);
  if (p != NULL) {
    fprintf(stderr, "FAIL: xbuf_torch_malloc without a daemon returned %p\n", p);
    return 1;
  }
  if (strstr(last_error(), "/nonexistent-xbuf-consumer-dir/xbufd.sock") == NULL) {
    fprintf(stderr, "FAIL: xbuf_torch_malloc's error does not name $XBUF_SOCKET: \"%s\"\n", last_error());
    return 1;
  }
  torch_free(NULL, 0, 0, NULL); /* freeing NULL is a no-op */

  printf("dlopen_consumer: ok (malloc without a daemon: %s)\n", last_error());
  dlclose(lib);
  return 0;
}
