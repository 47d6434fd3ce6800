"""Process-memory helpers: the process's resident size, what a loaded torch model holds, and giving
freed memory back.

Used by the torch backends (``memory_bytes``, ``unload``), by the model manager (measuring loads,
after loads and evictions), by the worker's status report and by the batcher (after running out of
memory).
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any


def rss_bytes() -> int:
    """This process's resident set size in bytes (Linux ``/proc``; 0 where unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


def module_bytes(*modules: Any) -> int:
    """Bytes held by the parameters and buffers of torch modules (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        if module is None:
            continue
        for tensor in [*module.parameters(), *module.buffers()]:
            key = tensor.data_ptr()
            if key in seen:
                continue
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total


def release_memory() -> None:
    """Collect garbage, give freed heap back to the OS, and cached GPU memory back to the driver.

    Loading a checkpoint reads whole state dicts that are freed once copied into the model; glibc
    keeps those pages in its arenas (hundreds of MB to GB of resident memory per model) until
    ``malloc_trim`` returns them.
    """
    gc.collect()
    trim_heap()
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def trim_heap() -> bool:
    """``malloc_trim(0)``: return free heap pages to the OS (glibc only; ``False`` elsewhere)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        return bool(ctypes.CDLL(name).malloc_trim(0))
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
