"""Process memory from Linux ``/proc`` (no psutil): resident size now and its peak, process trees."""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def status_kb(pid: int | str = "self") -> dict[str, int]:
    """``VmRSS`` (resident now) and ``VmHWM`` (peak resident) of ``pid`` in KiB; empty if unreadable."""
    out: dict[str, int] = {}
    try:
        text = (PROC / str(pid) / "status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def children(pid: int) -> list[int]:
    """Direct child pids of ``pid`` (all of its threads' children)."""
    found: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every pid below ``pid`` in the process tree, breadth first."""
    out: list[int] = []
    queue = children(pid)
    while queue:
        child = queue.pop(0)
        out.append(child)
        queue.extend(children(child))
    return out


def cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def find_module_process(root: int, module: str) -> int | None:
    """The first process below ``root`` started as ``python -m <module>``."""
    for pid in descendants(root):
        args = cmdline(pid)
        for i, arg in enumerate(args[:-1]):
            if arg == "-m" and args[i + 1] == module:
                return pid
    return None


def tree_memory_mb(pid: int) -> dict[str, float]:
    """Resident MB of ``pid`` and its descendants: ``rss_mb`` (sum now), ``peak_mb`` (``pid``'s own peak).

    Children of a forked pool share pages with their parent, so the sum over-counts them; Soundry's
    worker runs its jobs in the worker process itself, where both figures are exact.
    """
    own = status_kb(pid)
    rss = own.get("VmRSS", 0) + sum(status_kb(c).get("VmRSS", 0) for c in descendants(pid))
    return {
        "rss_mb": round(rss / 1024, 1),
        "peak_mb": round(own.get("VmHWM", 0) / 1024, 1),
        "processes": 1 + len(descendants(pid)),
    }
