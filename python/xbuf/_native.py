# SPDX-License-Identifier: MIT
"""libxbuf.so through ctypes: finding it, and the C ABI's declarations.

Overview
    The one place that knows client/xbuf_c.h. Every function the binding
    calls is declared here with its argument and result types, so ctypes
    converts and checks each call; the structs mirror the header's field
    for field. Nothing here raises xbuf.Error: client.py turns return codes
    into exceptions.

Rules
    - The library is loaded on first use (library()), not at import, so
      ``import xbuf`` works on a machine without it and says where it looked
      only when asked to do something.
    - Where it is looked for, in order: $XBUF_LIBRARY (a path); the
      repository's build trees (<repo>/build/lib/libxbuf.so.0, then any
      <repo>/build*/lib/libxbuf.so.0), for a checkout used in place;
      ctypes.util.find_library("xbuf") (an installed library).
    - Functions returning an allocated string are declared c_void_p (not
      c_char_p, which would copy the text and lose the pointer to free).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from pathlib import Path

# xbuf_c.h's constants.
DEFAULT = -1
PLACEMENT_VRAM = 0
PLACEMENT_PINNED = 1
PLACEMENT_PAGEABLE = 2
ALLOC_CPU_ACCESS = 1
ALLOC_NO_EVICT = 2
ATTACH_PINNED = 0
ATTACH_DYNAMIC = 1
USAGE_WRITE = 1
USAGE_READ = 2
HINT_NONE = 0
HINT_DONE = 1
HINT_KEEP = 2


class Placement(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("device", ctypes.c_int)]


class ExportInfo(ctypes.Structure):
    _fields_ = [
        ("fd", ctypes.c_int),
        ("offset", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
        ("kind", ctypes.c_int),
    ]


class Mapping(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_uint64),
        ("where", Placement),
        ("peer", ctypes.c_int),
        ("generation", ctypes.c_uint64),
    ]


class ValidateCounts(ctypes.Structure):
    _fields_ = [
        ("promoted", ctypes.c_uint32),
        ("deferred", ctypes.c_uint32),
        ("in_place", ctypes.c_uint32),
        ("no_room", ctypes.c_uint32),
    ]


class MoveEvent(ctypes.Structure):
    _fields_ = [
        ("attachment", ctypes.c_uint64),
        ("buffer", ctypes.c_uint64),
        ("from_", Placement),
        ("to", Placement),
    ]


class PressureEvent(ctypes.Structure):
    _fields_ = [("where", Placement), ("bytes", ctypes.c_uint64)]


MOVE_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(MoveEvent))
PRESSURE_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(PressureEvent))

_p = ctypes.POINTER
_c = ctypes
_handle = ctypes.c_void_p
_u64 = ctypes.c_uint64
_u32 = ctypes.c_uint32
_int = ctypes.c_int

# name: (result type, argument types), as client/xbuf_c.h declares them.
_PROTOTYPES = {
    "xbuf_connect": (_handle, [_c.c_char_p, _c.c_char_p]),
    "xbuf_open_embedded": (_handle, [_c.c_char_p, _int, _u64, _u64, _u64, _int]),
    "xbuf_disconnect": (None, [_handle]),
    "xbuf_mode": (_c.c_char_p, [_handle]),
    "xbuf_owner": (_int, [_handle, _p(_u32)]),
    "xbuf_alloc_ex": (_int, [_handle, _u64, _p(Placement), _c.c_size_t, _u32, _c.c_char_p, _u64, _p(_u64)]),
    "xbuf_alloc": (_int, [_handle, _u64, _int, _p(_u64)]),
    "xbuf_free": (_int, [_handle, _u64]),
    "xbuf_release_export": (_int, [_handle, _u64]),
    "xbuf_share": (_int, [_handle, _u64, _u32]),
    "xbuf_advise": (_int, [_handle, _u64, _int]),
    "xbuf_export": (_int, [_handle, _u64, _p(ExportInfo)]),
    "xbuf_export_fd": (_int, [_handle, _u64, _p(_int), _p(_u64), _p(_u64)]),
    "xbuf_import": (_int, [_handle, _int, _p(_u64), _p(_u64)]),
    "xbuf_attach": (_int, [_handle, _u64, _int, _int, _int, _p(_u64)]),
    "xbuf_detach": (_int, [_handle, _u64]),
    "xbuf_map": (_int, [_handle, _u64, _int, _p(Mapping)]),
    "xbuf_unmap": (_int, [_handle, _u64]),
    "xbuf_begin_use": (_int, [_handle, _u64, _int, _int, _p(Mapping)]),
    "xbuf_end_use": (_int, [_handle, _u64, _int]),
    "xbuf_add_fence": (_int, [_handle, _u64, _int, _u32, _p(_u64)]),
    "xbuf_signal_fence": (_int, [_handle, _u64, _int]),
    "xbuf_wait_fence": (_int, [_handle, _u64, _u32, _p(_int)]),
    "xbuf_validate": (_int, [_handle, _p(_u64), _c.c_size_t, _p(ValidateCounts)]),
    "xbuf_cpu_begin": (_int, [_handle, _u64, _int, _int, _p(_c.c_void_p), _p(_u64)]),
    "xbuf_cpu_end": (_int, [_handle, _u64]),
    "xbuf_stats_json": (_c.c_void_p, [_handle]),
    "xbuf_string_free": (None, [_c.c_void_p]),
    "xbuf_set_move_callback": (_int, [_handle, MOVE_CALLBACK, _c.c_void_p]),
    "xbuf_set_pressure_callback": (_int, [_handle, PRESSURE_CALLBACK, _c.c_void_p]),
    "xbuf_poll_events": (_int, [_handle, _int]),
    "xbuf_last_error": (_c.c_char_p, []),
    "xbuf_torch_malloc": (_c.c_void_p, [_c.c_ssize_t, _int, _c.c_void_p]),
    "xbuf_torch_free": (None, [_c.c_void_p, _c.c_ssize_t, _int, _c.c_void_p]),
}


class LibraryNotFoundError(ImportError):
    """libxbuf.so could not be found or loaded; the message lists where it looked."""


def _repo_root() -> Path:
    # python/xbuf/_native.py -> the checkout's root
    return Path(__file__).resolve().parent.parent.parent


def candidates() -> list[str]:
    """Where library() looks, in order (see the module's Rules)."""
    out: list[str] = []
    env = os.environ.get("XBUF_LIBRARY")
    if env:
        out.append(env)
    root = _repo_root()
    out.append(str(root / "build" / "lib" / "libxbuf.so.0"))
    out.extend(str(p) for p in sorted(root.glob("build*/lib/libxbuf.so.0")) if p.parent.parent.name != "build")
    found = ctypes.util.find_library("xbuf")
    if found:
        out.append(found)
    return out


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_path: str | None = None


def _declare(lib: ctypes.CDLL) -> None:
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def library() -> ctypes.CDLL:
    """libxbuf, loaded and declared once. Raises LibraryNotFoundError."""
    global _lib, _path
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        env = os.environ.get("XBUF_LIBRARY")
        for path in candidates():
            # $XBUF_LIBRARY is used as given, even when it is wrong: a
            # silent fallback would test some other build.
            explicit = env is not None and path == env
            if "/" in path and not os.path.exists(path):
                tried.append(f"{path} (no such file)")
                if explicit:
                    break
                continue
            try:
                lib = ctypes.CDLL(path)
                _declare(lib)
            except (OSError, AttributeError) as e:
                tried.append(f"{path} ({e})")
                if explicit:
                    break
                continue
            _lib, _path = lib, path
            return lib
        raise LibraryNotFoundError(
            "libxbuf.so.0 not found; set XBUF_LIBRARY to its path or build it "
            "(cmake --build build --target xbuf_shared). Tried: " + "; ".join(tried or ["nothing"])
        )


def library_path() -> str:
    """The path of the loaded libxbuf (loading it if need be), e.g. for
    torch.cuda.memory.CUDAPluggableAllocator(path, "xbuf_torch_malloc", "xbuf_torch_free")."""
    library()
    assert _path is not None
    return _path


def last_error() -> str:
    """The calling thread's last libxbuf failure message."""
    msg = library().xbuf_last_error()
    return msg.decode("utf-8", "replace") if msg else ""
