#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""libxbuf as PyTorch's CUDA allocator: a small training loop on memory
from xbuf_torch_malloc, then xbuf's own stats must show the allocations.

    XBUF_LIBRARY=/path/libxbuf.so.0 [XBUF_MODE=embedded] python3 torch_allocator_check.py

Needs torch with CUDA and a GPU; prints "skipped: <why>" and exits 0
without them (CI has neither), exits 1 on any failure, naming it.
The allocator must be swapped in before torch touches CUDA, so this runs
in a fresh process and imports torch here.
"""
import ctypes
import json
import os
import sys


def main() -> int:
    lib_path = os.environ.get("XBUF_LIBRARY", "")
    if not lib_path or not os.path.exists(lib_path):
        print(f"torch_allocator_check: failed: XBUF_LIBRARY={lib_path!r} is not a file")
        return 1
    try:
        import torch
    except ImportError as e:
        print(f"torch_allocator_check: skipped: no torch ({e})")
        return 0
    if not torch.cuda.is_available():
        print("torch_allocator_check: skipped: torch sees no CUDA device")
        return 0

    alloc = torch.cuda.memory.CUDAPluggableAllocator(lib_path, "xbuf_torch_malloc", "xbuf_torch_free")
    torch.cuda.memory.change_current_allocator(alloc)

    lib = ctypes.CDLL(lib_path)
    lib.xbuf_last_error.restype = ctypes.c_char_p
    lib.xbuf_torch_stats_json.restype = ctypes.c_void_p
    lib.xbuf_string_free.argtypes = [ctypes.c_void_p]

    torch.manual_seed(0)
    device = torch.device("cuda", 0)
    model = torch.nn.Sequential(
        torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(256, 512, device=device)
    y = torch.randint(0, 10, (256,), device=device)
    losses = []
    for _ in range(100):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    torch.cuda.synchronize()
    if not losses[-1] < losses[0]:
        print(f"torch_allocator_check: failed: loss did not fall ({losses[0]:.4f} -> {losses[-1]:.4f})")
        return 1

    raw = lib.xbuf_torch_stats_json()
    if not raw:
        print(f"torch_allocator_check: failed: no stats: {lib.xbuf_last_error().decode()}")
        return 1
    stats = json.loads(ctypes.string_at(raw).decode())
    lib.xbuf_string_free(raw)
    counters = stats.get("counters", {})
    allocations = counters.get("allocations", 0)
    if allocations < 3:
        print(f"torch_allocator_check: failed: xbuf counted {allocations} allocations for a training loop")
        return 1
    print(f"torch_allocator_check: ok: loss {losses[0]:.4f} -> {losses[-1]:.4f}, "
          f"backend {stats.get('backend')}, {allocations} allocations, "
          f"{len(stats.get('buffers', []))} buffers held at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
