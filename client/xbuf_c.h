/* SPDX-License-Identifier: MIT
 *
 * xbuf_c.h - libxbuf's C ABI, for C programs, FFI (the Python binding in
 * python/xbuf) and PyTorch.
 *
 * Overview
 *   A C layer over libxbuf's one C++ interface, xbuf::client::allocator
 *   (client/allocator.hpp, which says what each call does; this header says
 *   how it looks from C). An xbuf_client is one allocator, in one of two
 *   modes:
 *
 *     xbuf_client* c = xbuf_connect(NULL, "job");          // xbufd, over its socket
 *     xbuf_client* c = xbuf_open_embedded("sim", 0, 0, 0, 0, XBUF_DEFAULT);  // in-process
 *
 *     uint64_t b, a;
 *     xbuf_mapping m;
 *     xbuf_alloc(c, 1 << 20, 0, &b);                       // VRAM of GPU 0, else host memory
 *     xbuf_attach(c, b, -1, XBUF_ATTACH_DYNAMIC, 0, &a);   // the CPU uses it
 *     xbuf_begin_use(c, a, XBUF_USAGE_WRITE, XBUF_DEFAULT, &m);
 *     memset(m.data, 0, m.size);                           // valid until end_use
 *     xbuf_end_use(c, a, 0);
 *     xbuf_disconnect(c);                                  // frees what it held
 *
 *   Ids (buffer, attachment, fence, owner) are the allocator's; a fence id
 *   means something only on the xbuf_client that added it.
 *
 * Errors
 *   Functions returning int return 0 (or a count where they say so) or a
 *   negative errno: the allocator's error code through xbuf::to_errno
 *   (core/result.hpp: -ENOENT unknown id, -ENOMEM out of memory, -EDQUOT
 *   over a quota, -ETIMEDOUT, -EOPNOTSUPP, -EIO connection gone, -EPROTO,
 *   -EALREADY, -EBUSY, -EPERM, -ENODEV; -EINVAL for invalid arguments and
 *   for calls not valid now - a double end_use, a second begin_use).
 *   Functions returning a pointer return NULL. Either way the calling
 *   thread's xbuf_last_error() then says what failed ("invalid_argument:
 *   xbuf_map: out is NULL", "not_found: xbuf_free: buffer 7: ..."). Out
 *   parameters are written only on success.
 *
 *   An argument that cannot be right - a NULL handle or out pointer, an
 *   unknown placement kind, usage or attach mode - is -EINVAL (NULL)
 *   before anything is asked of the allocator, and the message names the
 *   function and the argument.
 *
 *   No exception crosses this ABI: one raised inside a call is stopped there
 *   and becomes a failure like any other (-ENOMEM for lack of memory, -EIO
 *   otherwise; NULL from the functions that return a pointer), with
 *   xbuf_last_error() naming the function.
 *
 * Rules
 *   - Thread-safe: any thread may call any function on an xbuf_client,
 *     except xbuf_disconnect, which must be the handle's last call. A
 *     daemon client has one connection: calls take turns on it, so a long
 *     wait holds up the handle's other calls (open one per waiting thread).
 *   - Timeouts are milliseconds; XBUF_DEFAULT (-1) where a timeout is an
 *     int means the allocator's default (30 s, allocator.hpp default_wait).
 *   - The move and pressure callbacks run on whichever thread is inside a
 *     call or xbuf_poll_events() of the same handle when the event
 *     arrives. They must not call back into that handle; they may record,
 *     signal, wake.
 *   - Context: every call but xbuf_last_error, xbuf_mode, xbuf_owner and
 *     xbuf_string_free may block (the socket, a wait) and allocates.
 *
 * PyTorch: xbuf_torch_malloc / xbuf_torch_free
 *   They have the shape torch.cuda.memory.CUDAPluggableAllocator loads
 *   ("libxbuf.so.0", "xbuf_torch_malloc", "xbuf_torch_free"). One
 *   process-wide allocator, made on the first malloc that succeeds in
 *   making it: xbufd at $XBUF_SOCKET (else the default path), or, with
 *   $XBUF_MODE=embedded, an embedded allocator (backend $XBUF_BACKEND,
 *   else "auto"; the other settings xbuf_open_embedded's defaults). A
 *   malloc of more than 256 KiB allocates placements {VRAM of `device`,
 *   pinned host, pageable host}, no_evict (never moved, so the pointer
 *   stays right; it counts against the pinned limit), attaches `device`
 *   pinned and maps it; the pointer is the mapping. Smaller ones are blocks
 *   of 2 MiB chunks made that way (client/chunk_pool.hpp, one pool per
 *   device): no daemon round trip each. Idle chunks go back after a while
 *   and at once after a memory_pressure event (events are read from
 *   malloc and free, at most every 10 ms). What the pointer is:
 *     - On the sim backend and for host placements, a HOST mapping of the
 *       buffer's memory (the sim's VRAM is host memory).
 *     - With CUDA/HIP VRAM, a device address of this process: the buffer's
 *       VMM allocation imported into a device range of the caller's own
 *       (cuMemImportFromShareableHandle, cuMemMap, cuMemSetAccess on device
 *       `device` of this process, numbered as xbufd numbers them).
 *   `stream`: malloc's needs nothing (what it hands out is free of every
 *   stream's work); free records an event on free's `stream` (NULL: the
 *   default stream) and gives the memory back only once the stream has
 *   passed it, at a later malloc or free - kernels still queued on the
 *   stream never write memory another stream or tenant got.
 *   free ignores NULL and pointers malloc did not return (freeing never
 *   fails). The two serialize on one mutex.
 */
#ifndef XBUF_C_H
#define XBUF_C_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct xbuf_client xbuf_client;

/* A timeout or setting left to the allocator (see Rules). */
#define XBUF_DEFAULT (-1)

/* Where memory is: xbuf_placement.kind, and the export's kind. The values
 * are core/memory_kind.hpp's. */
#define XBUF_PLACEMENT_VRAM 0     /* a GPU's VRAM; device = the GPU */
#define XBUF_PLACEMENT_PINNED 1   /* page-locked host memory; device ignored */
#define XBUF_PLACEMENT_PAGEABLE 2 /* ordinary host memory; device = NUMA node or -1 */

typedef struct xbuf_placement {
  int kind;   /* XBUF_PLACEMENT_* */
  /* VRAM: the GPU (>= 0). PAGEABLE: the NUMA node, or -1 for "near the GPU
   * that uses it" (the request's first VRAM placement; any node where the
   * machine has one). PINNED: -1. */
  int device;
} xbuf_placement;

/* xbuf_alloc_ex flags. */
#define XBUF_ALLOC_CPU_ACCESS 1u /* will use xbuf_cpu_begin */
#define XBUF_ALLOC_NO_EVICT 2u   /* never moved; counts against the pinned limit */

/* xbuf_attach modes (allocator attach_mode). */
#define XBUF_ATTACH_PINNED 0  /* the buffer stays where the device reaches it */
#define XBUF_ATTACH_DYNAMIC 1 /* it may move; the move callback hears first */

/* Fence usages (core/reservation.hpp fence_usage). */
#define XBUF_USAGE_WRITE 1
#define XBUF_USAGE_READ 2

/* ---- handles -------------------------------------------------------------- */

/* xbufd over its socket. NULL or "" socket_path = $XBUF_SOCKET, else the
 * default path; NULL client_name = "libxbuf-c". Returns NULL on failure
 * (no daemon there, a server of an untrusted uid, a version mismatch).
 * Ownership: the caller owns the handle (xbuf_disconnect). */
xbuf_client* xbuf_connect(const char* socket_path, const char* client_name);

/* The memory manager in this process. backend: "auto" (NULL), "sim",
 * "cuda" or "hip". 0 = the default for each size: sim_devices (sim
 * backend: GPUs, 2), sim_vram (sim: VRAM per GPU, 256 MiB), pinned (pinned
 * host memory and the pinned limit, 64 MiB), pageable (1 GiB).
 * promote_interval_ms: how soon an evicted buffer may be promoted back
 * (XBUF_DEFAULT = 100 ms; 0 = at once). Returns NULL on failure (-EINVAL:
 * unknown backend, sim_devices < 0; -ENODEV: an explicit GPU backend that
 * cannot run here). */
xbuf_client* xbuf_open_embedded(const char* backend, int sim_devices, uint64_t sim_vram, uint64_t pinned,
                                uint64_t pageable, int promote_interval_ms);

/* Ends the handle: everything it held is freed (the daemon does that on
 * disconnect), its mappings unmapped. NULL is fine. */
void xbuf_disconnect(xbuf_client* c);

/* "embedded" or "daemon" (a static string); NULL for a NULL handle. */
const char* xbuf_mode(const xbuf_client* c);

/* Who this handle is to the manager: the id another client passes to
 * xbuf_share. */
int xbuf_owner(const xbuf_client* c, uint32_t* out_owner);

/* ---- buffers -------------------------------------------------------------- */

/* A buffer of `size` bytes in the first of `placements` (in order of
 * preference, 1 to 16 of them) with room, evicting others if it must.
 * flags: XBUF_ALLOC_*. name: shown by stats (NULL = none). alignment: 0 =
 * a page, else a power of two. Errors: -EINVAL (size 0, bad placement,
 * unknown flag), -ENOMEM, -EDQUOT. */
int xbuf_alloc_ex(xbuf_client* c, uint64_t size, const xbuf_placement* placements, size_t n_placements,
                  uint32_t flags, const char* name, uint64_t alignment, uint64_t* out_buffer);

/* The short form: device >= 0 prefers that GPU's VRAM, then pinned, then
 * pageable host memory; device -1 takes pageable host memory. */
int xbuf_alloc(xbuf_client* c, uint64_t size, int device, uint64_t* out_buffer);

/* Frees the buffer and this handle's attachments of it (views unmapped;
 * other clients' attachments keep it alive until they detach). Errors:
 * -ENOENT (unknown, already freed, or another client's), -EINVAL (a use of
 * one of its attachments is begun). */
int xbuf_free(xbuf_client* c, uint64_t buffer);

/* Lets owner `with` (their xbuf_owner) attach and map the buffer too. */
int xbuf_share(xbuf_client* c, uint64_t buffer, uint32_t with);

/* xbuf_advise hints: when the owner uses the buffer next, for eviction. */
#define XBUF_HINT_NONE 0 /* back to its own use history */
#define XBUF_HINT_DONE 1 /* not for a while: evicted first; its next use clears it */
#define XBUF_HINT_KEEP 2 /* evicted last among this owner's buffers (not others') */

/* The owner's eviction hint for its buffer; moves nothing. Errors: -ENOENT
 * (unknown), -EPERM (shared with this client, not its own), -EINVAL (hint). */
int xbuf_advise(xbuf_client* c, uint64_t buffer, int hint);

typedef struct xbuf_export_info {
  int fd;          /* owned by the caller: close it */
  uint64_t offset; /* the buffer's first byte in the fd */
  uint64_t size;
  int kind; /* XBUF_PLACEMENT_* of the memory now */
} xbuf_export_info;

/* A new fd of the buffer's memory, for another process or an mmap. Each
 * export holds the buffer until xbuf_release_export() (or xbuf_close):
 * freed meanwhile, it stays charged to its owner and its memory goes to
 * nobody else. Errors: -EOPNOTSUPP where the memory is not a file
 * (CUDA/HIP VRAM). */
int xbuf_export(xbuf_client* c, uint64_t buffer, xbuf_export_info* out);
/* This client, and everyone it passed the fd on to, is done with one fd
 * xbuf_export() gave it for `buffer`. Errors: -ENOENT (no such export held). */
int xbuf_release_export(xbuf_client* c, uint64_t buffer);
/* The buffer an exported fd reaches - one another client passed on to
 * this one - usable from now on as if shared with this client (attach,
 * map, fences): holding the fd is the right to it. The fd stays the
 * caller's. out_size may be NULL. Errors: -EINVAL (not a memory fd),
 * -ENOENT (not an export of this allocator, or its buffer moved since:
 * export again). */
int xbuf_import(xbuf_client* c, int fd, uint64_t* out_buffer, uint64_t* out_size);
/* The same, the fd and its range only (out_offset and out_size may be
 * NULL). */
int xbuf_export_fd(xbuf_client* c, uint64_t buffer, int* out_fd, uint64_t* out_offset, uint64_t* out_size);

/* ---- attachments and views ------------------------------------------------ */

/* Attaches device `device` (-1 = the CPU) to a buffer of this handle's
 * or shared with it. mode: XBUF_ATTACH_*. peer_capable: the device may
 * reach another GPU's VRAM directly. */
int xbuf_attach(xbuf_client* c, uint64_t buffer, int device, int mode, int peer_capable, uint64_t* out_attachment);
/* Unmaps this process's view too. Errors: -EINVAL while a use is begun. */
int xbuf_detach(xbuf_client* c, uint64_t attachment);

typedef struct xbuf_mapping {
  void* data;            /* valid in this process until unmap/detach/free */
  uint64_t size;         /* the buffer's bytes */
  xbuf_placement where;  /* the domain it is in now */
  int peer;              /* a GPU reaching another GPU's VRAM */
  uint64_t generation;   /* the buffer's move count when mapped */
} xbuf_mapping;

/* Maps the attachment into this process (allocator.hpp, "Memory a client
 * can use"), waiting up to timeout_ms for a move still running. Errors:
 * -EOPNOTSUPP (memory this mode cannot map here), -ETIMEDOUT. */
int xbuf_map(xbuf_client* c, uint64_t attachment, int timeout_ms, xbuf_mapping* out);
int xbuf_unmap(xbuf_client* c, uint64_t attachment);

/* One use of the attachment: maps (or remaps after a move) and adds a
 * fence of `usage` (XBUF_USAGE_*) so nothing moves the buffer until
 * xbuf_end_use. out->data is valid until then. Errors: as xbuf_map, and
 * -EINVAL when a use is already begun on the attachment. */
int xbuf_begin_use(xbuf_client* c, uint64_t attachment, int usage, int timeout_ms, xbuf_mapping* out);
/* Ends it; `error` (0 or -errno) is what the use's fence reports.
 * Errors: -EINVAL when no use is begun. */
int xbuf_end_use(xbuf_client* c, uint64_t attachment, int error);

/* ---- fences --------------------------------------------------------------- */

/* A fence of `usage` (XBUF_USAGE_*) on the buffer, signaled by this client
 * (xbuf_signal_fence): "I use it until then". deadline_ms: signaled
 * -ETIMEDOUT by the manager after that long; 0 = the manager's longest. */
int xbuf_add_fence(xbuf_client* c, uint64_t buffer, int usage, uint32_t deadline_ms, uint64_t* out_fence);
/* error: 0 or a negative errno, what waiters see. Errors: -ENOENT,
 * -EALREADY (already signaled), -EINVAL (error > 0). */
int xbuf_signal_fence(xbuf_client* c, uint64_t fence, int error);
/* Waits up to timeout_ms (0 = only test). 0 = signaled, the fence's own
 * error (0 or -errno) in *out_fence_error (which may be NULL); -ETIMEDOUT
 * = not signaled yet; -ENOENT = unknown fence. */
int xbuf_wait_fence(xbuf_client* c, uint64_t fence, uint32_t timeout_ms, int* out_fence_error);

/* ---- residency, CPU access, stats ----------------------------------------- */

typedef struct xbuf_validate_counts {
  uint32_t promoted; /* moved to a better placement */
  uint32_t deferred; /* promotion waits (promote interval, a fence) */
  uint32_t in_place; /* already where it is best */
  uint32_t no_room;  /* a better placement is full */
} xbuf_validate_counts;

/* Asks that the buffers be in their preferred placements before a job
 * (ids may be NULL when n is 0). Errors: -ENOENT naming an unknown id. */
int xbuf_validate(xbuf_client* c, const uint64_t* ids, size_t n, xbuf_validate_counts* out);

/* CPU access to a buffer (XBUF_ALLOC_CPU_ACCESS says at alloc that it
 * will be asked for): waits up to timeout_ms for the fences it must, keeps
 * the buffer where the CPU reaches it, and hands out its bytes until
 * xbuf_cpu_end. write: 0 read, else write. Errors: -ENOENT, -ETIMEDOUT,
 * -EOPNOTSUPP (no placement the CPU reaches), -EINVAL (daemon: an access
 * of this buffer is already begun; xbuf_cpu_end: none is). */
int xbuf_cpu_begin(xbuf_client* c, uint64_t buffer, int write, int timeout_ms, void** out_data, uint64_t* out_size);
int xbuf_cpu_end(xbuf_client* c, uint64_t buffer);

/* What this client may see (allocator stats()) as one compact JSON object
 * (client/stats_json.hpp has its shape). Ownership: the caller frees the
 * string with xbuf_string_free. NULL on failure. */
char* xbuf_stats_json(xbuf_client* c);
/* Frees a string this library returned. NULL is fine. */
void xbuf_string_free(char* s);

/* ---- events --------------------------------------------------------------- */

typedef struct xbuf_move_event {
  uint64_t attachment;
  uint64_t buffer;
  xbuf_placement from;
  xbuf_placement to;
} xbuf_move_event;

/* Called before (embedded) or as (daemon) a dynamic attachment's buffer
 * moves; `e` is valid during the call only. See Rules for its thread. */
typedef void (*xbuf_move_callback)(void* user, const xbuf_move_event* e);

/* The handle's one move callback (a new one replaces the old; cb NULL
 * removes it). `user` is passed back as it is (borrowed). */
int xbuf_set_move_callback(xbuf_client* c, xbuf_move_callback cb, void* user);

typedef struct xbuf_pressure_event {
  xbuf_placement where; /* the domain that is short */
  uint64_t bytes;       /* what the allocation that found no room asked for */
} xbuf_pressure_event;

/* Called when a domain is short of memory: some client's allocation there
 * found no room even after eviction (daemon: its memory_pressure event,
 * sent to every client; embedded: an allocation of this handle failed
 * -ENOMEM). The answer is to give back what is held idle. `e` is valid
 * during the call only; it runs like the move callback (see Rules). */
typedef void (*xbuf_pressure_callback)(void* user, const xbuf_pressure_event* e);

/* The handle's one pressure callback (a new one replaces the old; cb NULL
 * removes it). `user` is passed back as it is (borrowed). */
int xbuf_set_pressure_callback(xbuf_client* c, xbuf_pressure_callback cb, void* user);

/* Reads the daemon's events for up to timeout_ms (0 = what has arrived)
 * and runs the callbacks for each. Returns how many (>= 0) or -errno. An
 * embedded handle runs callbacks at once, so this returns 0. */
int xbuf_poll_events(xbuf_client* c, int timeout_ms);

/* ---- errors --------------------------------------------------------------- */

/* The message of the calling thread's last failure ("" if none). Valid
 * until this thread's next failing call. */
const char* xbuf_last_error(void);

/* ---- PyTorch (see the Overview) ------------------------------------------- */

void* xbuf_torch_malloc(ssize_t size, int device, void* stream);
void xbuf_torch_free(void* ptr, ssize_t size, int device, void* stream);
/* The torch allocator's stats as JSON (xbuf_stats_json's form), for a test
 * or a framework's own report; free with xbuf_string_free. NULL before the
 * first successful xbuf_torch_malloc (xbuf_last_error says why). */
char* xbuf_torch_stats_json(void);

#ifdef __cplusplus
}
#endif

#endif /* XBUF_C_H */
