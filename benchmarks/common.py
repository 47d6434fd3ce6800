"""What both sides of the benchmark share: prompts, texts, small statistics, machine facts."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MUSIC_PROMPTS: tuple[str, ...] = (
    "lofi hip hop with warm piano and vinyl crackle",
    "epic orchestral trailer music with big drums",
    "upbeat synthwave with a driving bassline",
    "calm acoustic guitar by a campfire",
    "jazz trio with brushed drums and walking bass",
    "ambient pads with slow evolving textures",
    "funky disco groove with slap bass",
    "minimal techno with a deep kick",
    "celtic folk tune with fiddle and flute",
    "bossa nova with soft nylon guitar",
    "dramatic cello solo in a minor key",
    "chiptune melody with bright square waves",
)
SFX_PROMPT = "a wooden door creaks open slowly"

SPEECH_TEXT = (
    "Welcome to Soundry. This paragraph measures how quickly the server starts to speak, and how "
    "fast it keeps talking once it has begun. Each sentence is synthesized on its own, so the first "
    "words can play while the rest are still being made. That is the whole point of streaming."
)
"""Four sentences, about fifteen seconds of speech."""

FRAME_RATE_HZ = 50.0
"""Token frames per second of every released MusicGen/AudioGen EnCodec."""
CODEBOOK_DELAY = 3
"""Extra decoding steps of the 4-codebook delay pattern."""


def decoding_steps(duration_s: float) -> int:
    """Autoregressive steps audiocraft takes for a clip of ``duration_s`` (one window, delay pattern)."""
    return int(duration_s * FRAME_RATE_HZ) + CODEBOOK_DELAY


def median(values: Sequence[float]) -> float | None:
    return round(float(statistics.median(values)), 4) if values else None


def mean(values: Sequence[float]) -> float | None:
    return round(float(statistics.fmean(values)), 4) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile ``q`` in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return round(float(ordered[rank - 1]), 4)


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory and OS: the machine the figures came from."""
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    # what decides which precision pays: AVX-512 with bf16 dot products, AMX (Intel)
    features = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
    if features:
        cpu = f"{cpu} ({', '.join(features)})"
    mem_gb: float | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024**2, 1)
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "cores": usable,
        "memory_gb": mem_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def run_child(module: str, name: str, models_dir: Path, *extra: str) -> dict[str, Any]:
    """``python -m <module> --child <name> --models-dir <dir> <extra>`` (one measurement in a fresh
    process): its last stdout line as JSON, with the load average before and after."""
    load = load_average()
    command = [sys.executable, "-m", module, "--child", name, "--models-dir", str(models_dir), *extra]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_average_before_after"] = [load, load_average()]
    return result
