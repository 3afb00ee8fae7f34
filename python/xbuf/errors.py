# SPDX-License-Identifier: MIT
"""xbuf's exceptions: what libxbuf reported, as OSError subclasses.

Overview
    A libxbuf call that fails returns a negative errno and leaves a message
    (xbuf_last_error); the binding raises ``Error(errno, message)`` - or the
    subclass for that errno - with ``e.errno`` the positive errno (compare
    with the errno module: ``e.errno == errno.ENOENT``) and ``e.message``
    libxbuf's text, which names the call and the object ("not_found:
    xbuf_free: buffer 7: ..."). Where Python has a matching OSError
    subclass the xbuf one derives from it too, so ``except TimeoutError``
    and ``except FileNotFoundError`` work as a Python reader expects.

Rules
    - Arguments of the wrong type or value are caught before libxbuf is
      called and raise TypeError / ValueError, never Error.
    - A call on a closed Client raises ValueError (as a closed file does).
"""

from __future__ import annotations

import errno as _errno


class Error(OSError):
    """A libxbuf failure: ``Error(errno, message)``."""

    def __init__(self, code: int, message: str):
        super().__init__(code, message)
        self.message = message

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno))
        return f"[{name}] {self.message}"

    @staticmethod
    def from_errno(code: int, message: str) -> "Error":
        """The Error subclass for ``code`` (a positive errno)."""
        return _BY_ERRNO.get(code, Error)(code, message)


class NotFoundError(Error, FileNotFoundError):
    """ENOENT: an unknown id, one already freed, or another client's."""


class InvalidArgumentError(Error):
    """EINVAL: an argument libxbuf refused, or a call not valid now
    (end_use without begin_use, a second begin_use)."""


class TimedOutError(Error, TimeoutError):
    """ETIMEDOUT: a wait ran out (a fence not signaled yet)."""


class OutOfMemoryError(Error):
    """ENOMEM: the domains allowed are full and nothing could be evicted."""


class QuotaExceededError(Error):
    """EDQUOT: a quota or the pinned limit would be passed."""


class AlreadyError(Error):
    """EALREADY: already done (a fence signaled twice, a double attach)."""


class BusyError(Error):
    """EBUSY: the object has work pending."""


class PermissionDeniedError(Error, PermissionError):
    """EPERM: not allowed (e.g. a server of an untrusted uid)."""


class UnsupportedError(Error):
    """EOPNOTSUPP: this backend or mode cannot do it (e.g. map CUDA VRAM
    through the daemon)."""


class IoError(Error):
    """EIO: a device, file or the connection failed; a daemon client is
    unusable after its connection broke."""


class DeviceError(Error):
    """ENODEV: no such device, or it was lost."""


class ProtocolError(Error):
    """EPROTO: the daemon sent what the client cannot read."""


_BY_ERRNO = {
    _errno.ENOENT: NotFoundError,
    _errno.EINVAL: InvalidArgumentError,
    _errno.ETIMEDOUT: TimedOutError,
    _errno.ENOMEM: OutOfMemoryError,
    _errno.EDQUOT: QuotaExceededError,
    _errno.EALREADY: AlreadyError,
    _errno.EBUSY: BusyError,
    _errno.EPERM: PermissionDeniedError,
    _errno.EOPNOTSUPP: UnsupportedError,
    _errno.EIO: IoError,
    _errno.ENODEV: DeviceError,
    _errno.EPROTO: ProtocolError,
}

# core/result.hpp's errc names (the first word of a libxbuf message) and
# the errno to_errno gives each: for the calls that return NULL, not a code.
_ERRC_ERRNO = {
    "invalid_argument": _errno.EINVAL,
    "not_found": _errno.ENOENT,
    "already_exists": _errno.EALREADY,
    "already_signaled": _errno.EALREADY,
    "timed_out": _errno.ETIMEDOUT,
    "cancelled": _errno.EINTR,
    "would_deadlock": _errno.EDEADLK,
    "busy": _errno.EBUSY,
    "out_of_memory": _errno.ENOMEM,
    "quota_exceeded": _errno.EDQUOT,
    "permission_denied": _errno.EPERM,
    "unsupported": _errno.EOPNOTSUPP,
    "io_error": _errno.EIO,
    "device_lost": _errno.ENODEV,
    "no_device": _errno.ENODEV,
    "protocol_error": _errno.EPROTO,
    "bad_state": _errno.EINVAL,
    "parse_error": _errno.EINVAL,
}


def errno_of_message(message: str) -> int:
    """The errno a libxbuf message's code names ("not_found: ..." -> ENOENT);
    EIO when it names none."""
    head = message.split(":", 1)[0].strip()
    return _ERRC_ERRNO.get(head, _errno.EIO)
