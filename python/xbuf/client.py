# SPDX-License-Identifier: MIT
"""Client, Buffer, Attachment, Fence: libxbuf's allocator in Python.

Overview
    A Client is one libxbuf allocator (client/allocator.hpp), embedded or
    through xbufd. Buffers it allocates, attachments of them, fences on
    them are objects holding the client and an id; each method is one C
    call (client/xbuf_c.h says what it does and what it returns on each
    error).

        with xbuf.connect() as c, c.alloc(1 << 20, device=0) as buf:
            att = buf.attach()                      # the CPU, dynamic
            with att.use("write") as view:          # a memoryview of the bytes
                view[:5] = b"hello"
            data = att.map().view                   # mapped until unmap/detach

Memory and its lifetime
    A memoryview handed out (Mapping.view, use(), cpu_access()) reaches
    memory libxbuf maps; it is valid until the attachment is unmapped or
    detached, the buffer freed, the use ended. The binding releases the
    views it made at those points (using one then raises ValueError instead
    of touching unmapped memory); a slice taken of a view is not tracked -
    do not keep one past that point.

Rules
    - Thread-safe as libxbuf is: any thread may use a Client; ctypes lets
      go of the GIL during each call, so a long wait blocks only its caller
      (and, on a daemon client, the client's other calls: one connection).
    - Wrong types or values raise TypeError / ValueError before anything is
      called; failures libxbuf reports raise xbuf.Error subclasses.
    - The move and pressure callbacks run on whichever thread is inside a
      call of the same client (or poll_events) when the event arrives; they
      must not call into that client. An exception one raises is printed
      and dropped (ctypes cannot carry it back through C).
    - Closing the client (close(), the with block, or garbage collection)
      frees everything it held; its objects then raise ValueError.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import json
import operator
import os
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, NamedTuple, Optional, Sequence, Union

from . import _native
from .errors import Error, errno_of_message

_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
_INT_MAX = 2**31 - 1
_MAX_ERRNO = 4095


# ---- arguments ----------------------------------------------------------------


def _int(name: str, value, lo: int, hi: int) -> int:
    """value as an int in [lo, hi]: TypeError for a non-integer (bools
    included), ValueError outside the range."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None
    if not lo <= v <= hi:
        raise ValueError(f"{name} {v} is out of range [{lo}, {hi}]")
    return v


def _timeout(name: str, value) -> int:
    """A libxbuf int timeout: None = the allocator's default (30 s)."""
    if value is None:
        return _native.DEFAULT
    return _int(name, value, 0, _INT_MAX)


def _fence_error(name: str, value) -> int:
    return _int(name, value, -_MAX_ERRNO, 0)


def _text(name: str, value: Optional[str], default: Optional[str] = None) -> Optional[bytes]:
    if value is None:
        return None if default is None else default.encode()
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if "\0" in value:
        raise ValueError(f"{name} must not contain NUL")
    return value.encode("utf-8")


_USAGES = {"write": _native.USAGE_WRITE, "read": _native.USAGE_READ}
_MODES = {"dynamic": _native.ATTACH_DYNAMIC, "pinned": _native.ATTACH_PINNED}
_HINTS = {"none": _native.HINT_NONE, "done": _native.HINT_DONE, "keep": _native.HINT_KEEP}


def _choice(name: str, value, table: dict) -> int:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {sorted(table)}, not {type(value).__name__}")
    if value not in table:
        raise ValueError(f"{name} {value!r} is not one of {sorted(table)}")
    return table[value]


# ---- placements ---------------------------------------------------------------


class Placement(NamedTuple):
    """Where memory is: kind "vram" (device = the GPU), "pinned" (device
    -1) or "pageable" (device = the NUMA node; -1: near the GPU that uses
    it). str() is the stats name ("vram0", "pinned", "pageable-node1")."""

    kind: str
    device: int = -1

    def __str__(self) -> str:
        if self.kind == "vram":
            return f"vram{self.device}"
        if self.kind == "pageable" and self.device >= 0:
            return f"pageable-node{self.device}"
        return self.kind


def vram(device: int) -> Placement:
    """The VRAM of GPU ``device``."""
    return Placement("vram", _int("device", device, 0, _INT_MAX))


PINNED = Placement("pinned")
PAGEABLE = Placement("pageable")


def pageable_on(node: int) -> Placement:
    """Pageable memory on NUMA node ``node`` (a daemon with a pageable
    domain per node; elsewhere allocating there fails)."""
    return Placement("pageable", _int("node", node, 0, _INT_MAX))

_KIND_OF = {"vram": _native.PLACEMENT_VRAM, "pinned": _native.PLACEMENT_PINNED, "pageable": _native.PLACEMENT_PAGEABLE}
_KIND_NAME = {v: k for k, v in _KIND_OF.items()}


def _placement_from_c(p: _native.Placement) -> Placement:
    kind = _KIND_NAME.get(p.kind, f"kind{p.kind}")
    return Placement(kind, p.device if kind in ("vram", "pageable") else -1)


def placement(value: Union[Placement, str]) -> Placement:
    """A Placement from itself or its stats name: "vram0", "vram1", ...,
    "pinned", "pageable", "pageable-node0", ..."""
    if isinstance(value, Placement):
        if value.kind not in _KIND_OF:
            raise ValueError(f"placement kind {value.kind!r} is not one of {sorted(_KIND_OF)}")
        if value.kind == "vram":
            return vram(value.device)
        if value.kind == "pageable" and value.device != -1:
            return pageable_on(value.device)
        return Placement(value.kind)
    if not isinstance(value, str):
        raise TypeError(f"a placement is a Placement or a name like 'vram0', not {type(value).__name__}")
    if value in ("pinned", "pageable"):
        return Placement(value)
    if value.startswith("vram") and value[4:].isdigit():
        return vram(int(value[4:]))
    if value.startswith("pageable-node") and value[13:].isdigit():
        return pageable_on(int(value[13:]))
    raise ValueError(f"placement {value!r} is not 'vramN', 'pinned', 'pageable' or 'pageable-nodeN'")


def device_then_host(device: int) -> list:
    """The short form's list: that GPU's VRAM, then pinned, then pageable."""
    return [vram(device), PINNED, PAGEABLE]


# ---- results ------------------------------------------------------------------


@dataclass(frozen=True)
class ValidateCounts:
    promoted: int
    deferred: int
    in_place: int
    no_room: int


@dataclass(frozen=True)
class MoveEvent:
    attachment: int
    buffer: int
    source: Placement
    target: Placement


@dataclass(frozen=True)
class PressureEvent:
    """A domain is short of memory (see Client.on_memory_pressure)."""

    where: Placement
    bytes: int


class Export:
    """A buffer's memory as an fd (owned by this object: close() or a with
    block closes it; detach() hands it over). offset: the buffer's first
    byte in the fd."""

    def __init__(self, fd: int, offset: int, size: int, kind: str):
        self.fd = fd
        self.offset = offset
        self.size = size
        self.kind = kind

    def detach(self) -> int:
        """The fd, which the caller now owns."""
        fd, self.fd = self.fd, -1
        return fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.detach())

    def __enter__(self) -> "Export":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Export(fd={self.fd}, offset={self.offset}, size={self.size}, kind={self.kind!r})"


def _view(address: int, size: int) -> memoryview:
    return memoryview((ctypes.c_ubyte * size).from_address(address)).cast("B")


class Mapping:
    """An attachment's memory as this process addresses it (xbuf_mapping)."""

    def __init__(self, m: _native.Mapping):
        self.address: int = m.data or 0
        self.size: int = m.size
        self.placement: Placement = _placement_from_c(m.where)
        self.peer: bool = bool(m.peer)
        self.generation: int = m.generation
        self.view: memoryview = _view(self.address, self.size)

    @property
    def pointer(self) -> ctypes.c_void_p:
        return ctypes.c_void_p(self.address)

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return (
            f"Mapping(address={self.address:#x}, size={self.size}, placement={str(self.placement)!r}, "
            f"generation={self.generation})"
        )


# ---- the client -----------------------------------------------------------------


def _disconnect(lib, handle: int, _callbacks: list) -> None:
    lib.xbuf_disconnect(handle)


class Client:
    """One libxbuf allocator; see connect() and open_embedded()."""

    def __init__(self, handle: int):
        self._lib = _native.library()
        self._handle: Optional[int] = handle
        # Every ctypes thunk ever set: a call on another thread may still
        # be running an old one after a replacement (libxbuf copies the
        # callback before calling it), so none is freed before the client.
        self._callbacks: list = []
        self._lock = threading.Lock()
        # The thunks go to the finalizer too: alive until the handle is gone.
        self._finalizer = weakref.finalize(self, _disconnect, self._lib, handle, self._callbacks)

    # -- plumbing

    def _h(self) -> int:
        h = self._handle
        if h is None:
            raise ValueError("xbuf client is closed")
        return h

    def _check(self, rc: int) -> int:
        if rc < 0:
            raise Error.from_errno(-rc, _native.last_error())
        return rc

    # -- life

    def close(self) -> None:
        """Frees everything this client held (the daemon does on
        disconnect). Closing twice is fine."""
        with self._lock:
            if self._handle is None:
                return
            self._handle = None
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._handle is None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return "Client(closed)"
        return f"Client(mode={self.mode!r}, owner={self.owner})"

    @property
    def mode(self) -> str:
        """"embedded" or "daemon"."""
        m = self._lib.xbuf_mode(self._h())
        return m.decode()

    @property
    def owner(self) -> int:
        """Who this client is to the manager: what another client's share() takes."""
        out = ctypes.c_uint32()
        self._check(self._lib.xbuf_owner(self._h(), ctypes.byref(out)))
        return out.value

    # -- buffers

    def alloc(
        self,
        size: int,
        placements: Union[None, Placement, str, Iterable[Union[Placement, str]]] = None,
        *,
        device: Optional[int] = None,
        name: Optional[str] = None,
        cpu_access: bool = False,
        no_evict: bool = False,
        alignment: int = 0,
    ) -> "Buffer":
        """A buffer of ``size`` bytes in the first of ``placements`` with
        room (a Placement, a name like "vram0", or a list of them in order
        of preference). ``device=N`` instead: that GPU's VRAM, then pinned,
        then pageable (as xbuf_alloc; -1: pageable). Neither: pageable host
        memory."""
        size = _int("size", size, 1, _U64_MAX)
        if placements is not None and device is not None:
            raise ValueError("give placements or device, not both")
        if device is not None:
            where = [PAGEABLE] if device == -1 else device_then_host(_int("device", device, 0, _INT_MAX))
        elif placements is None:
            where = [PAGEABLE]
        elif isinstance(placements, (Placement, str)):
            where = [placement(placements)]
        else:
            where = [placement(p) for p in placements]
        if not where:
            raise ValueError("placements is empty")
        flags = 0
        if not isinstance(cpu_access, bool) or not isinstance(no_evict, bool):
            raise TypeError("cpu_access and no_evict are bools")
        if cpu_access:
            flags |= _native.ALLOC_CPU_ACCESS
        if no_evict:
            flags |= _native.ALLOC_NO_EVICT
        alignment = _int("alignment", alignment, 0, _U64_MAX)
        arr = (_native.Placement * len(where))(*[_native.Placement(_KIND_OF[p.kind], p.device) for p in where])
        out = ctypes.c_uint64()
        self._check(
            self._lib.xbuf_alloc_ex(
                self._h(), size, arr, len(where), flags, _text("name", name), alignment, ctypes.byref(out)
            )
        )
        return Buffer(self, out.value, size, owned=True)

    def buffer(self, buffer_id: int) -> "Buffer":
        """A Buffer object for an id this client did not allocate here (one
        another client shared with it): attach it; freeing is the owner's."""
        return Buffer(self, _int("buffer_id", buffer_id, 0, _U64_MAX), None, owned=False)

    def import_fd(self, fd: int) -> "Buffer":
        """The buffer an exported fd reaches (one another process passed on,
        e.g. over a socket with socket.send_fds), usable by this client from
        now on: attach it; freeing is the owner's. The fd stays the caller's."""
        out = ctypes.c_uint64()
        size = ctypes.c_uint64()
        self._check(self._lib.xbuf_import(self._h(), _int("fd", fd, 0, _INT_MAX), ctypes.byref(out), ctypes.byref(size)))
        return Buffer(self, out.value, size.value, owned=False)

    def attach(
        self, buffer: Union["Buffer", int], device: int = -1, mode: str = "dynamic", peer_capable: bool = False
    ) -> "Attachment":
        """Attaches ``device`` (-1 = the CPU) to a buffer of this client's
        or shared with it. mode: "dynamic" (it may move; the move callback
        hears) or "pinned" (it stays where the device reaches it)."""
        if isinstance(buffer, Buffer):
            buf = buffer
        else:
            buf = self.buffer(buffer)
        if buf.client is not self:
            raise ValueError("the buffer belongs to another client")
        device = _int("device", device, -1, _INT_MAX)
        m = _choice("mode", mode, _MODES)
        if not isinstance(peer_capable, bool):
            raise TypeError("peer_capable is a bool")
        out = ctypes.c_uint64()
        self._check(self._lib.xbuf_attach(self._h(), buf.id, device, m, int(peer_capable), ctypes.byref(out)))
        att = Attachment(buf, out.value)
        buf._attachments[att.id] = att
        return att

    def validate(self, buffers: Sequence[Union["Buffer", int]]) -> ValidateCounts:
        """Asks that the buffers be in their preferred placements."""
        ids = [b.id if isinstance(b, Buffer) else _int("buffer id", b, 0, _U64_MAX) for b in buffers]
        arr = (ctypes.c_uint64 * len(ids))(*ids)
        out = _native.ValidateCounts()
        self._check(self._lib.xbuf_validate(self._h(), arr, len(ids), ctypes.byref(out)))
        return ValidateCounts(out.promoted, out.deferred, out.in_place, out.no_room)

    def stats(self) -> dict:
        """What this client may see, parsed from libxbuf's JSON
        (client/stats_json.hpp has the shape)."""
        p = self._lib.xbuf_stats_json(self._h())
        if not p:
            msg = _native.last_error()
            raise Error.from_errno(errno_of_message(msg), msg)
        try:
            return json.loads(ctypes.string_at(p).decode("utf-8"))
        finally:
            self._lib.xbuf_string_free(p)

    # -- fences by id

    def fence(self, fence_id: int) -> "Fence":
        """A Fence object for an id this client added."""
        return Fence(self, _int("fence_id", fence_id, 0, _U64_MAX))

    # -- events

    def on_move(self, callback: Optional[Callable[[MoveEvent], None]]) -> None:
        """The client's one move callback (None removes it); see Rules."""
        if callback is None:
            self._check(self._lib.xbuf_set_move_callback(self._h(), _native.MOVE_CALLBACK(), None))
            return
        if not callable(callback):
            raise TypeError("callback must be callable or None")

        def thunk(_user, e):
            ev = e.contents
            callback(MoveEvent(ev.attachment, ev.buffer, _placement_from_c(ev.from_), _placement_from_c(ev.to)))

        c_thunk = _native.MOVE_CALLBACK(thunk)
        self._callbacks.append(c_thunk)
        self._check(self._lib.xbuf_set_move_callback(self._h(), c_thunk, None))

    def on_memory_pressure(self, callback: Optional[Callable[[PressureEvent], None]]) -> None:
        """The client's one memory-pressure callback (None removes it):
        some allocation found no room in ``event.where`` even after
        eviction (daemon: told to every client; embedded: an allocation of
        this client failed with ENOMEM). Give back what is held idle. Runs
        like the move callback (see Rules)."""
        if callback is None:
            self._check(self._lib.xbuf_set_pressure_callback(self._h(), _native.PRESSURE_CALLBACK(), None))
            return
        if not callable(callback):
            raise TypeError("callback must be callable or None")

        def thunk(_user, e):
            ev = e.contents
            callback(PressureEvent(_placement_from_c(ev.where), ev.bytes))

        c_thunk = _native.PRESSURE_CALLBACK(thunk)
        self._callbacks.append(c_thunk)
        self._check(self._lib.xbuf_set_pressure_callback(self._h(), c_thunk, None))

    def poll_events(self, timeout_ms: int = 0) -> int:
        """Reads the daemon's events for up to timeout_ms and runs the
        callbacks for each; returns how many (always 0 embedded)."""
        return self._check(self._lib.xbuf_poll_events(self._h(), _int("timeout_ms", timeout_ms, 0, _INT_MAX)))


def _drop_views(views: list) -> None:
    for v in views:
        try:
            v.release()
        except (BufferError, ValueError):
            pass
    views.clear()


class Buffer:
    """A buffer id on a client. ``with`` frees it at the end (if it is this
    client's own and not freed yet)."""

    def __init__(self, client: Client, buffer_id: int, size: Optional[int], owned: bool):
        self.client = client
        self.id = buffer_id
        self.size = size
        self.owned = owned
        self.freed = False
        self._attachments: dict = {}  # id -> Attachment made through this object, not detached
        self._cpu_views: list = []

    def __repr__(self) -> str:
        return f"Buffer(id={self.id}, size={self.size}{', freed' if self.freed else ''})"

    def __enter__(self) -> "Buffer":
        return self

    def __exit__(self, *exc) -> None:
        if self.owned and not self.freed and not self.client.closed:
            self.free()

    def free(self) -> None:
        """Frees the buffer and this client's attachments of it (libxbuf
        detaches them; their views go). A second free raises Error
        (ENOENT); a use still begun, Error (EINVAL)."""
        c = self.client
        c._check(c._lib.xbuf_free(c._h(), self.id))
        self.freed = True
        for att in self._attachments.values():
            att.detached = True
            att._views_drop()
        self._attachments.clear()
        _drop_views(self._cpu_views)

    def share(self, owner: int) -> None:
        """Lets ``owner`` (another client's Client.owner) attach and map it."""
        c = self.client
        c._check(c._lib.xbuf_share(c._h(), self.id, _int("owner", owner, 0, _U32_MAX)))

    def advise(self, hint: str) -> None:
        """The owner's word on when it uses this buffer next, for eviction:
        "done" (not for a while: evicted first, until its next use), "keep"
        (evicted last among this client's buffers - not other clients'),
        "none" (its own use history again). Moves nothing."""
        c = self.client
        c._check(c._lib.xbuf_advise(c._h(), self.id, _choice("hint", hint, _HINTS)))

    def export(self) -> Export:
        """A new fd of the buffer's memory (see Export)."""
        c = self.client
        out = _native.ExportInfo()
        c._check(c._lib.xbuf_export(c._h(), self.id, ctypes.byref(out)))
        return Export(out.fd, out.offset, out.size, _KIND_NAME.get(out.kind, f"kind{out.kind}"))

    def release_export(self) -> None:
        """This client (and whoever it passed the fd on to) is done with one
        export: until then a freed buffer stays, charged to its owner."""
        c = self.client
        c._check(c._lib.xbuf_release_export(c._h(), self.id))

    def attach(self, device: int = -1, mode: str = "dynamic", peer_capable: bool = False) -> "Attachment":
        return self.client.attach(self, device, mode, peer_capable)

    def add_fence(self, usage: str = "write", deadline_ms: int = 0) -> "Fence":
        """A fence this client signals ("I use it until then"); after
        deadline_ms the manager signals it -ETIMEDOUT (0 = its longest)."""
        c = self.client
        u = _choice("usage", usage, _USAGES)
        out = ctypes.c_uint64()
        c._check(
            c._lib.xbuf_add_fence(c._h(), self.id, u, _int("deadline_ms", deadline_ms, 0, _U32_MAX), ctypes.byref(out))
        )
        return Fence(c, out.value)

    def cpu_begin(self, write: bool = False, timeout_ms: Optional[int] = None) -> memoryview:
        """CPU access (the buffer needs cpu_access=True): its bytes until cpu_end()."""
        if not isinstance(write, bool):
            raise TypeError("write is a bool")
        c = self.client
        data = ctypes.c_void_p()
        size = ctypes.c_uint64()
        c._check(
            c._lib.xbuf_cpu_begin(
                c._h(), self.id, int(write), _timeout("timeout_ms", timeout_ms), ctypes.byref(data), ctypes.byref(size)
            )
        )
        v = _view(data.value or 0, size.value)
        self._cpu_views.append(v)
        return v

    def cpu_end(self) -> None:
        c = self.client
        c._check(c._lib.xbuf_cpu_end(c._h(), self.id))
        _drop_views(self._cpu_views)

    @contextmanager
    def cpu_access(self, write: bool = False, timeout_ms: Optional[int] = None) -> Iterator[memoryview]:
        """``with buf.cpu_access(write=True) as view: ...``"""
        v = self.cpu_begin(write, timeout_ms)
        try:
            yield v
        finally:
            self.cpu_end()


class Attachment:
    """A device attached to a buffer. ``with`` detaches it at the end."""

    def __init__(self, buffer: Buffer, attachment_id: int):
        self.buffer = buffer
        self.client = buffer.client
        self.id = attachment_id
        self.detached = False
        self._views: list = []

    def __repr__(self) -> str:
        return f"Attachment(id={self.id}, buffer={self.buffer.id})"

    def __enter__(self) -> "Attachment":
        return self

    def __exit__(self, *exc) -> None:
        if not self.detached and not self.buffer.freed and not self.client.closed:
            self.detach()

    def _views_drop(self) -> None:
        _drop_views(self._views)

    def _mapping(self, m: _native.Mapping) -> Mapping:
        out = Mapping(m)
        self._views.append(out.view)
        return out

    def map(self, timeout_ms: Optional[int] = None) -> Mapping:
        """Maps the attachment here (waiting up to timeout_ms for a move
        still running): .view is a memoryview of the bytes."""
        c = self.client
        out = _native.Mapping()
        c._check(c._lib.xbuf_map(c._h(), self.id, _timeout("timeout_ms", timeout_ms), ctypes.byref(out)))
        return self._mapping(out)

    def unmap(self) -> None:
        c = self.client
        c._check(c._lib.xbuf_unmap(c._h(), self.id))
        self._views_drop()

    def detach(self) -> None:
        c = self.client
        c._check(c._lib.xbuf_detach(c._h(), self.id))
        self.detached = True
        self.buffer._attachments.pop(self.id, None)
        self._views_drop()

    def begin_use(self, usage: str = "write", timeout_ms: Optional[int] = None) -> Mapping:
        """One use (remapping after a move): nothing moves the buffer until
        end_use(). A second begin_use before it raises Error (EINVAL)."""
        c = self.client
        u = _choice("usage", usage, _USAGES)
        out = _native.Mapping()
        c._check(c._lib.xbuf_begin_use(c._h(), self.id, u, _timeout("timeout_ms", timeout_ms), ctypes.byref(out)))
        return self._mapping(out)

    def end_use(self, error: int = 0) -> None:
        """Ends the use; ``error`` (0 or -errno) is what its fence reports.
        Without a use begun: Error (EINVAL)."""
        c = self.client
        c._check(c._lib.xbuf_end_use(c._h(), self.id, _fence_error("error", error)))
        self._views_drop()

    @contextmanager
    def use(self, usage: str = "write", timeout_ms: Optional[int] = None) -> Iterator[memoryview]:
        """``with att.use("read") as view: ...`` - begin_use / end_use around
        the block; a block that raises ends the use with -ECANCELED, so
        whoever waits for it knows the bytes may be incomplete."""
        m = self.begin_use(usage, timeout_ms)
        ok = False
        try:
            yield m.view
            ok = True
        finally:
            self.end_use(0 if ok else -_errno.ECANCELED)


class Fence:
    """A fence this client added (Buffer.add_fence)."""

    def __init__(self, client: Client, fence_id: int):
        self.client = client
        self.id = fence_id

    def __repr__(self) -> str:
        return f"Fence(id={self.id})"

    def signal(self, error: int = 0) -> None:
        """error: 0 or a negative errno, what waiters see."""
        c = self.client
        c._check(c._lib.xbuf_signal_fence(c._h(), self.id, _fence_error("error", error)))

    def wait(self, timeout_ms: int = 0) -> int:
        """The fence's error (0 or -errno) once signaled; TimedOutError when
        it is not within timeout_ms (0 = only test)."""
        c = self.client
        out = ctypes.c_int()
        c._check(c._lib.xbuf_wait_fence(c._h(), self.id, _int("timeout_ms", timeout_ms, 0, _U32_MAX), ctypes.byref(out)))
        return out.value

    def signaled(self) -> bool:
        try:
            self.wait(0)
            return True
        except Error as e:
            if e.errno == _errno.ETIMEDOUT:
                return False
            raise


# ---- opening --------------------------------------------------------------------


def _opened(handle: Optional[int]) -> Client:
    if not handle:
        msg = _native.last_error()
        raise Error.from_errno(errno_of_message(msg), msg)
    return Client(handle)


def connect(socket: Optional[str] = None, name: str = "python") -> Client:
    """xbufd over its socket (None: $XBUF_SOCKET, else the default path)."""
    if socket is not None and not isinstance(socket, (str, os.PathLike)):
        raise TypeError(f"socket must be a path, not {type(socket).__name__}")
    path = _text("socket", os.fspath(socket)) if socket is not None else None
    lib = _native.library()
    return _opened(lib.xbuf_connect(path, _text("name", name)))


def open_embedded(
    backend: str = "sim",
    *,
    sim_devices: int = 0,
    sim_vram: int = 0,
    pinned: int = 0,
    pageable: int = 0,
    promote_interval_ms: Optional[int] = None,
) -> Client:
    """The memory manager in this process. backend: "sim", "auto", "cuda",
    "hip". 0 = libxbuf's default for each size (xbuf_open_embedded);
    promote_interval_ms None = its default (100)."""
    if backend is None:
        raise TypeError('backend must be a str ("sim", "auto", "cuda", "hip"), not None')
    b = _text("backend", backend)
    devices = _int("sim_devices", sim_devices, 0, _INT_MAX)
    sizes = [_int(n, v, 0, _U64_MAX) for n, v in (("sim_vram", sim_vram), ("pinned", pinned), ("pageable", pageable))]
    interval = _timeout("promote_interval_ms", promote_interval_ms)
    lib = _native.library()
    return _opened(lib.xbuf_open_embedded(b, devices, *sizes, interval))
