/* SPDX-License-Identifier: MIT
 *
 * xbuf_c.h - libxbuf's C ABI (daemon client), for FFI and PyTorch.
 *
 * Overview
 *   A thin C layer over xbuf::client::remote_client. Functions return 0 or a
 *   negative errno (-ENOMEM, -ENOENT, ...); the message of the last failure
 *   on the calling thread is xbuf_last_error().
 *
 *   No exception crosses this ABI: one raised inside a call is stopped there
 *   and becomes a failure like any other (-ENOMEM for lack of memory, -EIO
 *   otherwise; NULL from the functions that return a pointer), with
 *   xbuf_last_error() naming the function.
 *
 *   xbuf_torch_malloc / xbuf_torch_free have the shape PyTorch's
 *   CUDAPluggableAllocator loads (torch.cuda.memory.CUDAPluggableAllocator(
 *   "libxbuf.so", "xbuf_torch_malloc", "xbuf_torch_free")). They use one
 *   process-wide daemon connection (socket from $XBUF_SOCKET, else the
 *   default path) and return a HOST mapping (mmap of the exported fd) of a
 *   buffer allocated with placements {VRAM of `device`, pinned, pageable}.
 *
 * Rules / limits (honest)
 *   - The pointer is a CPU address. It is a device pointer only where the
 *     backend's memory is host memory (the sim backend, host placements).
 *     With the CUDA/HIP backends the exported fd is a memory-manager handle,
 *     not mmap-able VRAM: malloc fails (NULL) there - use the C++ map() path.
 *   - Buffers are allocated no_evict, so the daemon never moves them under
 *     the mapping; they count against the daemon's pinned limit.
 *   - `stream` is ignored: allocation is synchronous with the daemon.
 *   - Thread-safe: the torch entry points serialize on one mutex; an
 *     xbuf_client handle must be used by one thread at a time.
 *   - Only built as a static library (libxbuf.a) so far; PyTorch needs a
 *     shared object - link libxbuf.a into one.
 */
#ifndef XBUF_C_H
#define XBUF_C_H

#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct xbuf_client xbuf_client;

/* NULL socket_path = $XBUF_SOCKET or the default. NULL on failure. */
xbuf_client* xbuf_connect(const char* socket_path, const char* client_name);
/* The daemon releases everything this client held. NULL is fine. */
void xbuf_disconnect(xbuf_client* c);
/* device >= 0: prefer that GPU's VRAM, then pinned, then pageable host;
 * device -1: pageable host memory. */
int xbuf_alloc(xbuf_client* c, uint64_t size, int device, uint64_t* out_buffer);
int xbuf_free(xbuf_client* c, uint64_t buffer);
/* The caller owns *out_fd (close it). */
int xbuf_export_fd(xbuf_client* c, uint64_t buffer, int* out_fd, uint64_t* out_offset, uint64_t* out_size);
/* Message of the calling thread's last failure ("" if none). */
const char* xbuf_last_error(void);

void* xbuf_torch_malloc(ssize_t size, int device, void* stream);
void xbuf_torch_free(void* ptr, ssize_t size, int device, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* XBUF_C_H */
