# SPDX-License-Identifier: MIT
"""The Python binding (python/xbuf) over libxbuf.so, against a real xbufd
(conftest.py's `daemon`) and in embedded mode.

What a Python user relies on: bytes written through the mapped pointer are
the buffer's, a second process reads them once the buffer is shared with it,
fences and uses pair as documented, stats come back as a dict, and every
failure is an exception that says what failed - xbuf.Error (an OSError with
the errno and libxbuf's message) for what libxbuf refuses, TypeError /
ValueError for what Python can tell is wrong before calling it.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import selectors
import subprocess
import sys
import time

import pytest

import xbuf
from conftest import KiB, MiB, REPO

NO_SUCH_ID = 987654321
CHILD_TIMEOUT_S = 30.0


# ---- daemon: the basic path ---------------------------------------------------------


def test_connect_says_daemon_mode_and_an_owner(client):
    assert client.mode == "daemon"
    assert client.owner > 0
    assert "daemon" in repr(client)


def test_write_through_the_pointer_and_read_it_back(client):
    buf = client.alloc(64 * KiB, device=0, name="py-rw")
    att = buf.attach()
    pattern = bytes(range(256)) * 256
    with att.use("write") as view:
        assert len(view) == 64 * KiB
        view[:] = pattern
    with att.use("read") as view:
        assert bytes(view) == pattern
    m = att.map()
    assert m.placement == xbuf.vram(0)
    assert m.size == 64 * KiB
    assert m.address != 0
    # The pointer, as C code would get it.
    assert ctypes.string_at(m.address, 4) == pattern[:4]
    buf.free()
    with pytest.raises(ValueError):
        m.view[0]  # released with the buffer: no touching unmapped memory


def test_pageable_placements_name_their_numa_node():
    assert str(xbuf.pageable_on(1)) == "pageable-node1"
    assert xbuf.placement("pageable-node1") == xbuf.pageable_on(1)
    assert xbuf.placement(xbuf.Placement("pageable", 2)) == xbuf.pageable_on(2)
    assert str(xbuf.PAGEABLE) == "pageable"
    with pytest.raises(ValueError):
        xbuf.placement("pageable-nodeX")
    with pytest.raises(ValueError):
        xbuf.pageable_on(-1)


def test_placements_by_name_and_object(client):
    wanted = [("pinned", xbuf.PINNED), (["vram1", "pageable"], xbuf.vram(1)), (xbuf.PAGEABLE, xbuf.PAGEABLE)]
    for placements, where in wanted:
        with client.alloc(4 * KiB, placements) as buf, buf.attach() as att:
            assert att.map().placement == where


def test_a_second_process_reads_the_bytes_once_the_buffer_is_shared(client, daemon):
    child = _Child(daemon.socket)
    try:
        owner = int(child.expect("owner"))
        assert owner != client.owner

        buf = client.alloc(32 * KiB, device=0, name="py-shared")
        att = buf.attach()
        message = b"bytes from the parent process"
        with att.use("write") as view:
            view[: len(message)] = message

        # Not shared yet: to the child the id is unknown.
        child.send(f"read {buf.id} {len(message)}")
        assert child.expect("error").split()[0] == str(errno.ENOENT)

        buf.share(owner)
        child.send(f"read {buf.id} {len(message)}")
        hexbytes, size = child.expect("bytes").split()
        assert bytes.fromhex(hexbytes) == message
        assert int(size) == 32 * KiB

        child.send("quit")
        assert child.wait() == 0
        buf.free()
    finally:
        child.kill()


def test_export_gives_an_fd_of_the_buffers_memory(client):
    buf = client.alloc(16 * KiB, "pinned")
    with buf.attach() as att:
        with att.use("write") as view:
            view[:8] = b"exported"
    with buf.export() as e:
        assert e.fd >= 0 and e.size == 16 * KiB and e.kind == "pinned"
        start = e.offset - e.offset % mmap.PAGESIZE
        with mmap.mmap(e.fd, e.offset - start + e.size, prot=mmap.PROT_READ, offset=start) as m:
            assert m[e.offset - start : e.offset - start + 8] == b"exported"
    assert e.fd == -1  # closed by the with block


def test_a_freed_buffer_stays_charged_until_its_export_is_released(client):
    buf = client.alloc(64 * KiB, "pageable")
    buf.export().close()  # what the fd was passed on to, the daemon cannot see
    buf.free()

    def mine():
        return next(c for c in client.stats()["clients"] if c["owner"] == client.owner)

    assert mine()["freed_exported_bytes"] == 64 * KiB
    client.buffer(buf.id).release_export()
    assert mine()["freed_exported_bytes"] == 0
    with pytest.raises(xbuf.NotFoundError):
        client.buffer(buf.id).release_export()  # one release per export


def test_an_exported_fd_imported_by_another_client_reaches_the_same_bytes(client, daemon):
    buf = client.alloc(16 * KiB, "pinned")
    with buf.attach() as att:
        with att.use("write") as view:
            view[:8] = b"imported"
    with buf.export() as e, xbuf.connect(daemon.socket, name="importer") as other:
        theirs = other.import_fd(e.fd)
        assert theirs.size == 16 * KiB
        with theirs.attach() as att2:
            with att2.use("read") as view:
                assert bytes(view[:8]) == b"imported"
    with pytest.raises(ValueError):
        client.import_fd(-1)
    r, w = os.pipe()
    try:
        with pytest.raises(xbuf.InvalidArgumentError):
            client.import_fd(r)
    finally:
        os.close(r)
        os.close(w)


def test_fences_time_out_until_signaled_then_report_their_error(client):
    buf = client.alloc(4 * KiB)
    f = buf.add_fence("write")
    assert not f.signaled()
    with pytest.raises(xbuf.TimedOutError) as e:
        f.wait(10)
    assert e.value.errno == errno.ETIMEDOUT
    assert isinstance(e.value, TimeoutError)
    f.signal(-errno.EIO)
    assert f.wait(1000) == -errno.EIO
    assert f.signaled()
    with pytest.raises(xbuf.AlreadyError):
        f.signal()
    g = buf.add_fence("read", deadline_ms=20)
    assert g.wait(30_000) == -errno.ETIMEDOUT  # the daemon's deadline; 30 s is patience only


def test_validate_counts_each_buffer(client):
    bufs = [client.alloc(4 * KiB, device=0), client.alloc(4 * KiB)]
    n = client.validate(bufs)
    assert n.promoted + n.deferred + n.in_place + n.no_room == 2
    assert client.validate([]) == xbuf.ValidateCounts(0, 0, 0, 0)
    with pytest.raises(xbuf.NotFoundError):
        client.validate([bufs[0], NO_SUCH_ID])


def test_cpu_access_reads_what_it_wrote(client):
    buf = client.alloc(8 * KiB, device=0, cpu_access=True)
    with buf.cpu_access(write=True) as view:
        view[-4:] = b"tail"
    with buf.cpu_access() as view:
        assert bytes(view[-4:]) == b"tail"
    with pytest.raises(xbuf.Error):
        buf.cpu_end()  # no access begun


def test_stats_is_a_dict_listing_our_buffers(client):
    buf = client.alloc(12 * KiB, "pinned", name='py "stats"')
    s = client.stats()
    assert s["backend"] == "sim"
    assert isinstance(s["tenant_view"], bool)
    assert {d["name"] for d in s["domains"]} >= {"vram0", "vram1", "pinned", "pageable"}
    mine = [b for b in s["buffers"] if b["id"] == buf.id]
    assert len(mine) == 1
    assert mine[0]["name"] == 'py "stats"'
    assert mine[0]["size"] == 12 * KiB
    assert mine[0]["where"] == {"name": "pinned", "kind": "host_pinned", "device": -1, "numa_node": -1}
    assert "allocations" in s["counters"]
    assert any(c["name"] == "pytest" and c["owner"] == client.owner for c in s["clients"])


def test_an_eviction_reaches_the_move_callback_and_keeps_the_bytes(client):
    events = []
    client.on_move(events.append)
    first = client.alloc(768 * KiB, ["vram0", "pageable"])
    att = first.attach()
    with att.use("write") as view:
        view[-1] = 0x77
    address = att.map().address
    client.alloc(768 * KiB, "vram0")  # both do not fit gpu0's 1 MiB: evicts `first`
    deadline = time.monotonic() + 10
    while not events and time.monotonic() < deadline:
        client.poll_events(100)
    assert events, "no move_notify arrived"
    assert events[0].attachment == att.id and events[0].buffer == first.id
    assert events[0].source == xbuf.vram(0) and events[0].target != xbuf.vram(0)
    m = att.begin_use("read")
    assert m.address == address  # the view kept its address across the move
    assert m.placement == xbuf.PAGEABLE
    assert m.view[-1] == 0x77
    att.end_use()
    client.on_move(None)


def test_memory_pressure_reaches_every_client(client, daemon):
    other = xbuf.connect(daemon.socket, "pytest-bystander")
    try:
        seen, told = [], []
        client.on_memory_pressure(seen.append)
        other.on_memory_pressure(told.append)
        client.alloc(3 * MiB, "pinned", no_evict=True)  # never moved out of the way
        deadline = time.monotonic() + 10
        while not (seen and told) and time.monotonic() < deadline:
            # The daemon tells at most once per interval per domain: ask again.
            with pytest.raises(xbuf.OutOfMemoryError):
                client.alloc(2 * MiB, "pinned")
            client.poll_events(300)
            other.poll_events(0)
        assert seen and told, "no memory_pressure event arrived"
        assert seen[0].where == xbuf.PINNED and seen[0].bytes == 2 * MiB
        assert told[0] == seen[0]
        client.on_memory_pressure(None)
    finally:
        other.close()


def test_torch_shape_allocates_from_the_daemon(daemon, monkeypatch):
    monkeypatch.setenv("XBUF_SOCKET", daemon.socket)
    monkeypatch.delenv("XBUF_MODE", raising=False)
    lib = xbuf._native.library()
    p = lib.xbuf_torch_malloc(64 * KiB, 0, None)
    assert p, xbuf._native.last_error()
    ctypes.memset(p, 0xAB, 64 * KiB)
    assert ctypes.string_at(p + 64 * KiB - 1, 1) == b"\xab"
    lib.xbuf_torch_free(p, 64 * KiB, 0, None)
    lib.xbuf_torch_free(p, 64 * KiB, 0, None)  # freed already: ignored
    assert lib.xbuf_torch_malloc(0, 0, None) is None
    assert "size 0" in xbuf._native.last_error()


# ---- daemon: errors libxbuf reports ---------------------------------------------------


def test_unknown_ids_are_not_found(client):
    calls = [
        lambda: client.attach(NO_SUCH_ID),
        lambda: client.buffer(NO_SUCH_ID).free(),
        lambda: client.buffer(NO_SUCH_ID).export(),
        lambda: client.buffer(NO_SUCH_ID).share(1),
        lambda: client.buffer(NO_SUCH_ID).advise("done"),
        lambda: client.buffer(NO_SUCH_ID).add_fence(),
        lambda: client.fence(NO_SUCH_ID).wait(),
        lambda: client.fence(NO_SUCH_ID).signal(),
    ]
    for call in calls:
        with pytest.raises(xbuf.Error) as e:
            call()
        assert e.value.errno == errno.ENOENT, e.value
        assert isinstance(e.value, xbuf.NotFoundError) and isinstance(e.value, OSError)
        assert str(NO_SUCH_ID) in e.value.message


def test_double_free_is_an_error(client):
    buf = client.alloc(4 * KiB)
    buf.free()
    with pytest.raises(xbuf.Error) as e:
        buf.free()
    assert e.value.errno == errno.ENOENT
    assert "xbuf_free" in e.value.message


def test_uses_must_pair(client):
    att = client.alloc(4 * KiB).attach()
    with pytest.raises(xbuf.Error) as e:
        att.end_use()
    assert e.value.errno == errno.EINVAL and "no use begun" in e.value.message
    att.begin_use("write")
    with pytest.raises(xbuf.InvalidArgumentError) as e:
        att.begin_use("write")
    assert "already begun" in e.value.message
    with pytest.raises(xbuf.InvalidArgumentError):
        att.detach()  # during a use
    with pytest.raises(xbuf.InvalidArgumentError):
        att.buffer.free()  # during a use
    att.end_use()
    att.detach()
    att.buffer.free()


def test_a_use_whose_block_raises_ends_with_an_error(client):
    buf = client.alloc(4 * KiB)
    att = buf.attach()
    with pytest.raises(RuntimeError):
        with att.use("write"):
            raise RuntimeError("the job failed")
    att.begin_use("read")  # ended: a new use may begin
    att.end_use()


def test_alloc_past_every_domain_is_refused(client):
    with pytest.raises(xbuf.InvalidArgumentError):
        client.alloc(64 * MiB)  # larger than the pageable domain
    client.alloc(12 * MiB)
    with pytest.raises(xbuf.OutOfMemoryError) as e:
        client.alloc(8 * MiB)
    assert e.value.errno == errno.ENOMEM


def test_connect_to_no_daemon_says_where(tmp_path):
    path = str(tmp_path / "nobody.sock")
    with pytest.raises(xbuf.Error) as e:
        xbuf.connect(path)
    assert path in e.value.message


# ---- Python-side checks: TypeError / ValueError before any call -------------------------


def test_wrong_types_and_values_are_caught_before_the_call(client):
    buf = client.alloc(4 * KiB)
    att = buf.attach()
    fence = buf.add_fence()
    bad = [
        (TypeError, lambda: client.alloc("4096")),
        (TypeError, lambda: client.alloc(4096.0)),
        (TypeError, lambda: client.alloc(True)),
        (ValueError, lambda: client.alloc(0)),
        (ValueError, lambda: client.alloc(-1)),
        (ValueError, lambda: client.alloc(2**64)),
        (ValueError, lambda: client.alloc(4096, "vram")),
        (ValueError, lambda: client.alloc(4096, "nowhere")),
        (ValueError, lambda: client.alloc(4096, xbuf.Placement("ssd"))),
        (TypeError, lambda: client.alloc(4096, 42)),
        (ValueError, lambda: client.alloc(4096, [])),
        (ValueError, lambda: client.alloc(4096, "pinned", device=0)),
        (ValueError, lambda: client.alloc(4096, device=-2)),
        (TypeError, lambda: client.alloc(4096, device="0")),
        (TypeError, lambda: client.alloc(4096, name=3)),
        (ValueError, lambda: client.alloc(4096, name="a\0b")),
        (TypeError, lambda: client.alloc(4096, cpu_access="yes")),
        (ValueError, lambda: client.alloc(4096, alignment=-4096)),
        (TypeError, lambda: buf.attach(device="0")),
        (ValueError, lambda: buf.attach(device=-2)),
        (ValueError, lambda: buf.attach(mode="sticky")),
        (TypeError, lambda: buf.attach(mode=1)),
        (ValueError, lambda: att.begin_use("sideways")),
        (ValueError, lambda: att.begin_use("read", timeout_ms=-1)),
        (TypeError, lambda: att.begin_use("read", timeout_ms=1.5)),
        (ValueError, lambda: att.map(timeout_ms=-5)),
        (ValueError, lambda: att.end_use(error=5)),
        (ValueError, lambda: fence.signal(5)),
        (ValueError, lambda: fence.wait(-1)),
        (ValueError, lambda: buf.share(-1)),
        (ValueError, lambda: buf.add_fence(deadline_ms=-1)),
        (ValueError, lambda: buf.add_fence("kernel")),
        (TypeError, lambda: client.validate(["1"])),
        (ValueError, lambda: client.poll_events(-1)),
        (TypeError, lambda: client.on_move(42)),
        (TypeError, lambda: client.on_memory_pressure("no")),
        (TypeError, lambda: xbuf.connect(socket=3)),
        (TypeError, lambda: xbuf.open_embedded(backend=None)),
        (ValueError, lambda: xbuf.open_embedded(sim_devices=-1)),
    ]
    for kind, call in bad:
        with pytest.raises(kind) as e:
            call()
        assert not isinstance(e.value, xbuf.Error), e.value
    # Nothing reached libxbuf: the state is as it was.
    assert not fence.signaled()
    fence.signal()
    att.detach()
    buf.free()


def test_a_closed_client_refuses_calls(daemon):
    c = xbuf.connect(daemon.socket, "closing")
    buf = c.alloc(4 * KiB)
    c.close()
    c.close()  # twice is fine
    assert c.closed and "closed" in repr(c)
    for call in (lambda: c.alloc(4096), lambda: buf.free(), lambda: c.stats(), lambda: c.owner):
        with pytest.raises(ValueError):
            call()


# ---- embedded mode -----------------------------------------------------------------------


def test_embedded_mode_runs_without_a_daemon(embedded):
    assert embedded.mode == "embedded"
    with embedded.alloc(64 * KiB, device=1, name="emb") as buf:
        att = buf.attach()
        with att.use("write") as view:
            view[:3] = b"emb"
        with att.use("read") as view:
            assert bytes(view[:3]) == b"emb"
        assert att.map().placement == xbuf.vram(1)
        assert [b["name"] for b in embedded.stats()["buffers"]] == ["emb"]
    assert embedded.stats()["buffers"] == []  # freed by the with block


def test_embedded_eviction_calls_back_at_once(embedded):
    events = []
    embedded.on_move(events.append)
    first = embedded.alloc(768 * KiB, ["vram0", "pageable"])
    att = first.attach()
    with att.use("write") as view:
        view[0] = 0x42
    embedded.alloc(768 * KiB, "vram0")
    assert embedded.poll_events(0) == 0  # ran already, inside the alloc
    assert len(events) >= 1 and events[0].buffer == first.id
    with att.use("read") as view:
        assert view[0] == 0x42


def test_advice_orders_eviction_and_refuses_a_bad_hint(embedded, client):
    bufs = [embedded.alloc(256 * KiB, ["vram0", "pageable"]) for _ in range(4)]
    bufs[3].advise("done")  # the newest: LRU alone would keep it
    embedded.alloc(256 * KiB, ["vram0", "pageable"])
    where = {b["id"]: b["where"]["name"] for b in embedded.stats()["buffers"]}
    assert where[bufs[3].id] == "pageable"
    assert where[bufs[0].id] == "vram0"
    with pytest.raises(ValueError):
        bufs[0].advise("soon")
    with pytest.raises(TypeError):
        bufs[0].advise(1)
    # Over the daemon: the owner's word is taken, nobody else's.
    own = client.alloc(4 * KiB, "pageable")
    own.advise("keep")
    own.advise("none")


def test_embedded_pressure_is_this_clients_own_failure(embedded):
    seen = []
    embedded.on_memory_pressure(seen.append)
    embedded.alloc(12 * MiB)
    with pytest.raises(xbuf.OutOfMemoryError):
        embedded.alloc(8 * MiB)
    assert seen == [xbuf.PressureEvent(xbuf.PAGEABLE, 8 * MiB)]


def test_embedded_errors_are_the_same(embedded):
    with pytest.raises(xbuf.NotFoundError):
        embedded.attach(NO_SUCH_ID)
    buf = embedded.alloc(4 * KiB)
    att = buf.attach()
    with pytest.raises(xbuf.InvalidArgumentError):
        att.end_use()
    buf.free()
    with pytest.raises(xbuf.NotFoundError):
        buf.free()


def test_open_embedded_refuses_an_unknown_backend():
    with pytest.raises(xbuf.Error) as e:
        xbuf.open_embedded("no-such-backend")
    assert e.value.errno == errno.EINVAL
    assert "xbuf_open_embedded" in e.value.message


def test_freeing_a_buffer_drops_its_attachments(embedded):
    def vram0_used():
        return next(d["used"] for d in embedded.stats()["domains"] if d["name"] == "vram0")

    buf = embedded.alloc(64 * KiB, "vram0")
    att = buf.attach()
    assert vram0_used() == 64 * KiB
    buf.free()
    assert att.detached
    assert embedded.stats()["buffers"] == []
    # The memory comes back once the buffer's clear fence has signaled
    # (a delayed free): bounded, not timed.
    deadline = time.monotonic() + 10
    while vram0_used() != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert vram0_used() == 0


# ---- the second process of the sharing test ------------------------------------------------

CHILD = r"""
import sys
import xbuf

c = xbuf.connect(sys.argv[1], "pytest-child")
print("owner", c.owner, flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "quit":
        break
    if cmd == "read":
        buffer_id, n = int(args[0]), int(args[1])
        try:
            with c.attach(buffer_id) as att:
                m = att.map()
                print("bytes", bytes(m.view[:n]).hex(), m.size, flush=True)
        except xbuf.Error as e:
            print("error", e.errno, e.message.replace("\n", " "), flush=True)
c.close()
"""


class _Child:
    """A Python process running CHILD, spoken to by lines (bounded waits)."""

    def __init__(self, socket_path: str):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "python"), env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, socket_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self._pending = b""

    def send(self, line: str) -> None:
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def _line(self) -> str:
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sel.select(left):
                pytest.fail(f"the child said nothing within {CHILD_TIMEOUT_S} s")
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                pytest.fail(f"the child exited: {self.proc.wait()}; stderr:\n{self.proc.stderr.read().decode()}")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode()

    def expect(self, word: str) -> str:
        """The rest of the child's next line, which must start with `word`."""
        line = self._line()
        head, _, rest = line.partition(" ")
        assert head == word, f"the child said {line!r}, not {word!r}..."
        return rest

    def wait(self) -> int:
        self.proc.stdin.close()
        return self.proc.wait(CHILD_TIMEOUT_S)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(CHILD_TIMEOUT_S)
        self._sel.close()
