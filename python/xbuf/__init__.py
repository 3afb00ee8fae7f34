# SPDX-License-Identifier: MIT
"""xbuf: buffers from xbufd (or an in-process memory manager) for Python.

Overview
    A ctypes binding of libxbuf's C ABI (client/xbuf_c.h); no compiled
    module. libxbuf.so.0 is found through $XBUF_LIBRARY, else the
    checkout's build tree (build/lib/libxbuf.so.0), else the system's
    (ctypes.util.find_library); see _native.py.

        import xbuf

        with xbuf.connect() as c:                         # xbufd at $XBUF_SOCKET
            with c.alloc(1 << 20, device=0, name="x") as buf:
                att = buf.attach()                        # the CPU, dynamic
                with att.use("write") as view:            # memoryview of the bytes
                    view[:5] = b"hello"
                print(c.stats()["buffers"])

        c = xbuf.open_embedded("sim")                     # no daemon: in-process

    Failures libxbuf reports raise xbuf.Error(errno, message), an OSError
    (subclasses per errno: NotFoundError, TimedOutError, ...); wrong
    argument types or values raise TypeError / ValueError before any call.

    For PyTorch:
        torch.cuda.memory.CUDAPluggableAllocator(xbuf.library_path(),
                                                 "xbuf_torch_malloc", "xbuf_torch_free")
    (see client/xbuf_c.h for what those pointers are today).
"""

from ._native import LibraryNotFoundError, library_path
from .client import (
    PAGEABLE,
    PINNED,
    Attachment,
    Buffer,
    Client,
    Export,
    Fence,
    Mapping,
    MoveEvent,
    Placement,
    PressureEvent,
    ValidateCounts,
    connect,
    device_then_host,
    open_embedded,
    pageable_on,
    placement,
    vram,
)
from .errors import (
    AlreadyError,
    BusyError,
    DeviceError,
    Error,
    InvalidArgumentError,
    IoError,
    NotFoundError,
    OutOfMemoryError,
    PermissionDeniedError,
    ProtocolError,
    QuotaExceededError,
    TimedOutError,
    UnsupportedError,
)

__all__ = [
    "AlreadyError",
    "Attachment",
    "Buffer",
    "BusyError",
    "Client",
    "DeviceError",
    "Error",
    "Export",
    "Fence",
    "InvalidArgumentError",
    "IoError",
    "LibraryNotFoundError",
    "Mapping",
    "MoveEvent",
    "NotFoundError",
    "OutOfMemoryError",
    "PAGEABLE",
    "PINNED",
    "PermissionDeniedError",
    "Placement",
    "PressureEvent",
    "ProtocolError",
    "QuotaExceededError",
    "TimedOutError",
    "UnsupportedError",
    "ValidateCounts",
    "connect",
    "device_then_host",
    "library_path",
    "open_embedded",
    "pageable_on",
    "placement",
    "vram",
]
